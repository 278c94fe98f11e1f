"""From what the user asks for (`DecodeOptions`) to a search, and the one compiled entry point `decode`.

A search is a hashable object `search(encode, step, src_BxS, src_len_B, keys_B, prefix_BxP) -> outputs with
an n-best axis` (tokens (B, N, L), lengths (B, N), scores (B, N), attn (B, N, L, S)): `greedy.Greedy`,
`sampling.Sample` or `beam.Beam`, each with the decoding controls (`controls.Controls`). Adding a decoding
algorithm is one such class and one line in `DecodeOptions.search`. `decode` is `jax.jit` with the model's
functions and the search as static arguments, so each (model, search, input shape) compiles once per process.
"""

import dataclasses
import functools

import jax

from seq2seq_jax.decoding.beam import Beam
from seq2seq_jax.decoding.controls import Controls
from seq2seq_jax.decoding.greedy import Greedy, LengthRule
from seq2seq_jax.decoding.sampling import Sample
from seq2seq_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class DecodeOptions:
  """How to decode: greedy (the default), beam search (beam > 1, alpha != 0 or coverage_penalty != 0) or sampling
  (sample=True).

  nbest: outputs per source (at most beam); alpha: beam search's GNMT length penalty, coverage_penalty: its
  coverage penalty β ≥ 0 (see beam.py);
  temperature, top_k (None: the whole vocabulary), top_p (nucleus; 1: off) and seed: sampling (see
  sampling.py); batch_size: sources decoded together (0: cfg.decode.batch_size; beam search runs
  batch_size * beam rows). min_len and no_repeat_ngram: the decoding controls of every decoder (controls.py).
  A field that is None takes the value of the config's `decode` section of the same name (`resolve`).
  """
  beam: int = 1
  nbest: int = 1
  alpha: float = 0.0
  sample: bool = False
  temperature: float = 1.0
  top_k: int | None = None
  seed: int = 0
  batch_size: int = 0
  coverage_penalty: float = 0.0
  top_p: float | None = None
  min_len: int | None = None
  no_repeat_ngram: int | None = None

  def __post_init__(self):
    problems = [(self.beam < 1, f'beam must be >= 1, got {self.beam}'),
                (self.nbest < 1, f'nbest must be >= 1, got {self.nbest}'),
                (self.nbest > self.beam, f'nbest ({self.nbest}) > beam ({self.beam}): a beam keeps at most '
                                         f'beam hypotheses'),
                (self.top_k is not None and self.top_k < 1, f'top-k must be >= 1, got {self.top_k}'),
                (not self.temperature > 0, f'temperature must be > 0, got {self.temperature}'),
                (self.batch_size < 0, f'batch size must be >= 1 (0: the config\'s), got {self.batch_size}'),
                (not self.coverage_penalty >= 0, f'coverage penalty must be >= 0, got {self.coverage_penalty}'),
                (self.top_p is not None and not 0 < self.top_p <= 1, f'top-p must be in (0, 1], got {self.top_p}'),
                (self.min_len is not None and self.min_len < 0, f'min-len must be >= 0, got {self.min_len}'),
                (self.no_repeat_ngram is not None and self.no_repeat_ngram < 0,
                 f'no-repeat-ngram must be >= 0 (0: off), got {self.no_repeat_ngram}'),
                (self.sample and (self.beam > 1 or self.alpha != 0 or self.coverage_penalty != 0),
                 'sampling takes no beam, alpha or coverage penalty'),
                (not self.sample and (self.temperature != 1 or self.top_k is not None
                                      or self.top_p not in (None, 1)),
                 'temperature, top-k and top-p apply to sampling only')]
    for bad, message in problems:
      if bad:
        raise ConfigError(message)

  def resolve(self, decode_cfg) -> 'DecodeOptions':
    """These options with each None field set from the config's `decode` section (top_p: when sampling)."""
    unset = {f.name: decode_cfg[f.name] for f in dataclasses.fields(self)
             if getattr(self, f.name) is None and f.name in decode_cfg}
    if not self.sample and 'top_p' in unset:
      unset['top_p'] = 1.0
    return dataclasses.replace(self, **unset)

  def search(self, rule: LengthRule):
    """The search object these options ask for, with the length rule `rule` (unset controls: off)."""
    controls = Controls(min_len=int(self.min_len or 0), no_repeat_ngram=int(self.no_repeat_ngram or 0))
    if self.sample:
      return Sample(rule, float(self.temperature), self.top_k, float(1.0 if self.top_p is None else self.top_p),
                    controls)
    if self.beam > 1 or self.alpha != 0 or self.coverage_penalty != 0:
      return Beam(rule, self.beam, self.nbest, float(self.alpha), coverage_penalty=float(self.coverage_penalty),
                  controls=controls)
    return Greedy(rule, controls)


def length_rule(decode_cfg) -> LengthRule:
  """The config's `decode` section's length rule."""
  return LengthRule(float(decode_cfg.max_len_a), int(decode_cfg.max_len_b), int(decode_cfg.max_len_cap))


@functools.partial(jax.jit, static_argnames=('fns', 'search'))
def decode(params, src_BxS, src_len_B, keys_B=None, prefix_BxP=None, src_ext_BxS=None, *, fns, search) -> dict:
  """Runs `search` over `fns.encode` / `fns.step` with `params` (and a pointer-generator's `src_ext_BxS`)
  bound (see fns.py); `prefix_BxP`: forced first output tokens of each source (PAD after them), or None."""
  encode = functools.partial(fns.encode, params)
  if src_ext_BxS is not None:
    encode = functools.partial(fns.encode, params, src_ext_BxS=src_ext_BxS)
  return search(encode, functools.partial(fns.step, params), src_BxS, src_len_B, keys_B, prefix_BxP)
