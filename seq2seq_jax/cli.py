"""Command line: the only module that parses arguments and prints results.

  seq2seq-jax train   --config configs/reverse.py --workdir DIR [--config.key=value ...]
  seq2seq-jax eval    --workdir DIR [--workdir DIR2 ...] [--split test] [--references FILE]
                      [--beam K --alpha A --coverage-penalty B | --sample ...] [controls]
  seq2seq-jax predict --workdir DIR [--input FILE | --interactive]
                      [--beam K --nbest N --alpha A --coverage-penalty B | --sample ...] [controls] [--format jsonl]
  seq2seq-jax plot-attention --workdir DIR --output FILE.png TEXT [TEXT ...]
  seq2seq-jax plot-metrics --workdir DIR [--output FILE.png]
  seq2seq-jax info    --workdir DIR [--step best|latest|averaged|N]
  seq2seq-jax average --workdir DIR --last K
  seq2seq-jax decode-speed --workdir DIR [--split test] [--beam K --alpha A --coverage-penalty B | --sample ...]
                           [controls]
  seq2seq-jax export  --workdir DIR --output FILE.npz [--beam K --alpha A]
  seq2seq-jax bench   --config CONFIG [--config.key=value ...] [--workdir DIR] [--steps N] [--output FILE]

Sampling: --sample --temperature T --top-k K --top-p P --seed S; controls: --min-len N --no-repeat-ngram N
--prefix-file FILE (flags left out take the run's decode.* config values).
"""

import argparse
import json
import math
import os
import sys

from seq2seq_jax import process
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


def _prefix_lines(args, predictor=None):
  """(path, lines) of the prefix file of --prefix-file (before the model is loaded: `predictor` None) or of the
  run's decode.prefix_file (after); None when there is none."""
  from seq2seq_jax.data import files
  path = args.prefix_file or (predictor.cfg.decode.prefix_file if predictor else '')
  return (path, files.split_lines(files.read_text(path, allow_empty=True))) if path else None


def _load_predictor(args):
  """The model of --workdir, or the ensemble of several --workdir flags (combined by --ensemble-combine)."""
  from seq2seq_jax.decoding import Predictor
  workdirs = args.workdir if isinstance(args.workdir, list) else [args.workdir]
  return Predictor.load(workdirs, args.step, combine=args.ensemble_combine)


def _eval(args, overrides):
  from seq2seq_jax import config
  from seq2seq_jax.data import sources
  from seq2seq_jax.evaluation import evaluate
  options = _decode_options(args)
  _prefix_lines(args)  # a bad --prefix-file fails before the model loads
  predictor = _load_predictor(args)
  for item in overrides:  # data overrides, e.g. to evaluate on another test file
    config.apply_inference_override(predictor.cfg, item, 'eval')
  prefixes = _prefix_lines(args, predictor)
  if args.references:
    from seq2seq_jax.data import files
    references = files.read_references(args.references)
    result = evaluate.decoded(predictor, references, translation=predictor.cfg.data.task == 'tfds',
                              options=options, prefixes=prefixes)
    split = args.references
  else:
    result = evaluate.evaluate(predictor, sources.load_pairs(predictor.cfg, args.split), options=options,
                               prefixes=prefixes)
    split = args.split
  print(json.dumps({'split': split, **result}, sort_keys=True))


def _predict(args, overrides):
  if overrides:
    raise Seq2SeqError(f'predict takes no config overrides: {overrides[0]}')
  from seq2seq_jax.data import files
  options = _decode_options(args)
  if args.interactive or (args.input is None and sys.stdin.isatty()):
    return _interactive(args, options)
  # The input is read (bytes, decoded as UTF-8 whatever the locale) before the model is loaded: a bad input
  # fails at once. Lines end at \n only (files.split_lines): one output line per input line, always.
  if args.input:
    text, where = files.read_text(args.input, allow_empty=True), args.input
  else:
    text, where = files.decode_utf8(sys.stdin.buffer.read(), '<stdin>'), '<stdin>'
  texts = [line.strip() for line in files.split_lines(text)]
  _prefix_lines(args)
  predictor = _load_predictor(args)
  prefix_where, prefixes = _prefix_lines(args, predictor) or (None, None)
  results = predictor.predict_nbest(texts, where=where, options=options, prefixes=prefixes,
                                    prefix_where=prefix_where)
  _write(''.join(_answer(args.format, text, hyps) + '\n' for text, hyps in zip(texts, results)))


def _answer(fmt: str, text: str, hyps: list[tuple[str, float]]) -> str:
  """The output line of one input line."""
  from seq2seq_jax.data import files
  if fmt == 'text':  # an output holding a line end would break the one-line-per-input rule
    return ' ||| '.join(' '.join(files.split_lines(output)) for output, _ in hyps)
  entries = [{'text': output, 'score': score if math.isfinite(score) else None} for output, score in hyps]
  return json.dumps({'source': text, **entries[0], **({'nbest': entries} if len(entries) > 1 else {})},
                    ensure_ascii=False)


def _write(text: str) -> None:
  sys.stdout.flush()
  data = memoryview(text.encode('utf-8'))  # UTF-8 whatever the locale
  while data:  # a pipe whose reader leaves mid-write takes part of it and says so only on the next write
    data = data[sys.stdout.buffer.write(data):]
  sys.stdout.buffer.flush()


def _interactive(args, options):
  """Answers each line of stdin as soon as it is read, one output line per input line. A bad line (not UTF-8,
  empty, an unknown symbol, too long) is answered by its one-line error on stderr and an empty line (text) or
  {"source", "error"} (jsonl) on stdout, and the session goes on; the exit status is 2 if any line was bad."""
  from seq2seq_jax.data import files
  from seq2seq_jax.errors import DataError
  if args.input or args.prefix_file:
    raise Seq2SeqError('--interactive reads stdin line by line: it takes no --input and no --prefix-file')
  predictor = _load_predictor(args)
  if predictor.cfg.decode.prefix_file:
    raise Seq2SeqError(f'--interactive takes no prefix file (config decode.prefix_file='
                       f'{predictor.cfg.decode.prefix_file!r})')
  print(f'ready: decoders compiled for sources padded to {", ".join(map(str, predictor.warm_up(options)))} '
        f'symbols; one answer per input line', file=sys.stderr, flush=True)
  bad = number = 0
  for number, raw in enumerate(iter(sys.stdin.buffer.readline, b''), 1):
    text = ''
    try:
      text = files.split_lines(files.decode_utf8(raw, '<stdin>', first_line=number))[0].strip()
      answer = _answer(args.format, text, predictor.predict_nbest([text], '<stdin>', options, first_line=number)[0])
    except DataError as e:
      bad += 1
      message = ' '.join(str(e).splitlines())
      print(f'error: {message}', file=sys.stderr, flush=True)
      answer = '' if args.format == 'text' else json.dumps({'source': text, 'error': message}, ensure_ascii=False)
    _write(answer + '\n')
  if bad:
    raise Seq2SeqError(f'{bad} of {number} input lines had errors (each answered above)')


def _plot_attention(args, overrides):
  from seq2seq_jax.evaluation import plotting
  from seq2seq_jax.decoding import Predictor
  if overrides:
    raise Seq2SeqError(f'plot-attention takes no config overrides: {overrides[0]}')
  plotting.check_output(args.output)  # before the model is loaded
  predictor = Predictor.load(args.workdir, args.step)
  predictor.encode_texts(args.texts, where='argument')  # bad input: one line, before any decoding
  stem, ext = os.path.splitext(args.output)
  n = len(args.texts)
  paths = [args.output] if n == 1 else [f'{stem}-{i + 1}{ext or ".png"}' for i in range(n)]
  for path in plotting.plot_texts(predictor, args.texts, paths, where='argument'):
    print(path)


def _plot_metrics(args, overrides):
  from seq2seq_jax.evaluation import curves, plotting
  if overrides:
    raise Seq2SeqError(f'plot-metrics takes no config overrides: {overrides[0]}')
  output = args.output or os.path.join(args.workdir, 'metrics.png')
  plotting.check_output(output)
  print(curves.write_png(os.path.join(args.workdir, 'metrics.jsonl'), output))


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
  from seq2seq_jax.data import sources
  from seq2seq_jax.tools import experiments
  if overrides:
    raise Seq2SeqError(f'decode-speed takes no config overrides: {overrides[0]}')
  options = _decode_options(args)
  _prefix_lines(args)
  predictor = _load_predictor(args)
  references = sources.group_references(sources.load_pairs(predictor.cfg, args.split))
  result = experiments.decode_speed(predictor, references, options, prefixes=_prefix_lines(args, predictor))
  print(json.dumps({'split': args.split, **result}))


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


def _export(args, overrides):
  from seq2seq_jax.tools import export
  if overrides:
    raise Seq2SeqError(f'export takes no config overrides: {overrides[0]}')
  result = export.export(args.workdir, args.output, args.step, beam=args.beam or 5, alpha=args.alpha or 0.0,
                         log=lambda m: print(m, file=sys.stderr, flush=True))
  print(json.dumps(result, sort_keys=True))


def _workdirs_flag(p: argparse.ArgumentParser) -> None:
  p.add_argument('--workdir', required=True, action='append',
                 help='a trained run; give it several times to decode with the ensemble of the runs')
  p.add_argument('--ensemble-combine', choices=('logprob', 'prob'), default='logprob',
                 help="with several --workdir: average the models' log-probabilities (default) or probabilities")


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
  _workdirs_flag(e)
  e.add_argument('--split', default='test', choices=('train', 'validation', 'test'))
  e.add_argument('--references', help='SOURCE<TAB>REF1[<TAB>REF2...] file to score against')
  _beam_flags(e)
  _decoding_flags(e)
  _step_flag(e)
  r = sub.add_parser('predict', help='decode lines of text (stdin by default), one output line per input line')
  _workdirs_flag(r)
  r.add_argument('--input', metavar='FILE', help='input file (default: stdin)')
  r.add_argument('--interactive', action='store_true',
                 help='answer each stdin line as soon as it is read (the default when stdin is a terminal); '
                      'a bad line gets its error on stderr and an empty answer, and the session goes on')
  _beam_flags(r)
  _decoding_flags(r)
  _step_flag(r)
  r.add_argument('--nbest', type=int, metavar='N',
                 help='outputs per input line, best first (at most --beam; default 1)')
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
  m = sub.add_parser('plot-metrics', help="draw training loss and the validation metric against the step from a "
                                          "run's metrics.jsonl (PNG)")
  m.add_argument('--workdir', required=True)
  m.add_argument('--output', metavar='FILE.png', help='where to write the PNG (default: DIR/metrics.png)')
  i = sub.add_parser('info', help='step, parameter count, fingerprint and best metric of a checkpoint (JSON)')
  i.add_argument('--workdir', required=True)
  _step_flag(i)
  v = sub.add_parser('average', help='average the last K checkpoints into DIR/averaged/ (use --step averaged)')
  v.add_argument('--workdir', required=True)
  v.add_argument('--last', type=int, required=True, help='how many of the newest checkpoints')
  d = sub.add_parser('decode-speed', help='sources/s of decoding a split (after a compiling pass), with PER/WER')
  _workdirs_flag(d)
  d.add_argument('--split', default='test', choices=('train', 'validation', 'test'))
  d.add_argument('--batch-size', type=int, help="sources decoded together (default: decode.batch_size)")
  _beam_flags(d)
  _decoding_flags(d)
  _step_flag(d)
  x = sub.add_parser('export', help='write the greedy and beam decoders as serialised jax.export programs (.npz) '
                                    'that run with jax and numpy only (scripts/run_exported.py)')
  x.add_argument('--workdir', required=True)
  x.add_argument('--output', required=True, metavar='FILE.npz')
  _beam_flags(x)
  _step_flag(x)
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


def _decoding_flags(p: argparse.ArgumentParser) -> None:
  """Sampling and the decoding controls, for predict, eval and decode-speed (left out: the run's decode.*)."""
  p.add_argument('--sample', action='store_true', help='sample instead of the most likely output')
  p.add_argument('--temperature', type=float, metavar='T', help='with --sample: divides the logits (default 1)')
  p.add_argument('--top-k', type=int, metavar='K', help='with --sample: draw from the K most likely tokens only')
  p.add_argument('--top-p', type=float, metavar='P',
                 help='with --sample: draw from the smallest set of most likely tokens whose probability reaches '
                      'P (nucleus sampling; default decode.top_p = 1: all)')
  p.add_argument('--seed', type=int, metavar='S',
                 help='with --sample: the random seed (default 0; same seed, same output)')
  p.add_argument('--min-len', type=int, metavar='N',
                 help='no EOS before N output tokens (default decode.min_len = 0), unless nothing else is allowed')
  p.add_argument('--no-repeat-ngram', type=int, metavar='N',
                 help='no n-gram of N tokens occurs twice in an output (default decode.no_repeat_ngram = 0: off)')
  p.add_argument('--prefix-file', metavar='FILE',
                 help='one output prefix per input line (target symbols; an empty line: none): each output '
                      'starts with its prefix, then decoding goes on (default decode.prefix_file)')


def _beam_flags(p: argparse.ArgumentParser) -> None:
  p.add_argument('--beam', type=int, metavar='K', help='beam search with K hypotheses (default 1: greedy)')
  p.add_argument('--alpha', type=float, metavar='A',
                 help='beam search ranks log-prob / ((5 + len) / 6) ** A, len counting EOS (default 0)')
  p.add_argument('--coverage-penalty', type=float, metavar='B',
                 help="beam search adds GNMT's coverage penalty B * sum_j log(min(sum_t attention_tj, 1)) over "
                      'the source positions j to each finished hypothesis\'s score (default 0: none)')


COMMANDS = {'train': _train, 'eval': _eval, 'predict': _predict, 'plot-attention': _plot_attention,
            'plot-metrics': _plot_metrics, 'info': _info, 'average': _average, 'decode-speed': _decode_speed,
            'export': _export, 'bench': _bench}


def main(argv=None) -> int:
  if argv is None:
    process.use_huge_pages()
  argv = sys.argv[1:] if argv is None else argv
  args, rest = parser().parse_known_args(argv)
  overrides, unknown = [], []
  for item in rest:
    (overrides if item.startswith('--config.') else unknown).append(item)
  if unknown:
    parser().error(f'unrecognized arguments: {" ".join(unknown)}')
  import absl.logging
  # Orbax and tfds log from background threads, errors included, with tracebacks; an error that matters reaches
  # the command as an exception and is reported below in one line.
  absl.logging.set_verbosity(absl.logging.FATAL)
  process.enable_compilation_cache()
  try:
    COMMANDS[args.command](args, [o[len('--config.'):] for o in overrides])
  except Seq2SeqError as e:  # one line, whatever the message holds
    print(f'{e.label}: {" ".join(str(e).splitlines())}', file=sys.stderr, flush=True)
    return e.exit_code
  except KeyboardInterrupt:  # Ctrl-C outside training's loop (which saves and raises Interrupted instead)
    print('\ninterrupted', file=sys.stderr, flush=True)
    return 130
  except BrokenPipeError:  # whoever read stdout went away (`| head`, a killed parent); what was saved is saved
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes at exit
    print('stdout: closed by its reader (broken pipe); stopped writing', file=sys.stderr, flush=True)
    return 141  # as a shell reports a process ended by SIGPIPE
  return 0


if __name__ == '__main__':
  sys.exit(main())
