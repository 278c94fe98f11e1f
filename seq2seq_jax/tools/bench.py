"""Training and decoding speed of a config on this machine, as one JSON-able dict (`seq2seq-jax bench`).

  seq2seq-jax bench --config configs/g2p_cmudict.py [--workdir DIR] [--steps 50] [--no-decode]

Training: `steps` batches of the config's own training stream (its buckets, its lengths) are taken first; the
trainer's data-parallel step (parallel.DataParallel) is compiled and run once on each distinct (S, T) shape
among them (warm-up), then each batch is timed as one step up to `jax.block_until_ready`. Compilations are
counted by a `jax.monitoring` listener on XLA's backend-compile event, so a recompile while timing shows.
Tokens are the trainer's: real source symbols (without EOS) + real target symbols with EOS, filler rows and
padding not counted. FLOPs are the analytic matmul count of flops.py (3 × forward per step), at the padded
shapes (`flops_per_step`) and at each sentence's own lengths (`useful_flops_per_step`); achieved FLOP/s
(at the median step time) are compared with the best fp32 FLOP/s of square matmuls measured in the same run.
With `profile_dir`, five more steps run under jax.profiler (a Perfetto/TensorBoard trace) and the XLA operations
that took the most time per step are listed.
Memory: the process's peak RSS, and XLA's memory analysis of the train step (per device) at its largest shape.
Decoding: greedy and beam-5 sources/s on the test split (experiments.decode_speed), with the trained
parameters of `workdir`, or else with freshly initialised ones.
"""

import collections
import dataclasses
import glob
import gzip
import importlib.metadata
import json
import os
import resource
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from seq2seq_jax import config as config_lib
from seq2seq_jax.data import sources
from seq2seq_jax.decoding import DecodeOptions, Predictor
from seq2seq_jax.model import flops, seq2seq
from seq2seq_jax.runs import workdir as workdir_lib
from seq2seq_jax.tools import experiments
from seq2seq_jax.training import objectives, parallel, steps as steps_lib

MIB = 2.0 ** 20
BACKEND_COMPILE_EVENT = '/jax/core/compile/backend_compile_duration'  # jax._src.dispatch.BACKEND_COMPILE_EVENT
CACHE_HIT_EVENT = '/jax/compilation_cache/cache_hits'
UNTRAINED_NOTE = ('freshly initialised parameters: an untrained model rarely emits EOS, so most outputs run to '
                  'the maximum length (decode.max_len_a * source length + decode.max_len_b); sources/s is a '
                  'lower bound for a trained model, and PER/WER mean nothing')


class CompileCounter:
  """Counts XLA compilations (and their seconds) while active, from jax.monitoring events.

  A hit of the persistent compilation cache still goes through the backend-compile event (as a load); such
  hits are counted separately in `cache_hits`.
  """

  def __init__(self):
    self.count, self.seconds, self.cache_hits = 0, 0.0, 0

  def _duration(self, event: str, duration: float, **kwargs) -> None:
    del kwargs
    if event == BACKEND_COMPILE_EVENT:
      self.count, self.seconds = self.count + 1, self.seconds + duration

  def _event(self, event: str, **kwargs) -> None:
    del kwargs
    if event == CACHE_HIT_EVENT:
      self.cache_hits += 1

  def __enter__(self) -> 'CompileCounter':
    jax.monitoring.register_event_duration_secs_listener(self._duration)
    jax.monitoring.register_event_listener(self._event)
    return self

  def __exit__(self, *exc) -> None:
    jax.monitoring.unregister_event_duration_listener(self._duration)
    jax.monitoring.unregister_event_listener(self._event)


def matmul_peak(sizes=(1024, 2048), reps: int = 5) -> dict:
  """Best fp32 FLOP/s of a jit-compiled square matmul on the first device, per size and overall."""
  rates = {}
  for n in sizes:
    a_NxN, b_NxN = jax.random.normal(jax.random.PRNGKey(n), (2, n, n), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    matmul(a_NxN, b_NxN).block_until_ready()
    best = float('inf')
    for _ in range(reps):
      start = time.perf_counter()
      matmul(a_NxN, b_NxN).block_until_ready()
      best = min(best, time.perf_counter() - start)
    rates[str(n)] = 2.0 * n ** 3 / best
  return {'best': round(max(rates.values())), 'by_size': {n: round(r) for n, r in rates.items()}}


def real_tokens(batch: dict) -> int:
  """Real tokens of a batch, as the trainer counts them: source without EOS + target with EOS, real rows."""
  real_B = batch['weights'].max(-1) > 0
  return int(((batch['src_len'] - 1) * real_B).sum() + batch['weights'].sum())


def _shape(batch: dict) -> tuple[int, int, int]:
  return batch['src'].shape + batch['tgt_in'].shape[1:]


def _memory(compiled) -> dict:
  """XLA's memory analysis of a compiled program, in MiB."""
  stats = compiled.memory_analysis()
  if stats is None:
    return {}
  return {name: round(getattr(stats, f'{name}_size_in_bytes') / MIB, 2)
          for name in ('temp', 'argument', 'output', 'alias', 'generated_code')
          if hasattr(stats, f'{name}_size_in_bytes')}


def top_ops(trace_dir: str, steps: int, top: int = 15) -> list[dict]:
  """The XLA operations that took the most time per step in a profiler trace (from its perfetto JSON)."""
  paths = sorted(glob.glob(os.path.join(trace_dir, 'plugins', 'profile', '*', 'perfetto_trace.json.gz')))
  if not paths:
    return []
  with gzip.open(paths[-1], 'rt') as f:
    events = json.load(f)
  events = events['traceEvents'] if isinstance(events, dict) else events
  seconds, calls = collections.Counter(), collections.Counter()
  for e in events:  # XLA:CPU thunks; Python frames ('$...') and executor waits are not operations
    name = e.get('name', '')
    if e.get('ph') == 'X' and not name.startswith('$') and not name.startswith(('ThunkExecutor', 'Pjit')):
      seconds[name] += e.get('dur', 0) / 1e6
      calls[name] += 1
  return [{'op': name, 'ms_per_step': round(1e3 * sec / steps, 3), 'calls_per_step': calls[name] // steps}
          for name, sec in seconds.most_common(top)]


def time_training(cfg, model, examples, num_steps: int, log, profile_dir: str | None = None,
                  objective=None) -> tuple[dict, dict]:
  """Warm-up and timed steps of the trainer's step (with train.objective's sequence-level `objective`, if any);
  returns (results, the initial parameters on the host)."""
  state = steps_lib.init_state(model, cfg, jax.random.PRNGKey(cfg.seed), examples.batch(np.arange(1)))
  init_params = jax.device_get(state.params)
  stream = iter(parallel.train_stream(cfg, examples))
  batches = [next(stream) for _ in range(num_steps)]
  for batch in batches:
    batch.pop('index')
  by_shape = {}
  for batch in batches:
    by_shape.setdefault(_shape(batch), batch)
  dp = parallel.DataParallel(model, cfg, objective=objective)
  state = dp.replicate(state)
  log(f'bench: compiling the train step for {len(by_shape)} shape(s) (B, S, T): {sorted(by_shape)}')
  with CompileCounter() as warm:
    for batch in by_shape.values():
      state, metrics = dp.step(state, batch)
      jax.block_until_ready((state, metrics))
  log(f'bench: timing {num_steps} steps')
  seconds, step_metrics = [], []
  with CompileCounter() as timed:
    for batch in batches:
      start = time.perf_counter()
      state, metrics = dp.step(state, batch)
      jax.block_until_ready((state, metrics))
      seconds.append(time.perf_counter() - start)
      step_metrics.append(metrics)
  profiled = []
  if profile_dir:  # a few more steps under the profiler (after the timing: tracing slows steps down)
    profiled = batches[:min(5, len(batches))]
    log(f'bench: profiling {len(profiled)} steps into {profile_dir}')
    with jax.profiler.trace(profile_dir, create_perfetto_trace=True):
      for batch in profiled:
        state, metrics = dp.step(state, batch)
        jax.block_until_ready((state, metrics))
  c = model.c
  flops_B = [flops.train_step(c, *_shape(b)) for b in batches]
  # The largest shape (by FLOPs) once more through lower/compile, for XLA's memory analysis (per device); after
  # the timing, so this compilation is not counted there.
  largest = max(by_shape, key=lambda s: flops.train_step(c, *s))
  compiled = dp.compile(state, by_shape[largest])
  total, tokens, median = sum(seconds), sum(real_tokens(b) for b in batches), statistics.median(seconds)
  result = {
      'steps': num_steps, 'timed_s': round(total, 6), 'train_tokens': tokens,
      'train_tokens_per_s': round(tokens / total, 1),
      'step_ms': {'median': round(1e3 * median, 3), 'min': round(1e3 * min(seconds), 3),
                  'max': round(1e3 * max(seconds), 3)},
      'shapes': len(by_shape), 'compile_s': round(warm.seconds, 3), 'compiles_during_warmup': warm.count,
      'compile_cache_hits': warm.cache_hits, 'recompiles_during_timing': timed.count,
      'flops_per_step': round(float(np.mean(flops_B))),
      'useful_flops_per_step': round(float(np.mean([flops.useful_train_step(c, b['src_len'], b['weights'])
                                                    for b in batches]))),
      'achieved_flops_per_s': round(float(np.mean(flops_B)) / median),
      'train_step_memory_mib': {'shape': list(largest), **_memory(compiled)},
      'nonfinite_steps': sum(int(dp.metrics(m)['nonfinite']) for m in step_metrics),
  }
  if profile_dir:
    result['profile'] = {'dir': profile_dir, 'top_ops': top_ops(profile_dir, len(profiled))}
  return result, init_params


def time_decoding(predictor, references, params: str, repeats: int) -> dict:
  """Greedy and beam-5 sources/s (with PER/WER) of decoding `references`' sources."""
  out = {'params': params, 'split': 'test', 'sources': len(references)}
  for name, options in (('greedy', DecodeOptions()), ('beam5', DecodeOptions(beam=5))):
    out[name] = experiments.decode_speed(predictor, references, options, repeats=repeats)
    out[f'{name}_sentences_per_s'] = out[name]['sources_per_s']
  if params == 'untrained':
    out['note'] = UNTRAINED_NOTE
  return out


def bench(cfg, config_path: str, workdir: str | None = None, num_steps: int = 50, decode: bool = True,
          decode_repeats: int = 3, log=print, profile_dir: str | None = None) -> dict:
  """The whole benchmark of `cfg` (see the module docstring); `workdir`: a trained run to decode with."""
  devices = jax.devices()
  config_lib.validate(cfg, num_devices=len(devices))
  predictor = None
  if workdir is not None:  # a missing or broken workdir fails before anything is timed
    workdir_lib.load_config(workdir)
    predictor = Predictor.load(workdir) if decode else None
  train_pairs = sources.load_pairs(cfg, 'train')
  src_vocab, tgt_vocab = (workdir_lib.load_vocabs(workdir) if workdir is not None
                          else sources.build_vocabs(cfg, train_pairs))
  examples, _, _ = sources.encode(cfg, train_pairs, src_vocab, tgt_vocab)
  model = seq2seq.build(cfg.model, len(src_vocab), len(tgt_vocab), cfg.data.shared_vocab)
  log(f'bench: {len(examples)} training pairs, batch size {cfg.data.batch_size}, {len(devices)} '
      f'{devices[0].platform} device(s)')
  training, init_params = time_training(cfg, model, examples, num_steps, log, profile_dir,
                                        objectives.build(cfg, tgt_vocab))
  log('bench: measuring the fp32 matmul peak')
  peak = matmul_peak()
  # On CPU every (virtual) device shares the same cores; accelerators each bring their own peak.
  machine_peak = peak['best'] * (1 if devices[0].platform == 'cpu' else len(devices))
  result = {
      'config': config_path, 'workdir': workdir, 'jax_version': jax.__version__,
      'jaxlib_version': importlib.metadata.version('jaxlib'),
      'devices': {'count': len(devices), 'platform': devices[0].platform, 'kind': devices[0].device_kind},
      'batch_size': cfg.data.batch_size, 'parallel_mode': cfg.parallel.mode,
      'model': dataclasses.asdict(model.c), 'parameters': int(sum(x.size for x in jax.tree.leaves(init_params))),
      'compute_dtype': cfg.model.compute_dtype, 'remat': cfg.model.remat,
      **training,
      'matmul_peak_flops_per_s': machine_peak, 'matmul_peak_by_size': peak['by_size'],
      'share_of_peak': round(training['achieved_flops_per_s'] / machine_peak, 4),
  }
  if decode:
    params = 'trained' if predictor else 'untrained'
    predictor = predictor or Predictor(cfg, init_params, src_vocab, tgt_vocab)
    references = sources.group_references(sources.load_pairs(predictor.cfg, 'test'))
    log(f'bench: decoding {len(references)} test sources (greedy, beam 5) with {params} parameters')
    result['decode'] = time_decoding(predictor, references, params, decode_repeats)
  result['peak_memory'] = {'rss_mib': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                           'train_step': result.pop('train_step_memory_mib')}
  return result
