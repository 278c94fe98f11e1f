"""What the TFDS-backed sources share: where prepared data lives, quiet preparation, raw records without TF.

Datasets are prepared in the `array_record` format and read as raw serialized `tf.train.Example`s, parsed with
the protobuf classes that ship with tensorflow-datasets: neither step needs TensorFlow.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import tensorflow_datasets as tfds
from absl import logging as absl_logging
from google.protobuf.message import DecodeError
from tensorflow_datasets.proto import tf_example_pb2

from seq2seq_jax.errors import DataError

DATA_DIR_ENV = 'SEQ2SEQ_JAX_DATA_DIR'
DEFAULT_DATA_DIR = os.path.join('~', '.cache', 'seq2seq_jax', 'tfds')
_CHUNK = 100_000  # records read per call: bulk reads are ~100x faster than one by one


def resolve_data_dir(data_dir: str | None) -> str:
  """`data_dir`, else $SEQ2SEQ_JAX_DATA_DIR, else ~/.cache/seq2seq_jax/tfds."""
  return os.path.expanduser(data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
  """Silence absl INFO logs and tfds progress bars for the duration, then restore them."""
  verbosity = absl_logging.get_verbosity()
  tqdm_utils = tfds.core.utils.tqdm_utils
  bars = getattr(tqdm_utils, '_active', True)
  absl_logging.set_verbosity(absl_logging.WARNING)
  tfds.display_progress_bar(False)
  try:
    yield
  finally:
    absl_logging.set_verbosity(verbosity)
    tfds.display_progress_bar(bars)


def is_prepared(builder: tfds.core.DatasetBuilder, name: str) -> bool:
  """Whether the dataset is prepared; a half-written folder (which tfds would silently reuse) is an error."""
  # Look for the info file first: is_prepared() logs a warning for a missing or half-written folder.
  if (builder.data_path / 'dataset_info.json').exists() and builder.is_prepared():
    return True
  if builder.data_path.exists():
    raise DataError(f'{builder.data_path}: incomplete {name} folder; delete it and run again')
  return False


def raw_records(builder: tfds.core.DatasetBuilder, split: str) -> Iterator[tuple[int, bytes]]:
  """(index, serialized example) of every record of `split`, read in bulk."""
  source = builder.as_data_source(split=split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
  for start in range(0, len(source), _CHUNK):
    yield from enumerate(source.__getitems__(list(range(start, min(start + _CHUNK, len(source))))), start)


def bytes_features(record: bytes, keys: tuple[str, ...]) -> list[list[bytes]] | None:
  """The bytes values of each of `keys` in one serialized tf.train.Example (empty for a missing key); None if
  the record does not parse."""
  try:
    feature = tf_example_pb2.Example.FromString(record).features.feature
  except DecodeError:
    return None
  return [list(feature[key].bytes_list.value) if key in feature else [] for key in keys]
