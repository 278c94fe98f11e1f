"""Text in, text out: batching, padding and detokenization around the compiled decoders.

  from seq2seq_jax.decoding import DecodeOptions, Predictor
  Predictor.load('workdir').predict(['hello', 'world'])
  Predictor.load('workdir').predict_nbest(['hello'], options=DecodeOptions(beam=5, nbest=3, alpha=0.6))

Options left unset (None) take the run's `decode.*` config values (`DecodeOptions.resolve`). Sources are
decoded in batches sorted by length, each padded to its bucket length (`pipeline.bucket_len`) and to a power of
two of rows, so that few shapes compile; `warm_up` compiles every bucket's one-row program ahead of time (for
decoding lines one at a time, as `predict --interactive` does).

A pointer-generator (model.copy) reads a source symbol unknown to the source vocabulary as UNK but keeps its
string: where the model copies it, it comes out verbatim (data/copying.py). Other models refuse such a symbol
in `predict` (a one-line error naming it and the line).
"""

import collections
import dataclasses
import functools
from typing import Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from seq2seq_jax import runs
from seq2seq_jax.data import copying
from seq2seq_jax.data.pipeline import bucket_len, pad_sources, source_buckets
from seq2seq_jax.data.vocab import BOS, PAD, UNK, Vocab
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
    self.model = seq2seq.build(cfg.model, len(src_vocab), len(tgt_vocab), cfg.data.shared_vocab)
    self.fns = fns or ModelFns(self.model)
    self.decode_params = params if decode_params is None else decode_params
    self._replicated = None  # (parameters on every local device, batch-split sharding), when there are several

  @property
  def is_ensemble(self) -> bool:
    return isinstance(self.fns, EnsembleFns)

  @property
  def copies(self) -> bool:
    """A pointer-generator (model.copy): it emits extended ids and reads unknown source symbols as UNK."""
    return bool(self.cfg.model.copy)

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
      if run.cfg.model.copy != first.cfg.model.copy:
        raise ConfigError(f'{run.workdir}: model.copy={run.cfg.model.copy}, but {first.workdir} has '
                          f'model.copy={first.cfg.model.copy}; an ensemble needs all members with copy or none')
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
                 prefixes: list[list[int]] | None = None, ids: Sequence[int] | None = None,
                 extended: Sequence[copying.Extended] | None = None) -> list[dict]:
    """Results per source (token ids without EOS), best first: {'tokens', 'attention' (len + 1, source len),
    'score', 'nbest': [{'tokens', 'attention', 'score'}] * options.nbest}; the top level is nbest[0].
    `prefixes`: each source's forced first output tokens (see `encode_prefixes`); `ids`: each source's number,
    which picks its sampling key (default: its index in `sources`).

    A copy model reads each source's extended ids from `extended` (`extend`; without it, from the source ids,
    where UNK then stays UNK), and its tokens may be extended ids (`symbols` maps them back)."""
    options = self.options(options)
    if self.copies and extended is None:
      extended = [copying.extend_symbols([self.src_vocab.symbols[i] for i in src], self.tgt_vocab)
                  for src in sources]
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
      src_ext = pad_sources([extended[i].ext for i in idx], s_len, rows)[0] if self.copies else None
      out = {k: np.asarray(v) for k, v in decode(src, src_len, np.resize(ids[idx], rows), prefix, src_ext).items()}
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
    """decode(src_BxS, src_len_B, ids_B, prefix_BxP, src_ext_BxS) -> outputs with an n-best axis: tokens
    (B, N, L), lengths, scores, attn (B, N, L, S); `ids_B` (each source's number) picks the sampling keys;
    `src_ext_BxS`: a copy model's extended ids (None otherwise)."""
    chosen = o.search(search.length_rule(self.cfg.decode))

    def decode(src_BxS, src_len_B, ids_B, prefix_BxP=None, src_ext_BxS=None):
      keys_B = sampling.sentence_keys(o.seed, ids_B) if o.sample else None
      params, inputs = self._data_parallel((src_BxS, src_len_B, keys_B, prefix_BxP, src_ext_BxS))
      return search.decode(params, *inputs, fns=self.fns, search=chosen)
    return decode

  def warm_up(self, options: DecodeOptions | None = None) -> list[int]:
    """Compiles the one-source decoder of `options` for every source bucket length the run accepts (what
    decoding a line at a time uses), so that no later line compiles; returns those lengths."""
    lengths = source_buckets(self.cfg.data.max_source_len, self.cfg.data.bucket_step)
    self.decode_ids([[UNK] * n for n in lengths.values()], dataclasses.replace(self.options(options), batch_size=1))
    return sorted(lengths)

  def _data_parallel(self, inputs: tuple) -> tuple:
    """With several local devices: parameters replicated, inputs (None: absent) split along the batch axis; the
    compiled decoder then runs each device's rows there (every row's result depends on that row only)."""
    devices = jax.local_devices()
    if len(devices) == 1:
      return self.decode_params, inputs
    if self._replicated is None:
      mesh = Mesh(np.array(devices), ('batch',))
      self._replicated = (jax.device_put(self.decode_params, NamedSharding(mesh, P())),
                          NamedSharding(mesh, P('batch')))
    params, rows = self._replicated
    return params, tuple(None if x is None else jax.device_put(x, rows) for x in inputs)

  def encode_texts(self, texts: list[str], where: str = 'input', lenient: bool = False,
                   first_line: int = 1) -> list[list[int]]:
    """Source ids of each text; an unknown symbol is an error naming it and the line (`where`:line, the first
    text being line `first_line`), unless `lenient` or the model copies: then it is UNK."""
    ids = []
    for i, text in enumerate(texts, first_line):
      if not text:
        raise DataError(f'{where}:{i}: empty line')
      unknown = collections.Counter() if lenient or self.copies else None
      ids.append(self.src_vocab.encode(text, f'{where}:{i}', unknown))
      if len(ids[-1]) > self.cfg.data.max_source_len:
        raise DataError(f'{where}:{i}: {len(ids[-1])} symbols, over data.max_source_len='
                        f'{self.cfg.data.max_source_len}')
    return ids

  def encode_prefixes(self, lines: list[str], where: str, sources: list[list[int]],
                      extended: Sequence[copying.Extended] | None = None) -> list[list[int]]:
    """Target ids of each source's forced output prefix (`lines`: one per source, in the target vocabulary's
    tokenization; an empty line forces nothing; a copy model's prefix may also name symbols of its source's
    `extended` vocabulary). One-line errors, naming `where`:line, for an unknown symbol, a prefix longer than
    its source's output limit, and a line count other than the number of sources."""
    if len(lines) != len(sources):
      raise DataError(f'{where}: {len(lines)} prefix line(s) for {len(sources)} input line(s); give one prefix '
                      f'per input line (an empty line for none)')
    limits = search.length_rule(self.cfg.decode).limits(np.array([len(s) + 1 for s in sources]))
    prefixes = []
    for i, (line, limit) in enumerate(zip(lines, np.asarray(limits)), 1):
      prefixes.append(self._encode_prefix(line.strip(), f'{where}:{i}', extended[i - 1] if extended else None))
      if len(prefixes[-1]) > limit:
        raise DataError(f'{where}:{i}: a prefix of {len(prefixes[-1])} tokens, over the output limit {limit} of '
                        f'its input line (decode.max_len_a, max_len_b, max_len_cap)')
    return prefixes

  def _encode_prefix(self, line: str, where: str, extended: copying.Extended | None) -> list[int]:
    """One prefix's target ids (extended ids where `extended` is given); an unknown symbol is an error."""
    if extended is None:
      return self.tgt_vocab.encode(line, where)
    unknown = collections.Counter()
    ids = copying.encode_target(line, self.tgt_vocab, extended, unknown)
    if unknown:
      raise DataError(f'{where}: unknown symbol {next(iter(unknown))!r} (neither in the target vocabulary nor '
                      f'in its input line)')
    return ids

  def extend(self, texts: Sequence[str]) -> list[copying.Extended] | None:
    """A copy model's extended ids of each text (None for other models)."""
    return [copying.extend(t, self.src_vocab, self.tgt_vocab) for t in texts] if self.copies else None

  def symbols(self, tokens: Sequence[int], extended: copying.Extended | None = None) -> list[str]:
    """The target symbols of output ids (a copy model's extended ids name symbols of `extended`'s source)."""
    return copying.symbols(tokens, self.tgt_vocab, extended)

  def inputs(self, texts: list[str], where: str = 'input', lenient: bool = False, prefixes: list[str] | None = None,
             prefix_where: str = 'prefixes', first_line: int = 1) -> dict:
    """The keyword arguments of `decode_ids` for the texts (encoded by `encode_texts`): `prefixes`, one forced
    output prefix per text (see `encode_prefixes`); `first_line`, the line number of texts[0] (it numbers errors
    and picks the sampling keys, so that a text decoded alone gets the output it would get in the whole input)."""
    sources, extended = self.encode_texts(texts, where, lenient, first_line), self.extend(texts)
    forced = None if prefixes is None else self.encode_prefixes(prefixes, prefix_where, sources, extended)
    return {'sources': sources, 'prefixes': forced, 'ids': np.arange(len(texts)) + first_line - 1,
            'extended': extended}

  def with_symbols(self, results: list[dict], extended: Sequence[copying.Extended] | None) -> list[dict]:
    """`decode_ids` results with each hypothesis's output 'symbols' (`extended`: as given to `decode_ids`)."""
    for i, r in enumerate(results):
      for h in r['nbest']:
        h['symbols'] = self.symbols(h['tokens'], extended[i] if extended else None)
      r['symbols'] = r['nbest'][0]['symbols']
    return results

  def decode_texts(self, texts: list[str], where: str = 'input', options: DecodeOptions | None = None,
                   lenient: bool = False, **kwargs) -> list[dict]:
    """`decode_ids` of the texts (`kwargs`: prefixes, prefix_where, first_line; see `inputs`), with each
    hypothesis's 'symbols'."""
    inputs = self.inputs(texts, where, lenient, **kwargs)
    return self.with_symbols(self.decode_ids(options=options, **inputs), inputs['extended'])

  def predict_nbest(self, texts: list[str], where: str = 'input', options: DecodeOptions | None = None,
                    prefixes: list[str] | None = None, prefix_where: str = 'prefixes',
                    first_line: int = 1) -> list[list[tuple[str, float]]]:
    """The options.nbest (text, score) pairs of each text, best first (arguments: see `decode_texts`)."""
    results = self.decode_texts(texts, where, options, prefixes=prefixes, prefix_where=prefix_where,
                                first_line=first_line)
    return [[(self.tgt_vocab.join(h['symbols']), h['score']) for h in r['nbest']] for r in results]

  def predict(self, texts: list[str], where: str = 'input', options: DecodeOptions | None = None,
              prefixes: list[str] | None = None) -> list[str]:
    """The best output text of each text."""
    return [hyps[0][0] for hyps in self.predict_nbest(texts, where, options, prefixes)]

  def p_gen(self, texts: list[str], results: list[dict]) -> list[np.ndarray]:
    """A copy model's p_gen at every step (EOS included) of each text's best output: its own output fed to the
    teacher-forced decoder (with soft attention: for monotonic kinds, which decode hard, an approximation)."""
    ids, extended = self.encode_texts(texts, lenient=True), self.extend(texts)
    step = self.cfg.data.bucket_step
    out = []
    for i, r in enumerate(results):  # padded to bucket lengths: few shapes to compile
      s_len, t_len = bucket_len(len(ids[i]) + 1, step), bucket_len(len(r['tokens']) + 1, step)
      src, src_len = pad_sources([ids[i]], s_len)
      src_ext = pad_sources([extended[i].ext], s_len)[0]
      tgt_in = np.full((1, t_len), PAD, np.int32)
      tgt_in[0, :len(r['tokens']) + 1] = [BOS] + list(r['tokens'])
      gates = _p_gen_fn(self.model)(self.params, src, src_len, tgt_in, src_ext)
      out.append(np.asarray(gates)[0, :len(r['tokens']) + 1])
    return out


@functools.lru_cache(maxsize=None)
def _p_gen_fn(model) -> Callable:
  return jax.jit(lambda params, *args: model.apply({'params': params}, *args, method='p_gen'))
