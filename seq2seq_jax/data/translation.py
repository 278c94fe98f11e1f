"""Parallel text from TFDS translation datasets (`ted_hrlr_translate/pt_to_en`, `wmt14_translate/de-en`, ...).

A dataset is prepared once into the data dir in the `array_record` format and read with a random-access data
source, so neither step needs TensorFlow. Preparing downloads the data; on a machine without network, prepare
it on one with network and copy the data dir over:

  python -m seq2seq_jax.data.translation ted_hrlr_translate/pt_to_en --data_dir DIR

Sentences are stripped of surrounding whitespace; a pair with an empty side is dropped.
"""

import argparse
import contextlib
import re
import sys

import tensorflow_datasets as tfds
import tensorflow_datasets.translate  # noqa: F401  (registers wmt14_translate, wmt_t2t_translate, ...)
from absl import logging

from seq2seq_jax.data import tfds_utils
from seq2seq_jax.data.tfds_utils import DATA_DIR_ENV, DEFAULT_DATA_DIR, resolve_data_dir
from seq2seq_jax.errors import ConfigError, DataError, Seq2SeqError

# The project's split -> the names a dataset may use for it, best first.
SPLIT_NAMES = {'train': ('train',), 'validation': ('validation', 'dev', 'valid'), 'test': ('test', 'validation')}


def prepare(name: str, data_dir: str | None = None, quiet: bool = True) -> tfds.core.DatasetBuilder:
  """The builder of `name`, prepared under `data_dir` (downloading the data on first use)."""
  data_dir = resolve_data_dir(data_dir)
  with tfds_utils.quiet() if quiet else contextlib.nullcontext():
    try:
      builder = tfds.builder(name, data_dir=data_dir)
    except ValueError as e:  # DatasetNotFoundError, unknown config, ...
      raise ConfigError(f'data.tfds_name={name!r}: {_first_line(e)}') from e
    if tfds_utils.is_prepared(builder, name):
      return builder
    logging.warning('%s is not prepared in %s: downloading it (without network this fails after minutes)',
                    name, data_dir)
    try:
      builder.download_and_prepare(file_format='array_record')
    except Exception as e:  # network, checksum or disk errors: the user's environment, not a bug
      raise DataError(
          f'{name} is not prepared in {data_dir} and cannot be downloaded ({type(e).__name__}: {_first_line(e)}); '
          f'on a machine with network run `python -m seq2seq_jax.data.translation {name} --data_dir DIR` and copy '
          f'DIR to {data_dir} (or set data.data_dir / ${DATA_DIR_ENV})') from e
  return builder


def default_keys(builder: tfds.core.DatasetBuilder) -> tuple[str, str]:
  """(source, target) languages: source is the first language named in the config name (pt in pt_to_en)."""
  languages = sorted(builder.info.features.keys())
  config = builder.builder_config.name if builder.builder_config else ''
  named = [w for w in re.split(r'[^A-Za-z]+', config) if w in languages]
  if len(languages) == 2 and named:
    return named[0], next(lang for lang in languages if lang != named[0])
  keys = builder.info.supervised_keys
  if isinstance(keys, tuple) and len(keys) == 2 and all(isinstance(k, str) for k in keys):
    return keys
  raise ConfigError(f'data.tfds_name={builder.info.full_name!r}: cannot tell source from target; set '
                    f'data.tfds_source_key and data.tfds_target_key (features: {", ".join(languages)})')


def resolve_split(builder: tfds.core.DatasetBuilder, split: str) -> str:
  """The dataset's name for the project's `split` ('test' may fall back to 'validation')."""
  available = list(builder.info.splits.keys())
  if not available:  # splits unknown (e.g. under tfds.testing.mock_data)
    return split
  for name in SPLIT_NAMES.get(split, (split,)):
    if name in available:
      if name != split:
        logging.warning('%s has no %s split: using %r', builder.info.full_name, split, name)
      return name
  raise DataError(f'{builder.info.full_name}: no {split} split (splits: {", ".join(available)})')


def load_translation(name: str, split: str, source_key: str = '', target_key: str = '',
                     data_dir: str | None = None) -> list[tuple[str, str]]:
  """(source, target) sentence pairs of one split of TFDS dataset `name`, preparing it on first use.

  Empty keys default to the dataset's languages (see `default_keys`); `data_dir` defaults as in
  `resolve_data_dir`.
  """
  builder = prepare(name, data_dir)
  keys = (source_key, target_key)
  if not (source_key and target_key):  # the missing key is the language the given one is not
    default = default_keys(builder)
    keys = (source_key or (default[0] if target_key != default[0] else default[1]),
            target_key or (default[1] if source_key != default[1] else default[0]))
  features = list(builder.info.features.keys())
  for option, key in zip(('data.tfds_source_key', 'data.tfds_target_key'), keys):
    if key not in features:
      raise ConfigError(f'{option}={key!r} is not a feature of {name} (features: {", ".join(features)})')
  split_name = resolve_split(builder, split)
  with tfds_utils.quiet():
    pairs = []
    for i, record in tfds_utils.raw_records(builder, split_name):
      pair = _decode(record, keys)
      if pair is None:
        raise DataError(f'{builder.data_path}: {split_name} example {i} is malformed; delete it and run again')
      if pair[0] and pair[1]:
        pairs.append(pair)
  return pairs


def _decode(record: bytes, keys: tuple[str, str]) -> tuple[str, str] | None:
  """The stripped texts of `keys` in one serialized tf.train.Example; None if malformed."""
  features = tfds_utils.bytes_features(record, keys)
  if features is None or any(len(values) != 1 for values in features):
    return None
  return tuple(values[0].decode('utf-8', errors='replace').strip() for values in features)


def _first_line(error: Exception) -> str:
  lines = str(error).strip().splitlines()
  return lines[0][:300] if lines else ''


def main(argv: list[str] | None = None) -> None:
  """Prepares datasets into a data dir, e.g. on a machine with network before copying it."""
  parser = argparse.ArgumentParser(prog='python -m seq2seq_jax.data.translation', description=main.__doc__)
  parser.add_argument('names', nargs='+', help='TFDS names, e.g. ted_hrlr_translate/pt_to_en wmt14_translate/de-en')
  parser.add_argument('--data_dir', default='', help=f'default: ${DATA_DIR_ENV} or {DEFAULT_DATA_DIR}')
  args = parser.parse_args(argv)
  for name in args.names:
    try:
      builder = prepare(name, args.data_dir or None, quiet=False)
    except Seq2SeqError as e:
      print(f'error: {e}', file=sys.stderr)
      sys.exit(2)
    sizes = ', '.join(f'{s}: {info.num_examples}' for s, info in builder.info.splits.items())
    print(f'{name}: prepared in {builder.data_path} ({sizes})')


if __name__ == '__main__':
  main()
