"""Decode lines of text with an artefact of `seq2seq-jax export`, using jax and numpy only.

  python scripts/run_exported.py model.s2s.npz [--beam] < words.txt > outputs.txt

One output line per input line (lines end at \n); exit status 2 with a one-line error for an empty line, a
line over the model's maximum source length or a symbol the model does not know.
"""

import argparse
import json
import sys

import numpy as np
from jax import export

PAD, EOS = 0, 2


def main() -> int:
  parser = argparse.ArgumentParser()
  parser.add_argument('artefact')
  parser.add_argument('--beam', action='store_true', help='beam search (the beam size chosen at export)')
  parser.add_argument('--batch-size', type=int, default=256)
  args = parser.parse_args()
  files = np.load(args.artefact)
  meta = json.loads(files['meta'].tobytes().decode('utf-8'))
  src, tgt = meta['source'], meta['target']
  index = {s: i for i, s in enumerate(src['symbols'])}
  params = [files[f'param_{i}'] for i in range(meta['params'])]
  lines = sys.stdin.buffer.read().decode('utf-8').split('\n')
  if lines and lines[-1] == '':
    lines.pop()
  ids = []
  for n, line in enumerate(lines, 1):
    text = line.rstrip('\r').strip()
    symbols = list(text) if src['tokenizer'] == 'char' else text.split()
    if not symbols or len(symbols) > meta['max_source_len'] or any(s not in index for s in symbols):
      print(f'error: <stdin>:{n}: empty, too long or unknown symbol', file=sys.stderr)
      return 2
    ids.append([index[s] for s in symbols])
  programs, outputs = {}, [None] * len(ids)
  order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
  for start in range(0, len(order), args.batch_size):
    rows = order[start:start + args.batch_size]
    s_len = min(b for b in meta['buckets'] if b >= max(len(ids[i]) for i in rows) + 1)
    batch = np.full((len(rows), s_len), PAD, np.int32)
    for r, i in enumerate(rows):
      batch[r, :len(ids[i])], batch[r, len(ids[i])] = ids[i], EOS
    lengths = np.array([len(ids[i]) + 1 for i in rows], np.int32)
    name = f'{"beam" if args.beam else "greedy"}_{s_len}'
    if name not in programs:
      programs[name] = export.deserialize(bytearray(files[name].tobytes()))
    tokens, out_len = (np.asarray(x) for x in programs[name].call(params, batch, lengths))
    for r, i in enumerate(rows):
      symbols = [tgt['symbols'][t] for t in tokens[r, :out_len[r]]]
      outputs[i] = ''.join(symbols) if tgt['tokenizer'] == 'char' else ' '.join(symbols)
  sys.stdout.write(''.join(o + '\n' for o in outputs))
  return 0


if __name__ == '__main__':
  sys.exit(main())
