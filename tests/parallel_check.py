"""Data parallelism against one device, for tests/test_parallel.py, in a process of its own (8 fake devices):

  XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/parallel_check.py K OUT_DIR [KEY=VALUE ...]

Runs K train steps on one device (plain jit), with DataParallel pmap and with DataParallel shard_map on the same
global batches, then the shard_map traps (check_vma on/off, with/without an extra gradient psum) for one step.
Config overrides after OUT_DIR (e.g. another attention kind, the attention losses, accumulation, a sequence-level
objective) change the model and the training of the three runs; the traps (a model of their own) are then
skipped. With train.plateau_patience > 0 each step gets another learning-rate scale (0.5 ** step).
Prints one JSON object (metrics per run and step); the final parameters go to
OUT_DIR/params_{init,single,pmap,shard_map}.npz.
"""

import functools
import json
import os
import sys

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P

from seq2seq_jax import config
from seq2seq_jax.training import objectives, parallel, steps
from seq2seq_jax.data.pipeline import Examples
from seq2seq_jax.data.vocab import Vocab
from seq2seq_jax.model import ModelConfig, Seq2Seq

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GLOBAL_BATCH = 16
VOCAB = 12  # 4 special symbols + 8 letters
# Deterministic steps: no dropout, always the gold previous token (no sampling).
OVERRIDES = ['data.batch_size=16', 'data.bucket_step=8', 'model.embed_size=8', 'model.encoder_size=8',
             'model.decoder_size=16', 'model.attention_size=8', 'model.bidirectional=False', 'model.dropout=0.0',
             'train.teacher_forcing=constant', 'train.teacher_forcing_ratio=1.0', 'train.warmup_steps=2',
             'train.learning_rate=0.01']
METRICS = ('loss_sum', 'grad_norm', 'tokens', 'correct', 'src_tokens', 'nonfinite')
AUX_METRICS = ('coverage_loss_sum', 'guided_loss_sum', 'guided_pairs',  # when the run has them
               'sequence_loss_sum', 'candidate_cost_sum', 'candidates', 'baseline_cost_sum')


def batches(k: int, bucket_step: int, copy: bool = False, refs: bool = False) -> list[dict]:
  """K global batches of reversal pairs, 3..7 letters (one bucket shape), with filler rows in the last one.
  `copy`: a pointer-generator's batches, as if the target vocabulary lacked the last two letters (extended ids
  V + 0, V + 1 in order of first appearance, in the sources and the reversed targets); `refs`: with every
  reference of each source, for a sequence-level objective."""
  rng = np.random.default_rng(0)
  src = [rng.integers(4, VOCAB, size=rng.integers(3, 8)) for _ in range(GLOBAL_BATCH * k - 5)]
  ext = None
  if copy:
    ext = []
    for s in src:
      oovs = {}
      ext.append([x if x < VOCAB - 2 else VOCAB + oovs.setdefault(x, len(oovs)) for x in s])
  examples = Examples(src, [s[::-1] for s in (ext or src)], bucket_step, src_ext=ext)
  plan = examples.plan(GLOBAL_BATCH)  # in order: the last batch has 5 filler rows (weights 0)
  out = []
  for idx in plan:
    b = examples.batch(idx, refs=refs)
    b.pop('index')
    out.append(b)
  return out


class BagOfWords(nn.Module):
  """A scan-free stand-in with Seq2Seq's `apply` signature: logits from target embeddings + mean source."""
  vocab: int

  @nn.compact
  def __call__(self, src, src_len, tgt_in, train=False, tf_ratio=1.0, sample=False, src_ext_BxS=None):
    del src_len, train, tf_ratio, sample, src_ext_BxS
    embed = nn.Embed(self.vocab, 8)
    return nn.Dense(self.vocab)(embed(tgt_in) + embed(src).mean(1, keepdims=True)), None


def shard_step(model, cfg, reduce_grads: bool, check_vma: bool):
  """A shard_map train step over all devices, built by hand (not the one parallel.py uses)."""
  mesh = Mesh(np.array(jax.devices()), (parallel.AXIS,))
  step = functools.partial(steps.train_step, model=model, cfg=cfg, axis_name=parallel.AXIS,
                           reduce_grads=reduce_grads)
  return jax.jit(jax.shard_map(step, mesh=mesh, in_specs=(P(), P(parallel.AXIS)), out_specs=(P(), P()),
                               check_vma=check_vma))


def host(tree):
  return jax.tree.map(lambda x: np.asarray(x, np.float64), jax.device_get(tree))


def main() -> None:
  k, out_dir, extra = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
  cfg = config.load_config(os.path.join(ROOT, 'configs/reverse.py'), OVERRIDES + extra)
  model = Seq2Seq(ModelConfig.from_config(cfg.model, VOCAB, VOCAB))
  objective = objectives.build(cfg, Vocab([chr(ord('a') + i) for i in range(VOCAB - 4)], 'char'))
  data = batches(k, cfg.data.bucket_step, cfg.model.copy, refs=objective is not None)
  init = steps.init_state(model, cfg, jax.random.PRNGKey(0), data[0])
  init_host = jax.device_get(init)

  runs = {}
  # With reduce-on-plateau on, every step gets another learning-rate scale (none may recompile the step).
  scales = [0.5 ** i if cfg.train.plateau_patience else 1.0 for i in range(len(data))]
  single = jax.jit(functools.partial(steps.train_step, model=model, cfg=cfg, objective=objective))
  state, ms = init, []
  for b, scale in zip(data, scales):
    state, m = single(state, b, scale)
    ms.append(m)
  runs['single'] = (host(state.params), [host(m) for m in ms])

  compiles, recompiles = [], {}
  jax.monitoring.register_event_duration_secs_listener(
      lambda name, secs, **kw: compiles.append(name) if name == '/jax/core/compile/backend_compile_duration' else None)
  for mode in ('pmap', 'shard_map'):
    dp = parallel.DataParallel(model, cfg, mode=mode, objective=objective)
    state, ms = dp.replicate(init_host), []
    for i, b in enumerate(data):
      before = len(compiles)
      state, m = dp.step(state, b, scales[i])  # one process: its local rows are the whole global batch
      if i > 0:  # one batch shape: only the first step may compile
        recompiles[mode] = recompiles.get(mode, 0) + len(compiles) - before
      ms.append(dp.metrics(m))
    runs[mode] = (host(dp.unreplicate(state).params), [host(m) for m in ms])

  vma_error, traps = '', {}
  if not extra:
    vma_error, traps = _traps(model, cfg, init_host, data)
  for name, (params, _) in {**runs, 'init': (host(init_host.params), [])}.items():
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    np.savez(os.path.join(out_dir, f'params_{name}.npz'), **{jax.tree_util.keystr(p): x for p, x in flat})
  keys = METRICS + tuple(key for key in AUX_METRICS if key in runs['single'][1][0])
  report = {'devices': jax.device_count(), 'steps': len(data),
            'batch_shapes': sorted({str(b['src'].shape) for b in data}),
            'metrics': {name: {key: [float(m[key]) for m in ms] for key in keys}
                        for name, (_, ms) in runs.items()},
            'recompiles': recompiles, 'vma_error': vma_error,
            'traps': {name: {key: float(m[key]) for key in METRICS} for name, m in traps.items()}}
  print(json.dumps(report))


def _traps(model, cfg, init_host, data) -> tuple[str, dict]:
  """The shard_map traps: the vma error of the RNN, and the BagOfWords steps' metrics."""
  # With check_vma=True the RNN does not trace at all (scan carries: invariant in, varying out).
  dp = parallel.DataParallel(model, cfg, mode='shard_map')
  try:
    shard_step(model, cfg, reduce_grads=False, check_vma=True)(dp.replicate(init_host), dp.shard(data[0]))
    vma_error = ''
  except (TypeError, ValueError) as e:
    vma_error = str(e).splitlines()[0]
  # A model without scans does trace with check_vma=True; there JAX already sums the gradient of replicated
  # parameters over the devices, so an extra psum (reduce_grads=True) gives N times the gradient.
  # With check_vma=False (what parallel.py uses) the psum is needed: without it each device keeps its own part.
  bow = BagOfWords(VOCAB)
  bow_init = jax.device_get(steps.init_state(bow, cfg, jax.random.PRNGKey(0), data[0]))
  _, m = jax.jit(functools.partial(steps.train_step, model=bow, cfg=cfg))(bow_init, data[0])
  traps = {'bow_single': host(m)}
  for name, reduce_grads, check_vma in (('bow_vma_no_psum', False, True), ('bow_vma_psum', True, True),
                                        ('bow_novma_psum', True, False), ('bow_novma_no_psum', False, False)):
    _, m = shard_step(bow, cfg, reduce_grads, check_vma)(dp.replicate(bow_init), dp.shard(data[0]))
    traps[name] = host(m)
  return vma_error, traps


if __name__ == '__main__':
  main()
