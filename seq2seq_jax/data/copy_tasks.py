"""Generated tasks where copying from the source matters, from real name lists and CLDR date formats, offline.

  greeting  word tokens: "hello , i am Anna Schmidt ." -> "Anna Schmidt , hello , welcome !" (and other
            templates). Names are first names, half of them with a last name, from the person-name lists that
            the Faker package ships for several locales. Every distinct name token belongs to one split, so
            validation and test greet only people whose names never occur in training.
  dates     characters: a date written out by CLDR's medium, long or full pattern of one of many locales
            (Babel), "3. März 2021", "3 mars 2021", "2021年3月3日", -> "2021-03-03". Dates run from 1900 to
            2099; validation and test dates are drawn apart from all others, so no held-out date (in any
            wording) occurs in training. CLDR's short patterns are left out: "3/3/21" is ambiguous.

Both depend only on the seed and on the pinned package versions (the name lists and CLDR data ship with
Faker and Babel). `generate(task, split, d, seed)` as in synthetic.py; `d` is the config's data section
(num_train, num_eval).
"""

import datetime
import functools
import importlib

import numpy as np

TASKS = ('greeting', 'dates')
SPLIT_SEEDS = {'train': 0, 'validation': 1, 'test': 2}
SHARES = {'train': 0.8, 'validation': 0.1, 'test': 0.1}  # of the distinct name tokens

NAME_LOCALES = ('en_US', 'de_DE', 'fr_FR', 'es_ES', 'it_IT', 'nl_NL', 'sv_SE', 'pt_BR', 'pl_PL', 'cs_CZ',
                'tr_TR', 'fi_FI', 'hu_HU', 'ru_RU')
GREETINGS = (  # (source, target) with {n} for the name
    ('hello , i am {n} .', '{n} , hello , welcome !'),
    ('hi , my name is {n} .', 'hi {n} , nice to meet you !'),
    ('good morning , this is {n} speaking .', 'good morning {n} , how can i help ?'),
    ('{n} here , is anyone there ?', 'yes {n} , we are here !'),
    ('greetings from {n} .', 'greetings back to {n} !'),
    ('my friends call me {n} .', 'nice to meet you , {n} !'),
)

DATE_LOCALES = ('en_US', 'en_GB', 'de_DE', 'fr_FR', 'es_ES', 'it_IT', 'pt_BR', 'nl_NL', 'sv_SE', 'pl_PL',
                'ru_RU', 'cs_CZ', 'tr_TR', 'fi_FI', 'hu_HU', 'el_GR', 'vi_VN', 'ja_JP', 'zh_CN', 'ko_KR')
DATE_FORMATS = ('medium', 'long', 'full')
FIRST_DATE, LAST_DATE = datetime.date(1900, 1, 1), datetime.date(2099, 12, 31)


@functools.cache
def name_lists() -> tuple[tuple[str, ...], tuple[str, ...]]:
  """(first names, last names) of NAME_LOCALES from Faker's person providers: one word each, no duplicates,
  sorted."""
  first, last = set(), set()
  for locale in NAME_LOCALES:
    provider = importlib.import_module(f'faker.providers.person.{locale}').Provider
    for names, into in ((provider.first_names, first), (provider.last_names, last)):
      into.update(n for n in names if n and len(n.split()) == 1 and n == n.strip())
  return tuple(sorted(first)), tuple(sorted(last))


def name_splits(seed: int) -> dict[str, tuple[list[str], list[str]]]:
  """Per split its (first names, last names): the distinct tokens of both lists are shuffled and cut
  80/10/10, so that a token (also one that is both a first and a last name) lies in one split only."""
  first, last = name_lists()
  tokens = sorted(set(first) | set(last))
  order = np.random.default_rng([seed, 101]).permutation(len(tokens))
  cut = np.cumsum([int(round(SHARES[s] * len(tokens))) for s in ('train', 'validation')])
  split_of = {}
  for rank, i in enumerate(order):
    split_of[tokens[i]] = 'train' if rank < cut[0] else 'validation' if rank < cut[1] else 'test'
  return {s: ([n for n in first if split_of[n] == s], [n for n in last if split_of[n] == s]) for s in SPLIT_SEEDS}


def greeting(split: str, d, seed: int) -> list[tuple[str, str]]:
  firsts, lasts = name_splits(seed)[split]
  rng = np.random.default_rng([seed, SPLIT_SEEDS[split], 102])
  out = []
  for _ in range(d.num_train if split == 'train' else d.num_eval):
    name = firsts[int(rng.integers(len(firsts)))]
    if rng.random() < 0.5:
      name += ' ' + lasts[int(rng.integers(len(lasts)))]
    source, target = GREETINGS[int(rng.integers(len(GREETINGS)))]
    out.append((source.format(n=name), target.format(n=name)))
  return out


def date_splits(seed: int, num_eval: int) -> dict[str, np.ndarray]:
  """Day numbers (days after FIRST_DATE) of each split: validation and test take `num_eval` each of a seeded
  permutation of all dates, training the rest."""
  days = np.random.default_rng([seed, 103]).permutation((LAST_DATE - FIRST_DATE).days + 1)
  return {'test': days[:num_eval], 'validation': days[num_eval:2 * num_eval], 'train': days[2 * num_eval:]}


def dates(split: str, d, seed: int) -> list[tuple[str, str]]:
  from babel import Locale
  from babel.dates import format_date
  locales = [Locale.parse(name) for name in DATE_LOCALES]
  days = date_splits(seed, d.num_eval)[split]
  rng = np.random.default_rng([seed, SPLIT_SEEDS[split], 104])
  if split == 'train':
    days = days[rng.integers(len(days), size=d.num_train)]
  out = []
  for day in days:
    date = FIRST_DATE + datetime.timedelta(days=int(day))
    locale = locales[int(rng.integers(len(locales)))]
    pattern = DATE_FORMATS[int(rng.integers(len(DATE_FORMATS)))]
    out.append((format_date(date, pattern, locale=locale), date.isoformat()))
  return out


def generate(task: str, split: str, d, seed: int) -> list[tuple[str, str]]:
  """(source, target) pairs of `split` of `task`."""
  return {'greeting': greeting, 'dates': dates}[task](split, d, seed)
