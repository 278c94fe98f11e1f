"""Running the command line in-process, as the tests of bad inputs and faults do."""

import io
import sys

from seq2seq_jax import cli


def run_main(capsys, *argv, stdin: bytes | None = None, monkeypatch=None):
  """`cli.main(argv)` with `stdin` (bytes, read under a strict ASCII locale) -> (exit code, stdout, stderr)."""
  if stdin is not None:
    monkeypatch.setattr(sys, 'stdin', io.TextIOWrapper(io.BytesIO(stdin), encoding='ascii', errors='strict'))
  capsys.readouterr()
  code = cli.main(list(argv))
  out, err = capsys.readouterr()
  return code, out, err


def one_error_line(code, err, *needles):
  """The command failed with exit status 2 and one `error:` line holding every needle."""
  lines = err.strip().splitlines()
  assert code == 2 and len(lines) == 1 and lines[0].startswith('error: '), err
  for needle in needles:
    assert needle in lines[0], lines[0]
