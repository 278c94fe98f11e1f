"""Built-in tasks generated from a seed (no download): copy, reverse, sort and addition.

Held-out splits never contain a training source, so exact match on them measures generalisation.
"""

import numpy as np

TASKS = ('copy', 'reverse', 'sort', 'addition')
SPLIT_SEEDS = {'train': 0, 'validation': 1, 'test': 2}


def _letters(rng, d) -> str:
  n = int(rng.integers(d.min_len, d.max_len + 1))
  return ''.join(chr(ord('a') + int(i)) for i in rng.integers(0, d.alphabet_size, n))


def _number(rng, d) -> int:
  digits = int(rng.integers(d.min_len, d.max_len + 1))
  return int(rng.integers(0 if digits == 1 else 10 ** (digits - 1), 10 ** digits))


def _example(task: str, rng, d) -> tuple[str, str]:
  if task == 'addition':  # operands of min_len..max_len digits
    a, b = _number(rng, d), _number(rng, d)
    return f'{a}+{b}', str(a + b)
  s = _letters(rng, d)
  return s, {'copy': s, 'reverse': s[::-1], 'sort': ''.join(sorted(s))}[task]


def generate(task: str, split: str, d, seed: int) -> list[tuple[str, str]]:
  """(source, target) pairs of `split`; `d` is the config's data section (num_train, num_eval, lengths),
  checked by config.validate."""
  rng = np.random.default_rng([seed, SPLIT_SEEDS['train']])
  train = [_example(task, rng, d) for _ in range(d.num_train)]
  if split == 'train':
    return train
  seen = {s for s, _ in train}
  rng = np.random.default_rng([seed, SPLIT_SEEDS[split]])
  out = []
  for _ in range(100 * d.num_eval):  # bounded: tiny input spaces may not have num_eval unseen sources
    src, tgt = _example(task, rng, d)
    if src not in seen:
      out.append((src, tgt))
      seen.add(src)
      if len(out) == d.num_eval:
        break
  return out
