"""Test-session setup: a persistent XLA compilation cache, so identical programs compile once.

`make test` runs one pytest process per file and gives them all one cache folder ($SEQ2SEQ_JAX_TEST_CACHE, made
and removed by the Makefile), so a program that several files compile (the tiny configs' train and decode steps)
compiles once per suite; a pytest run on its own gets a fresh folder of its own.
"""

import os
import tempfile

import jax


def pytest_configure(config):
  del config
  folder = os.environ.get('SEQ2SEQ_JAX_TEST_CACHE') or tempfile.mkdtemp(prefix='seq2seq_jax_xla_')
  os.environ['SEQ2SEQ_JAX_COMPILATION_CACHE'] = folder  # also for the CLI, in-process or in subprocesses
  jax.config.update('jax_compilation_cache_dir', folder)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)
