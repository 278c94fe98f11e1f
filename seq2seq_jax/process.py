"""Process set-up before a command runs: glibc's huge pages for XLA:CPU's buffers, the on-disk compilation cache."""

import os
import sys


def enable_compilation_cache() -> None:
  """Keeps compiled XLA programs on disk so that a second run skips compilation (several seconds per shape).

  The folder is $SEQ2SEQ_JAX_COMPILATION_CACHE (empty: off), by default ~/.cache/seq2seq_jax/xla.
  """
  folder = os.environ.get('SEQ2SEQ_JAX_COMPILATION_CACHE',
                          os.path.join(os.path.expanduser('~'), '.cache', 'seq2seq_jax', 'xla'))
  if folder:
    import jax
    jax.config.update('jax_compilation_cache_dir', folder)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)


HUGE_PAGES = 'glibc.malloc.hugetlb=1'


def use_huge_pages() -> None:
  """Restarts this process once with glibc's malloc asking for transparent huge pages.

  XLA:CPU allocates each step's temporary buffers afresh (hundreds of MiB for a training step); in 4 KiB
  pages every step pays ~50,000 page faults (a fifth of the CPU time of a G2P run went to the kernel), in
  2 MiB pages almost none: +18% training tokens/s (`bench`). glibc reads GLIBC_TUNABLES only at start-up,
  hence the re-exec; glibc < 2.35 ignores the setting. SEQ2SEQ_JAX_HUGE_PAGES=0 leaves the process alone.
  """
  tunables = os.environ.get('GLIBC_TUNABLES', '')
  if (not sys.platform.startswith('linux') or 'glibc.malloc.hugetlb' in tunables
      or os.environ.get('SEQ2SEQ_JAX_HUGE_PAGES') == '0'):
    return
  os.environ['GLIBC_TUNABLES'] = f'{tunables}:{HUGE_PAGES}' if tunables else HUGE_PAGES
  os.execv(sys.executable, [sys.executable, '-m', 'seq2seq_jax', *sys.argv[1:]])
