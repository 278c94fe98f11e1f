"""Test-session setup: a fresh persistent XLA compilation cache, so identical programs compile once per session."""

import os
import tempfile

import jax


def pytest_configure(config):
  del config
  folder = tempfile.mkdtemp(prefix='seq2seq_jax_xla_')
  os.environ['SEQ2SEQ_JAX_COMPILATION_CACHE'] = folder  # also for the CLI, in-process or in subprocesses
  jax.config.update('jax_compilation_cache_dir', folder)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)
