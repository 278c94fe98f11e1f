"""Test-session setup: a fresh persistent XLA compilation cache, so identical programs compile once per session."""

import jax


def pytest_configure(config):
  del config
  import tempfile
  jax.config.update('jax_compilation_cache_dir', tempfile.mkdtemp(prefix='seq2seq_jax_xla_'))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)
