"""User-facing errors: each carries one line naming what went wrong and where.

The CLI prints `<label>: <message>` (label `error`) and exits with the class's `exit_code` (2) for these;
anything else is a bug and keeps its traceback. `Interrupted` is not a failure: training stopped on a signal
after saving a checkpoint, and the exit code follows the shell's convention (128 + the signal number).
"""


class Seq2SeqError(Exception):
  """Base class for errors caused by the user's input (config, data, workdir), not by the code."""
  label = 'error'
  exit_code = 2


class ConfigError(Seq2SeqError):
  """An unknown config key, a value of the wrong type, or an inconsistent combination."""


class DataError(Seq2SeqError):
  """Malformed data: a bad line in a file (with file name and line number), an unknown symbol, ..."""


class CheckpointError(Seq2SeqError):
  """A workdir whose checkpoint is missing, incomplete or does not fit the config/vocabulary."""


class CheckpointDamaged(CheckpointError):
  """A checkpoint whose files changed after it was saved: a checksum differs, a file is truncated or missing."""


class WorkdirError(Seq2SeqError):
  """A workdir or output path that cannot be used: a file where a directory belongs, a read-only or full file
  system, or a workdir that another run is training (its lock is held)."""


class TrainingError(Seq2SeqError):
  """Training cannot go on, e.g. a NaN or Inf loss at a named step."""


class Interrupted(Seq2SeqError):
  """Training stopped on SIGTERM or SIGINT after finishing its step and saving a checkpoint."""
  label = 'stopped'

  def __init__(self, message: str, signum: int):
    super().__init__(message)
    self.signum = signum
    self.exit_code = 128 + signum
