"""Command line: the only module that parses arguments and prints results.

  seq2seq-jax train   --config configs/reverse.py --workdir DIR [--config.key=value ...]
  seq2seq-jax eval    --workdir DIR [--split test] [--references FILE]
  seq2seq-jax predict --workdir DIR [--input FILE]
"""

import argparse
import json
import os
import sys

from seq2seq_jax.errors import Seq2SeqError


def _train(args, overrides):
  from seq2seq_jax import config, train
  cfg = config.load_config(args.config, overrides)
  result = train.train(cfg, args.workdir, log=lambda m: print(m, file=sys.stderr, flush=True))
  print(json.dumps({'split': 'validation', **result}, sort_keys=True))


def _eval(args, overrides):
  from seq2seq_jax import evaluate
  from seq2seq_jax.data import sources
  from seq2seq_jax.predictor import Predictor
  predictor = Predictor.load(args.workdir)
  for item in overrides:  # data overrides, e.g. to evaluate on another test file
    from seq2seq_jax import config
    config.apply_override(predictor.cfg, item)
  if args.references:
    from seq2seq_jax.data import files
    references = files.read_references(args.references)
    result = evaluate.decoded(predictor, references, translation=predictor.cfg.data.task == 'tfds')
    split = args.references
  else:
    result = evaluate.evaluate(predictor, sources.load_pairs(predictor.cfg, args.split))
    split = args.split
  print(json.dumps({'split': split, **result}, sort_keys=True))


def _predict(args, overrides):
  from seq2seq_jax.predictor import Predictor
  if overrides:
    raise Seq2SeqError(f'predict takes no config overrides: {overrides[0]}')
  predictor = Predictor.load(args.workdir)
  if args.input:
    with open(args.input, encoding='utf-8') as f:
      lines, where = f.read().splitlines(), args.input
  else:
    lines, where = sys.stdin.read().splitlines(), '<stdin>'
  for line in predictor.predict([line.strip() for line in lines], where=where):
    print(line)


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog='seq2seq-jax', description=__doc__.split('\n')[0])
  sub = p.add_subparsers(dest='command', required=True)
  t = sub.add_parser('train', help='train (or resume) a model')
  t.add_argument('--config', required=True, help='a Python config file with get_config()')
  t.add_argument('--workdir', required=True)
  e = sub.add_parser('eval', help='evaluate a trained workdir; prints one JSON line')
  e.add_argument('--workdir', required=True)
  e.add_argument('--split', default='test', choices=('train', 'validation', 'test'))
  e.add_argument('--references', help='SOURCE<TAB>REF1[<TAB>REF2...] file to score against')
  r = sub.add_parser('predict', help='decode lines of text (stdin by default), one output line per input line')
  r.add_argument('--workdir', required=True)
  r.add_argument('--input', help='input file (default: stdin)')
  return p


COMMANDS = {'train': _train, 'eval': _eval, 'predict': _predict}


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


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  args, rest = parser().parse_known_args(argv)
  overrides, unknown = [], []
  for item in rest:
    (overrides if item.startswith('--config.') else unknown).append(item)
  if unknown:
    parser().error(f'unrecognized arguments: {" ".join(unknown)}')
  import absl.logging
  absl.logging.set_verbosity(absl.logging.ERROR)  # orbax/tfds info and warnings are not for the user
  enable_compilation_cache()
  try:
    COMMANDS[args.command](args, [o[len('--config.'):] for o in overrides])
  except Seq2SeqError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main())
