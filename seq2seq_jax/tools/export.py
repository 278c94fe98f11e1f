"""Export a trained run's greedy and beam decoders as serialised `jax.export` (StableHLO) programs.

  seq2seq-jax export --workdir DIR --output model.s2s.npz [--step best] [--beam 5 --alpha 0.6]

The artefact is one `.npz` file: for every source bucket length S the run's batches can have
(`pipeline.bucket_len` of 2 .. data.max_source_len + 1), `greedy_S` and `beam_S` hold the serialised
program `(params, src (b, S) int32, src_len (b,) int32) -> (tokens (b, L) int32, lengths (b,) int32)` with a
symbolic batch size b; `params` is the list of parameter arrays `param_0`, `param_1`, ... stored once beside
them; `meta` holds the vocabularies, tokenizers, buckets and length rule as JSON. It runs with jax and numpy only (`scripts/run_exported.py`, also in the README): no
Flax, no seq2seq_jax. Output tokens are PAD after EOS; `lengths` exclude EOS. Decoding depends on each
source alone, so any batching of the inputs gives the same outputs as `predict`.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from seq2seq_jax.data.pipeline import source_buckets
from seq2seq_jax.decoding import search
from seq2seq_jax.decoding.beam import Beam
from seq2seq_jax.decoding.fns import ModelFns
from seq2seq_jax.decoding.greedy import Greedy
from seq2seq_jax.errors import ConfigError, Seq2SeqError
from seq2seq_jax.runs import workdir as workdir_lib

FORMAT = 'seq2seq_jax.export/1'


def buckets(max_source_len: int, step: int) -> list[int]:
  """Every padded source length a batch of sources of 1 .. max_source_len symbols (plus EOS) can get."""
  return sorted(source_buckets(max_source_len, step))


def _program(params, fns, chosen, s_len: int):
  """The serialised decoder for sources padded to `s_len`, with a symbolic batch size; it takes the
  parameters as a flat list of arrays (in `jax.tree.leaves` order)."""
  leaves, treedef = jax.tree.flatten(params)

  def decode(leaves, src_BxS, src_len_B):
    out = search.decode(jax.tree.unflatten(treedef, leaves), src_BxS, src_len_B, None, fns=fns, search=chosen)
    return out['tokens'][:, 0], out['lengths'][:, 0]
  batch, = jax.export.symbolic_shape('b')
  exported = jax.export.export(jax.jit(decode))([jax.ShapeDtypeStruct(x.shape, x.dtype) for x in leaves],
                                                jax.ShapeDtypeStruct((batch, s_len), jnp.int32),
                                                jax.ShapeDtypeStruct((batch,), jnp.int32))
  return np.frombuffer(exported.serialize(), np.uint8)


def export(workdir: str, output: str, step: str = 'best', beam: int = 5, alpha: float = 0.0, log=print) -> dict:
  """Writes the artefact of the run's checkpoint `step` to `output`; returns what was written."""
  if beam < 1:
    raise ConfigError(f'--beam must be >= 1, got {beam}')
  if not output.endswith('.npz'):
    raise Seq2SeqError(f'--output {output}: the artefact is an .npz file; name it FILE.npz')
  if not os.path.isdir(os.path.dirname(os.path.abspath(output))):
    raise Seq2SeqError(f'--output {output}: no such directory')
  run = workdir_lib.open_run(workdir, step)
  d = run.cfg.data
  if run.cfg.model.copy:
    raise ConfigError(f'{workdir}: a pointer-generator (model.copy) needs each source\'s extended ids and its '
                      f'copied words mapped back to text, which the jax+numpy runner does not do; not exported')
  for side, vocab in (('source', run.src_vocab), ('target', run.tgt_vocab)):
    if vocab.tokenizer == 'spm':
      raise ConfigError(f'{workdir}: the {side} side uses SentencePiece, which the jax+numpy runner cannot '
                        f'tokenise; export supports char and space tokenizers')
  fns, rule = ModelFns(run.model), search.length_rule(run.cfg.decode)
  lengths = buckets(d.max_source_len, d.bucket_step)
  arrays = {}
  for name, chosen in (('greedy', Greedy(rule)), ('beam', Beam(rule, beam, 1, float(alpha)))):
    for s_len in lengths:
      log(f'export: {name} decoder for sources padded to {s_len}')
      arrays[f'{name}_{s_len}'] = _program(run.params, fns, chosen, s_len)
  meta = {'format': FORMAT, 'workdir': os.path.abspath(workdir), 'step': run.step, 'buckets': lengths,
          'beam': beam, 'alpha': alpha, 'max_source_len': d.max_source_len,
          'length_rule': {'a': rule.a, 'b': rule.b, 'cap': rule.cap},
          'source': {'tokenizer': run.src_vocab.tokenizer, 'symbols': run.src_vocab.symbols},
          'target': {'tokenizer': run.tgt_vocab.tokenizer, 'symbols': run.tgt_vocab.symbols}}
  leaves = jax.tree.leaves(run.params)
  arrays.update({f'param_{i}': np.asarray(x) for i, x in enumerate(leaves)})
  meta['params'] = len(leaves)
  arrays['meta'] = np.frombuffer(json.dumps(meta, ensure_ascii=False).encode('utf-8'), np.uint8)
  tmp = output + '.tmp.npz'
  np.savez(tmp, **arrays)
  os.replace(tmp, output)
  return {'output': output, 'bytes': os.path.getsize(output), 'step': run.step, 'buckets': lengths,
          'decoders': ['greedy', f'beam{beam}']}
