"""Text in, text out: batching, padding and detokenization around the compiled decoders.

  from seq2seq_jax.predictor import Predictor
  Predictor.load('workdir').predict(['hello', 'world'])
  Predictor.load('workdir').predict_nbest(['hello'], options=DecodeOptions(beam=5, nbest=3, alpha=0.6))
"""

import dataclasses
from typing import Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from seq2seq_jax import beam, decoding, sampling, workdir as workdir_lib
from seq2seq_jax.data.pipeline import bucket_len
from seq2seq_jax.errors import ConfigError, DataError
from seq2seq_jax.model import ModelConfig, Seq2Seq
from seq2seq_jax.vocab import EOS, PAD, Vocab


@dataclasses.dataclass(frozen=True)
class DecodeOptions:
  """How to decode: greedy (the default), beam search (beam > 1 or alpha != 0) or sampling (sample=True).

  nbest: outputs per source (at most beam); alpha: beam search's GNMT length penalty (see beam.py);
  temperature, top_k (None: the whole vocabulary) and seed: sampling (see sampling.py); batch_size: sources
  decoded together (0: cfg.decode.batch_size; beam search runs batch_size * beam rows).
  """
  beam: int = 1
  nbest: int = 1
  alpha: float = 0.0
  sample: bool = False
  temperature: float = 1.0
  top_k: int | None = None
  seed: int = 0
  batch_size: int = 0

  def __post_init__(self):
    problems = [(self.beam < 1, f'beam must be >= 1, got {self.beam}'),
                (self.nbest < 1, f'nbest must be >= 1, got {self.nbest}'),
                (self.nbest > self.beam, f'nbest ({self.nbest}) > beam ({self.beam}): a beam keeps at most '
                                         f'beam hypotheses'),
                (self.top_k is not None and self.top_k < 1, f'top-k must be >= 1, got {self.top_k}'),
                (not self.temperature > 0, f'temperature must be > 0, got {self.temperature}'),
                (self.batch_size < 0, f'batch size must be >= 1 (0: the config\'s), got {self.batch_size}'),
                (self.sample and (self.beam > 1 or self.alpha != 0), 'sampling takes no beam or alpha'),
                (not self.sample and (self.temperature != 1 or self.top_k is not None),
                 'temperature and top-k apply to sampling only')]
    for bad, message in problems:
      if bad:
        raise ConfigError(message)


class Predictor:
  """A trained model with its vocabularies and decoding settings."""

  def __init__(self, cfg, params, src_vocab: Vocab, tgt_vocab: Vocab):
    self.cfg, self.params, self.src_vocab, self.tgt_vocab = cfg, params, src_vocab, tgt_vocab
    self.model = Seq2Seq(ModelConfig.from_config(cfg.model, len(src_vocab), len(tgt_vocab)))
    self._replicated = None  # (parameters on every local device, batch-split sharding), when there are several

  @classmethod
  def load(cls, workdir: str, step: str | int = 'best') -> 'Predictor':
    """The workdir's model at `step`: 'best' (default), 'latest', 'averaged' or a step number."""
    cfg, (src_vocab, tgt_vocab), _, like, ckpt, chosen = workdir_lib.open_run(workdir, step)
    state, _, _ = ckpt.restore(chosen, like)
    ckpt.close()
    return cls(cfg, state.params, src_vocab, tgt_vocab)

  def decode_ids(self, sources: list[list[int]], options: DecodeOptions | None = None) -> list[dict]:
    """Results per source (token ids without EOS), best first: {'tokens', 'attention' (len + 1, source len),
    'score', 'nbest': [{'tokens', 'attention', 'score'}] * options.nbest}; the top level is nbest[0]."""
    options = options or DecodeOptions()
    decode = self._decoder(options)
    batch_size = options.batch_size or self.cfg.decode.batch_size
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    results = [None] * len(sources)
    for start in range(0, len(order), batch_size):
      idx = order[start:start + batch_size]
      rows = 1 << (len(idx) - 1).bit_length()  # batch rows rounded up to a power of two: few shapes
      rows = -(-rows // jax.local_device_count()) * jax.local_device_count()  # ... and to the device count
      s_len = bucket_len(max(len(sources[i]) for i in idx) + 1, self.cfg.data.bucket_step)
      src = np.full((rows, s_len), PAD, np.int32)
      src_len = np.ones((rows,), np.int32)
      src[:, 0] = EOS
      for row, i in enumerate(idx):
        src[row, :len(sources[i])], src[row, len(sources[i])] = sources[i], EOS
        src_len[row] = len(sources[i]) + 1
      out = {k: np.asarray(v) for k, v in decode(src, src_len, np.resize(idx, rows)).items()}
      for row, i in enumerate(idx):
        hyps = []
        for n in range(options.nbest):
          length = int(out['lengths'][row, n])
          hyps.append({'tokens': out['tokens'][row, n, :length].tolist(), 'score': float(out['scores'][row, n]),
                       'attention': out['attn'][row, n, :length + 1, :src_len[row]]})
        results[i] = {**hyps[0], 'nbest': hyps}
    return results

  def _decoder(self, o: DecodeOptions) -> Callable:
    """decode(src_BxS, src_len_B, ids_B) -> outputs with an n-best axis: tokens (B, N, L), lengths, scores,
    attn (B, N, L, S); `ids_B` (each source's index in the input) picks the sampling keys."""
    dc = self.cfg.decode
    rule = (float(dc.max_len_a), int(dc.max_len_b), int(dc.max_len_cap))
    searching = not o.sample and (o.beam > 1 or o.alpha != 0)
    if searching:
      fn = beam.jitted_beam_search(self.model, o.beam, o.nbest, float(o.alpha), *rule)
    elif o.sample:
      fn = sampling.jitted_sample(self.model, float(o.temperature), o.top_k, *rule)
    else:
      fn = decoding.jitted_greedy(self.model, *rule)

    def decode(src_BxS, src_len_B, ids_B):
      keys = (sampling.sentence_keys(o.seed, ids_B),) if o.sample else ()
      params, inputs = self._data_parallel((src_BxS, src_len_B) + keys)
      out = fn(params, *inputs)
      return out if searching else {k: v[:, None] for k, v in out.items()}
    return decode

  def _data_parallel(self, inputs: tuple) -> tuple:
    """With several local devices: parameters replicated, inputs split along the batch axis; the compiled
    decoder then runs each device's rows there (every row's result depends on that row only)."""
    devices = jax.local_devices()
    if len(devices) == 1:
      return self.params, inputs
    if self._replicated is None:
      mesh = Mesh(np.array(devices), ('batch',))
      self._replicated = (jax.device_put(self.params, NamedSharding(mesh, P())), NamedSharding(mesh, P('batch')))
    params, rows = self._replicated
    return params, tuple(jax.device_put(x, rows) for x in inputs)

  def encode_texts(self, texts: list[str], where: str = 'input') -> list[list[int]]:
    """Source ids of each text; an unknown symbol is an error naming it and the line (`where`:line)."""
    ids = []
    for i, text in enumerate(texts):
      if not text:
        raise DataError(f'{where}:{i + 1}: empty line')
      ids.append(self.src_vocab.encode(text, f'{where}:{i + 1}'))
      if len(ids[-1]) > self.cfg.data.max_source_len:
        raise DataError(f'{where}:{i + 1}: {len(ids[-1])} symbols, over data.max_source_len='
                        f'{self.cfg.data.max_source_len}')
    return ids

  def predict_nbest(self, texts: list[str], where: str = 'input',
                    options: DecodeOptions | None = None) -> list[list[tuple[str, float]]]:
    """The options.nbest (text, score) pairs of each text, best first."""
    results = self.decode_ids(self.encode_texts(texts, where), options)
    return [[(self.tgt_vocab.decode(h['tokens']), h['score']) for h in r['nbest']] for r in results]

  def predict(self, texts: list[str], where: str = 'input', options: DecodeOptions | None = None) -> list[str]:
    """The best output text of each text."""
    return [self.tgt_vocab.decode(r['tokens']) for r in self.decode_ids(self.encode_texts(texts, where), options)]
