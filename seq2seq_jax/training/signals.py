"""Stopping training cleanly on SIGTERM (what SLURM and preemptible VMs send before the kill) and on Ctrl-C.

`StopSignals` is a context manager around the training loop. It records the first SIGTERM or SIGINT in
`signum`; the loop finishes its current step, saves a checkpoint and raises `errors.Interrupted`, which the CLI
turns into one line and exit status 143 (SIGTERM) or 130 (SIGINT). A second SIGINT ends the process at once,
without saving: the last checkpoint stays as it was (saves are atomic) and the workdir's lock is released.

Python runs a signal handler only when the main thread is back in the interpreter, which can take long while it
waits inside XLA (a compilation) or orbax. So the signal numbers also go to a watcher thread through
`signal.set_wakeup_fd`: it records the first signal and aborts on a second SIGINT even then.

Handlers can be installed only from the main thread; elsewhere (training started from another thread) the
context does nothing and signals keep their previous behaviour.
"""

import os
import signal
import threading

WATCHED = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
  """Records SIGTERM / the first SIGINT in `signum`; a second SIGINT calls `on_abort` and exits with 130."""

  def __init__(self, on_abort=None):
    self.signum = 0
    self.on_abort = on_abort
    self.abort_message = 'aborted: a second Ctrl-C; nothing saved since the last checkpoint'
    self._previous, self._old_fd, self._pipe, self._thread = {}, None, None, None

  def __enter__(self) -> 'StopSignals':
    if threading.current_thread() is not threading.main_thread():
      return self
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    self._pipe = (read_fd, write_fd)
    self._old_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    for signum in WATCHED:
      self._previous[signum] = signal.getsignal(signum)
      signal.signal(signum, self._handler)
    self._thread = threading.Thread(target=self._watch, args=(read_fd,), name='stop-signals', daemon=True)
    self._thread.start()
    return self

  def _handler(self, signum, frame) -> None:
    del frame
    if not self.signum:  # the watcher thread has usually recorded it already
      self.signum = signum

  def _watch(self, read_fd: int) -> None:
    interrupts = 0
    while True:
      try:
        data = os.read(read_fd, 64)
      except OSError:
        return
      if not data:  # the write end was closed: the context ended
        os.close(read_fd)
        return
      for signum in data:
        if signum in WATCHED and not self.signum:
          self.signum = signum
        interrupts += signum == signal.SIGINT
        if interrupts >= 2:
          self._abort()

  def _abort(self) -> None:
    try:
      if self.on_abort is not None:
        self.on_abort()
    finally:
      os.write(2, f'\n{self.abort_message}\n'.encode())
      os._exit(128 + signal.SIGINT)

  def __exit__(self, *exc) -> None:
    if self._pipe is None:
      return
    for signum, previous in self._previous.items():
      signal.signal(signum, signal.SIG_DFL if previous is None else previous)  # None: set outside Python
    signal.set_wakeup_fd(self._old_fd)
    os.close(self._pipe[1])  # the watcher reads end-of-file and ends
    self._thread.join(timeout=5)
    self._pipe = None
