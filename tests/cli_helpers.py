"""Running the command line in-process, as the tests of bad inputs and faults do, and reading its checkpoints."""

import io
import sys

import jax
import numpy as np

from seq2seq_jax import cli
from seq2seq_jax.model import seq2seq
from seq2seq_jax.runs import workdir as workdir_lib
from seq2seq_jax.training import steps


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


def restore_target(workdir):
  """The parameter and train-state structures of the workdir's run (what a checkpoint restore reads into)."""
  cfg = workdir_lib.load_config(workdir)
  src_vocab, tgt_vocab = workdir_lib.load_vocabs(workdir)
  model = seq2seq.build(cfg.model, len(src_vocab), len(tgt_vocab))
  ids = np.full((1, 4), 4, np.int32)
  batch = {'src': ids, 'src_len': np.array([4], np.int32), 'tgt_in': ids}
  state = jax.eval_shape(lambda: steps.init_state(model, cfg, jax.random.PRNGKey(0), batch))
  return state.params, steps.train_part(state)
