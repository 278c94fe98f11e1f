"""Command line: the only module that parses arguments and prints results.

  seq2seq-jax train   --config configs/reverse.py --workdir DIR [--config.key=value ...]
  seq2seq-jax eval    --workdir DIR [--split test] [--references FILE] [--beam K --alpha A --coverage-penalty B]
  seq2seq-jax predict --workdir DIR [--input FILE] [--beam K --nbest N --alpha A --coverage-penalty B | --sample ...]
                      [--format jsonl]
  seq2seq-jax plot-attention --workdir DIR --output FILE.png TEXT [TEXT ...]
  seq2seq-jax info    --workdir DIR [--step best|latest|averaged|N]
  seq2seq-jax average --workdir DIR --last K
  seq2seq-jax decode-speed --workdir DIR [--split test] [--beam K --alpha A --coverage-penalty B]
  seq2seq-jax bench   --config CONFIG [--config.key=value ...] [--workdir DIR] [--steps N] [--output FILE]
"""

import argparse
import json
import math
import os
import sys

from seq2seq_jax.errors import Seq2SeqError


def _train(args, overrides):
  from seq2seq_jax import config
  from seq2seq_jax.training import distributed, train
  distributed.from_args(args)  # before anything else touches JAX
  cfg = config.load_config(args.config, overrides)
  result = train.train(cfg, args.workdir, log=lambda m: print(m, file=sys.stderr, flush=True))
  print(json.dumps({'split': 'validation', **result}, sort_keys=True))


def _decode_options(args):
  """The predictor.DecodeOptions of the decoding flags that the command has and that were given."""
  import dataclasses
  from seq2seq_jax.decoding import DecodeOptions
  given = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(DecodeOptions)}
  return DecodeOptions(**{k: v for k, v in given.items() if v is not None})


def _eval(args, overrides):
  from seq2seq_jax.evaluation import evaluate
  from seq2seq_jax.data import sources
  from seq2seq_jax.decoding import Predictor
  options = _decode_options(args)
  predictor = Predictor.load(args.workdir, args.step)
  from seq2seq_jax import config
  for item in overrides:  # data overrides, e.g. to evaluate on another test file
    config.apply_inference_override(predictor.cfg, item, 'eval')
  if args.references:
    from seq2seq_jax.data import files
    references = files.read_references(args.references)
    result = evaluate.decoded(predictor, references, translation=predictor.cfg.data.task == 'tfds',
                              options=options)
    split = args.references
  else:
    result = evaluate.evaluate(predictor, sources.load_pairs(predictor.cfg, args.split), options=options)
    split = args.split
  print(json.dumps({'split': split, **result}, sort_keys=True))


def _predict(args, overrides):
  from seq2seq_jax.decoding import Predictor
  if overrides:
    raise Seq2SeqError(f'predict takes no config overrides: {overrides[0]}')
  options = _decode_options(args)
  predictor = Predictor.load(args.workdir, args.step)
  if args.input:
    with open(args.input, encoding='utf-8') as f:
      lines, where = f.read().splitlines(), args.input
  else:
    lines, where = sys.stdin.read().splitlines(), '<stdin>'
  texts = [line.strip() for line in lines]
  for text, hyps in zip(texts, predictor.predict_nbest(texts, where=where, options=options)):
    if args.format == 'text':
      print(' ||| '.join(output for output, _ in hyps))
    else:
      entries = [{'text': output, 'score': score if math.isfinite(score) else None} for output, score in hyps]
      print(json.dumps({'source': text, **entries[0], **({'nbest': entries} if len(entries) > 1 else {})},
                       ensure_ascii=False))


def _plot_attention(args, overrides):
  from seq2seq_jax.evaluation import plotting
  from seq2seq_jax.decoding import Predictor
  if overrides:
    raise Seq2SeqError(f'plot-attention takes no config overrides: {overrides[0]}')
  predictor = Predictor.load(args.workdir, args.step)
  ids = predictor.encode_texts(args.texts, where='argument')
  stem, ext = os.path.splitext(args.output)
  paths = [args.output] if len(ids) == 1 else [f'{stem}-{i + 1}{ext or ".png"}' for i in range(len(ids))]
  for path in plotting.plot_ids(predictor, ids, paths):
    print(path)


def _info(args, overrides):
  from seq2seq_jax.tools import experiments
  if overrides:
    raise Seq2SeqError(f'info takes no config overrides: {overrides[0]}')
  print(json.dumps(experiments.info(args.workdir, args.step), sort_keys=True))


def _average(args, overrides):
  from seq2seq_jax.tools import experiments
  if overrides:
    raise Seq2SeqError(f'average takes no config overrides: {overrides[0]}')
  print(json.dumps(experiments.average(args.workdir, args.last), sort_keys=True))


def _decode_speed(args, overrides):
  from seq2seq_jax.tools import experiments
  from seq2seq_jax.data import sources
  from seq2seq_jax.decoding import Predictor
  if overrides:
    raise Seq2SeqError(f'decode-speed takes no config overrides: {overrides[0]}')
  options = _decode_options(args)
  predictor = Predictor.load(args.workdir, args.step)
  references = sources.group_references(sources.load_pairs(predictor.cfg, args.split))
  print(json.dumps({'split': args.split, **experiments.decode_speed(predictor, references, options)}))


def _bench(args, overrides):
  import jax
  from seq2seq_jax import config
  from seq2seq_jax.tools import bench
  if args.steps < 1:
    raise Seq2SeqError(f'--steps must be at least 1, got {args.steps}')
  cfg = config.load_config(args.config, overrides)
  output = args.output or os.path.join(args.workdir or '.', 'bench.json')
  if args.output and not os.path.isdir(os.path.dirname(output) or '.'):  # (a workdir is checked by bench)
    raise Seq2SeqError(f'--output {output}: no such directory')
  # compile_s times XLA, not loads from the on-disk cache (off if nothing has been compiled in this process yet)
  cache = jax.config.jax_enable_compilation_cache
  jax.config.update('jax_enable_compilation_cache', False)
  try:
    result = bench.bench(cfg, args.config, args.workdir, args.steps, decode=not args.no_decode,
                         log=lambda m: print(m, file=sys.stderr, flush=True), profile_dir=args.profile)
  finally:
    jax.config.update('jax_enable_compilation_cache', cache)
  text = json.dumps(result, sort_keys=True)
  with open(output, 'w', encoding='utf-8') as f:
    f.write(text + '\n')
  print(text)


def _step_flag(p: argparse.ArgumentParser) -> None:
  p.add_argument('--step', default='best',
                 help="checkpoint: best (by the task's validation metric; default), latest, averaged, or a step")


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog='seq2seq-jax', description=__doc__.split('\n')[0])
  sub = p.add_subparsers(dest='command', required=True)
  t = sub.add_parser('train', help='train (or resume) a model')
  t.add_argument('--config', required=True, help='a Python config file with get_config()')
  t.add_argument('--workdir', required=True)
  from seq2seq_jax.training import distributed
  distributed.add_arguments(t)
  e = sub.add_parser('eval', help='evaluate a trained workdir; prints one JSON line')
  e.add_argument('--workdir', required=True)
  e.add_argument('--split', default='test', choices=('train', 'validation', 'test'))
  e.add_argument('--references', help='SOURCE<TAB>REF1[<TAB>REF2...] file to score against')
  _beam_flags(e)
  _step_flag(e)
  r = sub.add_parser('predict', help='decode lines of text (stdin by default), one output line per input line')
  r.add_argument('--workdir', required=True)
  r.add_argument('--input', metavar='FILE', help='input file (default: stdin)')
  _beam_flags(r)
  _step_flag(r)
  r.add_argument('--nbest', type=int, metavar='N',
                 help='outputs per input line, best first (at most --beam; default 1)')
  r.add_argument('--sample', action='store_true', help='sample instead of the most likely output')
  r.add_argument('--temperature', type=float, metavar='T', help='with --sample: divides the logits (default 1)')
  r.add_argument('--top-k', type=int, metavar='K', help='with --sample: draw from the K most likely tokens only')
  r.add_argument('--seed', type=int, metavar='S',
                 help='with --sample: the random seed (default 0; same seed, same output)')
  r.add_argument('--batch-size', type=int, metavar='B',
                 help='input lines decoded together (default: the config\'s decode.batch_size)')
  r.add_argument('--format', choices=('text', 'jsonl'), default='text',
                 help='text: one line per input line, with --nbest the outputs joined by " ||| " (best first); '
                      'jsonl: one JSON object per input line, {"source", "text", "score"} and with --nbest > 1 '
                      '"nbest": [{"text", "score"}, ...]; score: log-probability, divided by the length '
                      'penalty with --alpha')
  a = sub.add_parser('plot-attention', help='decode texts greedily and draw their attention weights as PNG')
  a.add_argument('--workdir', required=True)
  a.add_argument('--output', required=True, metavar='FILE.png',
                 help='FILE.png for one TEXT; with several, FILE-1.png, FILE-2.png, ... (one heatmap each)')
  a.add_argument('texts', nargs='+', metavar='TEXT', help='source text(s) to decode')
  _step_flag(a)
  i = sub.add_parser('info', help='step, parameter count, fingerprint and best metric of a checkpoint (JSON)')
  i.add_argument('--workdir', required=True)
  _step_flag(i)
  v = sub.add_parser('average', help='average the last K checkpoints into DIR/averaged/ (use --step averaged)')
  v.add_argument('--workdir', required=True)
  v.add_argument('--last', type=int, required=True, help='how many of the newest checkpoints')
  d = sub.add_parser('decode-speed', help='sources/s of decoding a split (after a compiling pass), with PER/WER')
  d.add_argument('--workdir', required=True)
  d.add_argument('--split', default='test', choices=('train', 'validation', 'test'))
  d.add_argument('--batch-size', type=int, help="sources decoded together (default: decode.batch_size)")
  _beam_flags(d)
  _step_flag(d)
  b = sub.add_parser('bench', help='train-step and decoding speed, FLOPs and memory of a config (one JSON line, '
                                   'also written to --output)')
  b.add_argument('--config', required=True, help='a Python config file with get_config()')
  b.add_argument('--workdir', help='a trained run: decode with its best checkpoint (default: untrained '
                                   'parameters); the output then goes to DIR/bench.json')
  b.add_argument('--steps', type=int, default=50, help='timed training steps, after one warm-up step per shape')
  b.add_argument('--output', metavar='FILE', help='where to write the JSON (default: bench.json, or DIR/bench.json)')
  b.add_argument('--no-decode', action='store_true', help='skip the greedy and beam-5 decoding speed')
  b.add_argument('--profile', metavar='DIR', help='also trace 5 steps with jax.profiler into DIR and list the '
                                                  'XLA operations that take the most time')
  return p


def _beam_flags(p: argparse.ArgumentParser) -> None:
  p.add_argument('--beam', type=int, metavar='K', help='beam search with K hypotheses (default 1: greedy)')
  p.add_argument('--alpha', type=float, metavar='A',
                 help='beam search ranks log-prob / ((5 + len) / 6) ** A, len counting EOS (default 0)')
  p.add_argument('--coverage-penalty', type=float, metavar='B',
                 help="beam search adds GNMT's coverage penalty B * sum_j log(min(sum_t attention_tj, 1)) over "
                      'the source positions j to each finished hypothesis\'s score (default 0: none)')


COMMANDS = {'train': _train, 'eval': _eval, 'predict': _predict, 'plot-attention': _plot_attention,
            'info': _info, 'average': _average, 'decode-speed': _decode_speed, 'bench': _bench}


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


def main(argv=None) -> int:
  if argv is None:
    use_huge_pages()
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
