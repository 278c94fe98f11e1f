"""Training progress on stderr: a tqdm bar on a terminal, plain lines in a log file.

Piped to a file (`make train > log`, a SLURM job) a progress bar's carriage-return frames are unreadable with
`less` or `tail`; there, each log interval prints one line instead:
  step 2200/8800  loss 0.8123  tokens/s 19,540  elapsed 3m50s  left ~11m30s
"""

import sys
import time

import tqdm


def _duration(seconds: float) -> str:
  seconds = int(round(seconds))
  h, rest = divmod(seconds, 3600)
  m, s = divmod(rest, 60)
  return f'{h}h{m:02d}m' if h else f'{m}m{s:02d}s' if m else f'{s}s'


class Progress:
  """Shows training progress from `initial` to `total` steps (nothing when not `enabled`)."""

  def __init__(self, total: int, initial: int, enabled: bool = True, stream=None, terminal: bool | None = None):
    self.total, self.step, self.enabled = total, initial, enabled
    self.stream = stream or sys.stderr
    self.terminal = self.stream.isatty() if terminal is None else terminal
    self._start, self._start_step = time.perf_counter(), initial
    self._bar = None
    if enabled and self.terminal:
      self._bar = tqdm.tqdm(total=total, initial=initial, unit='step', dynamic_ncols=True, file=self.stream)

  def update(self, step: int, loss: float, tokens_per_s: float) -> None:
    """Training has reached `step`; `loss` and `tokens_per_s` are the last log interval's."""
    done, self.step = step - self.step, step
    if not self.enabled:
      return
    if self._bar is not None:
      self._bar.set_postfix(loss=f'{loss:.4f}', tok_s=f'{tokens_per_s:,.0f}')
      self._bar.update(done)
      return
    elapsed = time.perf_counter() - self._start
    rate = (step - self._start_step) / max(elapsed, 1e-9)
    left = (self.total - step) / rate if rate > 0 else 0.0
    print(f'step {step}/{self.total}  loss {loss:.4f}  tokens/s {tokens_per_s:,.0f}  elapsed {_duration(elapsed)}'
          f'  left ~{_duration(left)}', file=self.stream, flush=True)

  def write(self, message: str) -> None:
    """A message on a line of its own (above the bar on a terminal)."""
    if not self.enabled:
      return
    if self._bar is not None:
      self._bar.write(message, file=self.stream)
    else:
      print(message, file=self.stream, flush=True)

  def close(self) -> None:
    """Ends the bar's line, so that whatever is printed next starts on a line of its own."""
    if self._bar is not None:
      self._bar.close()
      self._bar = None
