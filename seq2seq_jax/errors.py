"""User-facing errors: each carries one line naming what went wrong and where.

The CLI prints `error: <message>` and exits with status 2 for these; anything else is a bug and keeps its
traceback.
"""


class Seq2SeqError(Exception):
  """Base class for errors caused by the user's input (config, data, workdir), not by the code."""


class ConfigError(Seq2SeqError):
  """An unknown config key, a value of the wrong type, or an inconsistent combination."""


class DataError(Seq2SeqError):
  """Malformed data: a bad line in a file (with file name and line number), an unknown symbol, ..."""


class CheckpointError(Seq2SeqError):
  """A workdir whose checkpoint is missing, incomplete or does not fit the config/vocabulary."""


class TrainingError(Seq2SeqError):
  """Training cannot go on, e.g. a NaN or Inf loss at a named step."""
