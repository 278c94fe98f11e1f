"""Text in, text out: batching, padding and detokenization around the compiled decoders.

  from seq2seq_jax.decoding import DecodeOptions, Predictor
  Predictor.load('workdir').predict(['hello', 'world'])
  Predictor.load('workdir').predict_nbest(['hello'], options=DecodeOptions(beam=5, nbest=3, alpha=0.6))

Options left unset (None) take the run's `decode.*` config values (`DecodeOptions.resolve`). Sources are
decoded in batches sorted by length, each padded to its bucket length (`pipeline.bucket_len`) and to a power of
two of rows, so that few shapes compile; `warm_up` compiles every bucket's one-row program ahead of time (for
decoding lines one at a time, as `predict --interactive` does).
"""

import dataclasses
from typing import Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from seq2seq_jax import runs
from seq2seq_jax.data.pipeline import bucket_len, pad_sources, source_buckets
from seq2seq_jax.data.vocab import PAD, UNK, Vocab
from seq2seq_jax.decoding import sampling, search
from seq2seq_jax.decoding.ensemble import COMBINE, EnsembleFns
from seq2seq_jax.decoding.fns import ModelFns
from seq2seq_jax.decoding.search import DecodeOptions
from seq2seq_jax.errors import ConfigError, DataError
from seq2seq_jax.model import seq2seq


class Predictor:
  """A trained model (or an ensemble of several) with its vocabularies and decoding settings.

  `model` and `params` are the (first) model's; `fns` and `decode_params` are what the decoders run: the model
  itself, or the ensemble (`ensemble.EnsembleFns` over a tuple of parameter trees). `cfg` is the (first) run's
  config: its data and decode sections set batching, length limits and the length rule.
  """

  def __init__(self, cfg, params, src_vocab: Vocab, tgt_vocab: Vocab, fns=None, decode_params=None):
    self.cfg, self.params, self.src_vocab, self.tgt_vocab = cfg, params, src_vocab, tgt_vocab
    self.model = seq2seq.build(cfg.model, len(src_vocab), len(tgt_vocab))
    self.fns = fns or ModelFns(self.model)
    self.decode_params = params if decode_params is None else decode_params
    self._replicated = None  # (parameters on every local device, batch-split sharding), when there are several

  @property
  def is_ensemble(self) -> bool:
    return isinstance(self.fns, EnsembleFns)

  @classmethod
  def load(cls, workdir: str | Sequence[str], step: str | int = 'best', combine: str = 'logprob') -> 'Predictor':
    """The workdir's model at `step`: 'best' (default), 'latest', 'averaged' or a step number (parameters
    only: no optimizer state is read). Several workdirs: their ensemble (see ensemble.py), each at `step`,
    combined by `combine` ('logprob' or 'prob'); they must share the source and target vocabularies."""
    workdirs = [workdir] if isinstance(workdir, str) else list(workdir)
    members = [runs.open_run(w, step) for w in workdirs]
    first = members[0]
    if len(members) == 1:
      return cls(first.cfg, first.params, first.src_vocab, first.tgt_vocab)
    if combine not in COMBINE:
      raise ConfigError(f'ensemble combination {combine!r} is not one of {", ".join(COMBINE)}')
    for run in members[1:]:
      for side, mine, theirs in (('target', run.tgt_vocab, first.tgt_vocab),
                                 ('source', run.src_vocab, first.src_vocab)):
        if mine != theirs:
          raise DataError(f'{run.workdir}: its {side} vocabulary ({mine.fingerprint()}) differs from that of '
                          f'{first.workdir} ({theirs.fingerprint()}); an ensemble needs the same vocabularies')
    fns = EnsembleFns(tuple(ModelFns(run.model) for run in members), combine)
    return cls(first.cfg, first.params, first.src_vocab, first.tgt_vocab, fns=fns,
               decode_params=tuple(run.params for run in members))

  def options(self, options: DecodeOptions | None = None) -> DecodeOptions:
    """`options` (default: greedy) with the fields left unset taken from the run's decode section."""
    return (options or DecodeOptions()).resolve(self.cfg.decode)

  def decode_ids(self, sources: list[list[int]], options: DecodeOptions | None = None,
                 prefixes: list[list[int]] | None = None, ids: Sequence[int] | None = None) -> list[dict]:
    """Results per source (token ids without EOS), best first: {'tokens', 'attention' (len + 1, source len),
    'score', 'nbest': [{'tokens', 'attention', 'score'}] * options.nbest}; the top level is nbest[0].
    `prefixes`: each source's forced first output tokens (see `encode_prefixes`); `ids`: each source's number,
    which picks its sampling key (default: its index in `sources`)."""
    options = self.options(options)
    decode = self._decoder(options)
    batch_size = options.batch_size or self.cfg.decode.batch_size
    ids = np.arange(len(sources)) if ids is None else np.asarray(ids)
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    results = [None] * len(sources)
    for start in range(0, len(order), batch_size):
      idx = order[start:start + batch_size]
      rows = 1 << (len(idx) - 1).bit_length()  # batch rows rounded up to a power of two: few shapes
      rows = -(-rows // jax.local_device_count()) * jax.local_device_count()  # ... and to the device count
      s_len = bucket_len(max(len(sources[i]) for i in idx) + 1, self.cfg.data.bucket_step)
      src, src_len = pad_sources([sources[i] for i in idx], s_len, rows)
      prefix = self._prefix_rows([prefixes[i] for i in idx], rows) if prefixes else None
      out = {k: np.asarray(v) for k, v in decode(src, src_len, np.resize(ids[idx], rows), prefix).items()}
      for row, i in enumerate(idx):
        hyps = []
        for n in range(options.nbest):
          length = int(out['lengths'][row, n])
          hyps.append({'tokens': out['tokens'][row, n, :length].tolist(), 'score': float(out['scores'][row, n]),
                       'attention': out['attn'][row, n, :length + 1, :src_len[row]]})
        results[i] = {**hyps[0], 'nbest': hyps}
    return results

  def _prefix_rows(self, prefixes: list[list[int]], rows: int) -> np.ndarray | None:
    """Prefixes as (rows, P) PAD-padded ids, P a bucket length; None when all are empty (nothing to force)."""
    longest = max(len(p) for p in prefixes)
    if not longest:
      return None
    out = np.full((rows, bucket_len(longest, self.cfg.data.bucket_step)), PAD, np.int32)
    for row, p in enumerate(prefixes):
      out[row, :len(p)] = p
    return out

  def _decoder(self, o: DecodeOptions) -> Callable:
    """decode(src_BxS, src_len_B, ids_B, prefix_BxP) -> outputs with an n-best axis: tokens (B, N, L), lengths,
    scores, attn (B, N, L, S); `ids_B` (each source's number) picks the sampling keys."""
    chosen = o.search(search.length_rule(self.cfg.decode))

    def decode(src_BxS, src_len_B, ids_B, prefix_BxP=None):
      keys = sampling.sentence_keys(o.seed, ids_B) if o.sample else None
      params, (src_BxS, src_len_B, keys, prefix_BxP) = self._data_parallel((src_BxS, src_len_B, keys, prefix_BxP))
      return search.decode(params, src_BxS, src_len_B, keys, prefix_BxP, fns=self.fns, search=chosen)
    return decode

  def warm_up(self, options: DecodeOptions | None = None) -> list[int]:
    """Compiles the one-source decoder of `options` for every source bucket length the run accepts (what
    decoding a line at a time uses), so that no later line compiles; returns those lengths."""
    lengths = source_buckets(self.cfg.data.max_source_len, self.cfg.data.bucket_step)
    self.decode_ids([[UNK] * n for n in lengths.values()], dataclasses.replace(self.options(options), batch_size=1))
    return sorted(lengths)

  def _data_parallel(self, inputs: tuple) -> tuple:
    """With several local devices: parameters replicated, inputs split along the batch axis; the compiled
    decoder then runs each device's rows there (every row's result depends on that row only)."""
    devices = jax.local_devices()
    if len(devices) == 1:
      return self.decode_params, inputs
    if self._replicated is None:
      mesh = Mesh(np.array(devices), ('batch',))
      self._replicated = (jax.device_put(self.decode_params, NamedSharding(mesh, P())),
                          NamedSharding(mesh, P('batch')))
    params, rows = self._replicated
    return params, tuple(None if x is None else jax.device_put(x, rows) for x in inputs)

  def encode_texts(self, texts: list[str], where: str = 'input', first_line: int = 1) -> list[list[int]]:
    """Source ids of each text; an unknown symbol is an error naming it and the line (`where`:line, the first
    text being line `first_line`)."""
    ids = []
    for i, text in enumerate(texts, first_line):
      if not text:
        raise DataError(f'{where}:{i}: empty line')
      ids.append(self.src_vocab.encode(text, f'{where}:{i}'))
      if len(ids[-1]) > self.cfg.data.max_source_len:
        raise DataError(f'{where}:{i}: {len(ids[-1])} symbols, over data.max_source_len='
                        f'{self.cfg.data.max_source_len}')
    return ids

  def encode_prefixes(self, lines: list[str], where: str, sources: list[list[int]]) -> list[list[int]]:
    """Target ids of each source's forced output prefix (`lines`: one per source, in the target vocabulary's
    tokenization; an empty line forces nothing). One-line errors, naming `where`:line, for an unknown symbol, a
    prefix longer than its source's output limit, and a line count other than the number of sources."""
    if len(lines) != len(sources):
      raise DataError(f'{where}: {len(lines)} prefix line(s) for {len(sources)} input line(s); give one prefix '
                      f'per input line (an empty line for none)')
    limits = search.length_rule(self.cfg.decode).limits(np.array([len(s) + 1 for s in sources]))
    prefixes = []
    for i, (line, limit) in enumerate(zip(lines, np.asarray(limits)), 1):
      prefixes.append(self.tgt_vocab.encode(line.strip(), f'{where}:{i}'))
      if len(prefixes[-1]) > limit:
        raise DataError(f'{where}:{i}: a prefix of {len(prefixes[-1])} tokens, over the output limit {limit} of '
                        f'its input line (decode.max_len_a, max_len_b, max_len_cap)')
    return prefixes

  def predict_nbest(self, texts: list[str], where: str = 'input', options: DecodeOptions | None = None,
                    prefixes: list[str] | None = None, prefix_where: str = 'prefixes',
                    first_line: int = 1) -> list[list[tuple[str, float]]]:
    """The options.nbest (text, score) pairs of each text, best first; `prefixes`: one forced output prefix per
    text (see `encode_prefixes`); `first_line`: the line number of texts[0] (it numbers errors and picks the
    sampling keys, so that a text decoded alone gets the output it would get in the whole input)."""
    sources = self.encode_texts(texts, where, first_line)
    forced = None if prefixes is None else self.encode_prefixes(prefixes, prefix_where, sources)
    results = self.decode_ids(sources, options, forced, ids=np.arange(len(texts)) + first_line - 1)
    return [[(self.tgt_vocab.decode(h['tokens']), h['score']) for h in r['nbest']] for r in results]

  def predict(self, texts: list[str], where: str = 'input', options: DecodeOptions | None = None,
              prefixes: list[str] | None = None) -> list[str]:
    """The best output text of each text."""
    return [hyps[0][0] for hyps in self.predict_nbest(texts, where, options, prefixes)]
