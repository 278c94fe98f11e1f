"""Train state, optimizer, schedules and the pure train/eval step functions (one device's view).

The steps take `axis_name`: under pmap/shard_map the loss is the sum over all devices' tokens divided by the
total token count (a sequence-level loss: over all devices' sources divided by their total count), so the
gradient equals that of one device holding the whole global batch.
"""

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from seq2seq_jax.model import losses
from seq2seq_jax.training import objectives


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array


def train_part(state: TrainState) -> dict:
  """What a checkpoint keeps beside the parameters: the rest of the train state."""
  return {'step': state.step, 'opt_state': state.opt_state, 'rng': state.rng}


def join(params, train: dict) -> TrainState:
  """The train state from parameters and `train_part`."""
  return TrainState(params=params, **train)


def learning_rate(t) -> optax.Schedule:
  """Linear warmup to t.learning_rate, then constant / cosine / linear decay to 0 / rsqrt."""
  warmup = max(1, t.warmup_steps)
  decay_steps = max(1, t.num_steps - warmup)
  after = {'constant': optax.constant_schedule(t.learning_rate),
           'cosine': optax.cosine_decay_schedule(t.learning_rate, decay_steps),
           'linear': optax.linear_schedule(t.learning_rate, 0.0, decay_steps),
           'rsqrt': lambda s: t.learning_rate * jnp.sqrt(warmup / (s + warmup))}[t.schedule]
  return optax.join_schedules([optax.linear_schedule(0.0, t.learning_rate, warmup), after], [warmup])


def optimizer(t) -> optax.GradientTransformation:
  """AdamW with global-norm clipping."""
  return optax.chain(optax.clip_by_global_norm(t.clip_norm),
                     optax.adamw(learning_rate(t), b1=0.9, b2=0.98, weight_decay=t.weight_decay))


def teacher_forcing_ratio(t, step):
  """Probability of feeding the gold token at `step`: constant, or decaying from teacher_forcing_ratio with
  speed k = teacher_forcing_k: linear 1 - s/k, exponential exp(-s/k), inverse sigmoid k / (k + exp(s/k))
  (Bengio et al., 2015), never below teacher_forcing_min."""
  if t.teacher_forcing == 'constant':
    return jnp.float32(t.teacher_forcing_ratio)
  s, k = jnp.asarray(step, jnp.float32), t.teacher_forcing_k
  decay = {'linear': lambda: 1.0 - s / k, 'exponential': lambda: jnp.exp(-s / k),
           'inverse_sigmoid': lambda: k / (k + jnp.exp(jnp.minimum(s / k, 80.0)))}[t.teacher_forcing]()
  return jnp.maximum(t.teacher_forcing_min, t.teacher_forcing_ratio * decay)


def guided_weight(t, step):
  """The guided attention loss's weight at `step`: train.guided_loss, or with train.guided_anneal_steps = A > 0
  decaying linearly to 0 at step A: λ · max(0, 1 − step / A)."""
  if t.guided_anneal_steps <= 0:
    return jnp.float32(t.guided_loss)
  return t.guided_loss * jnp.maximum(0.0, 1.0 - jnp.asarray(step, jnp.float32) / t.guided_anneal_steps)


def uses_sampling(t) -> bool:
  return t.teacher_forcing != 'constant' or t.teacher_forcing_ratio < 1.0


def init_state(model, cfg, rng, example_batch, params=None) -> TrainState:
  """A fresh train state: new parameters from `rng`, or the given ones (`train.init_from`), a fresh optimizer."""
  params_rng, state_rng = jax.random.split(rng)
  if params is None:  # (a copy model's parameters need no src_ext)
    params = model.init(params_rng, example_batch['src'][:1], example_batch['src_len'][:1],
                        example_batch['tgt_in'][:1])['params']
  return TrainState(step=jnp.int32(0), params=params, opt_state=optimizer(cfg.train).init(params), rng=state_rng)


def _psum(x, axis_name):
  return jax.lax.psum(x, axis_name) if axis_name else x


def _gradients(params, batch: dict, tokens, guided_pairs, sources, dropout_rng, sample_rng, step, *, model, t,
               objective, smoothing_vocab):
  """The gradient of `batch`'s loss, its cross-entropy sum divided by `tokens` (a sequence objective's sum by
  `sources`, the attention losses by their normalisers): the totals over everything one update covers (all
  devices, all micro-batches), so that the gradients of several parts of a batch add up to the gradient of the
  whole. A sequence objective's candidates come from `params` (before the update) with the per-row keys
  `batch['row_keys']`; each source's loss depends only on its own candidates, so micro-batches add up too.
  Returns (grads, (loss_sum, logits, auxiliary loss sums))."""
  if objective is not None:
    cands = objectives.candidates(objective, model, params, batch, batch['row_keys'])

  def loss_fn(params):
    logits, attn = model.apply({'params': params}, batch['src'], batch['src_len'], batch['tgt_in'], train=True,
                               tf_ratio=teacher_forcing_ratio(t, step), sample=uses_sampling(t),
                               src_ext_BxS=batch.get('src_ext'), rngs={'dropout': dropout_rng, 'sampling': sample_rng})
    loss_sum, _ = losses.cross_entropy(logits, batch['tgt_out'], batch['weights'], t.label_smoothing,
                                       smoothing_vocab)
    loss, aux = loss_sum / jnp.maximum(tokens, 1.0), {}
    if objective is not None:
      seq_sum, aux = objectives.loss(objective, model, params, batch, cands, jax.random.fold_in(dropout_rng, 1))
      seq_loss = seq_sum / jnp.maximum(sources, 1)
      # Without cross-entropy in the loss, its forward pass (for the token metrics) gets no backward pass.
      loss = seq_loss if t.xent_weight == 0 else t.xent_weight * loss + (1.0 - t.xent_weight) * seq_loss
    # The auxiliary attention losses only exist when weighted: a run without them computes what it always did.
    if t.coverage_loss > 0:
      aux['coverage_loss_sum'] = losses.coverage_loss(attn, batch['weights'])
      loss = loss + t.coverage_loss * aux['coverage_loss_sum'] / jnp.maximum(tokens, 1.0)
    if t.guided_loss > 0:
      aux['guided_loss_sum'] = losses.guided_attention_loss(attn, batch['src_len'], batch['weights'],
                                                            t.guided_width)[0]
      loss = loss + guided_weight(t, step) * aux['guided_loss_sum'] / jnp.maximum(guided_pairs, 1.0)
    return loss, (loss_sum, logits, aux)

  return jax.grad(loss_fn, has_aux=True)(params)


def _accumulated(params, batch: dict, tokens, guided_pairs, sources, dropout_rng, sample_rng, step, *, model, t,
                 objective, smoothing_vocab):
  """`_gradients` summed over t.accumulate micro-batches (consecutive rows of `batch`), one after the other in a
  scan, so that only one micro-batch's activations are alive at a time. Each micro-batch draws its own dropout
  and sampling keys. Returns (grads, loss_sum, token counts, auxiliary loss sums)."""
  k = t.accumulate
  micro = jax.tree.map(lambda x: x.reshape((k, x.shape[0] // k) + x.shape[1:]), batch)

  def one(i, part):
    grads, (loss_sum, logits, aux) = _gradients(
        params, part, tokens, guided_pairs, sources, jax.random.fold_in(dropout_rng, i),
        jax.random.fold_in(sample_rng, i), step, model=model, t=t, objective=objective,
        smoothing_vocab=smoothing_vocab)
    return grads, loss_sum, losses.token_counts(logits, part['tgt_out'], part['weights']), aux

  def add(total, i_part):
    return jax.tree.map(jnp.add, total, one(*i_part)), None

  shapes = jax.eval_shape(one, jnp.int32(0), jax.tree.map(lambda x: x[0], micro))
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
  total, _ = jax.lax.scan(add, zeros, (jnp.arange(k, dtype=jnp.int32), micro))
  return total


def train_step(state: TrainState, batch: dict, lr_scale=1.0, *, model, cfg, objective=None, axis_name=None,
               reduce_grads=True):
  """One optimizer update. Non-finite loss or gradients skip the update and are reported in the metrics.

  `objective`: the sequence-level objective of train.objective mrt / scst (`objectives.build`; the batch then
  has `refs`), None for xent. Its candidates come from the parameters before the update.

  `lr_scale` multiplies the scheduled learning rate when reduce-on-plateau is on (train.plateau_patience > 0;
  the loop keeps the scale, and it is a traced argument: one compiled step for every value). With
  train.accumulate = k > 1 the batch holds k micro-batches (k times the rows) whose gradients are summed before
  the one update.
  `reduce_grads`: sum gradients over `axis_name`. True for pmap and for shard_map with check_vma=False (what
  parallel.py uses); only under shard_map with check_vma=True does JAX already sum the gradients of replicated
  parameters (when it transposes the implicit broadcast), and a second sum would multiply them by N.
  An optional `batch['stop']` (one int per device) comes back as `metrics['stop']`, its maximum over all devices.
  """
  t = cfg.train
  if (objective is None) != (t.objective == 'xent'):
    raise ValueError(f'train.objective={t.objective!r} needs objective=objectives.build(cfg, tgt_vocab) exactly '
                     f'when it is not xent')
  rng, dropout_rng, sample_rng = jax.random.split(state.rng, 3)
  data = {key: value for key, value in batch.items() if key != 'stop'}
  sources = None
  if objective is not None:  # keys per global row (before the per-device folds below): see objectives.row_keys
    data['row_keys'] = objectives.row_keys(jax.random.fold_in(sample_rng, 1), batch['src'].shape[0], axis_name)
    sources = _psum((batch['weights'].max(-1) > 0).sum(), axis_name)
  if axis_name:  # different dropout masks on different devices
    dropout_rng = jax.random.fold_in(dropout_rng, jax.lax.axis_index(axis_name))
    sample_rng = jax.random.fold_in(sample_rng, jax.lax.axis_index(axis_name))
  tokens = _psum(batch['weights'].sum(), axis_name)
  guided_pairs = None
  if t.guided_loss > 0:  # the number of real (source position, target step) pairs, over all devices
    guided_pairs = _psum((batch['weights'].sum(-1) * batch['src_len']).sum(), axis_name)
  args = (state.params, data, tokens, guided_pairs, sources, dropout_rng, sample_rng, state.step)
  # Label smoothing spreads over the target vocabulary only, not over a copy model's extended source ids.
  kwargs = dict(model=model, t=t, objective=objective, smoothing_vocab=model.c.tgt_vocab if cfg.model.copy else None)
  if t.accumulate > 1:
    grads, loss_sum, counts, aux = _accumulated(*args, **kwargs)
  else:
    grads, (loss_sum, logits, aux) = _gradients(*args, **kwargs)
    counts = losses.token_counts(logits, batch['tgt_out'], batch['weights'])
  if axis_name and reduce_grads:
    grads = jax.lax.psum(grads, axis_name)
  updates, opt_state = optimizer(t).update(grads, state.opt_state, state.params)
  lr = learning_rate(t)(state.step)
  if t.plateau_patience > 0:  # AdamW's update is -lr * (...): scaling the update scales the learning rate
    updates = jax.tree.map(lambda u: u * lr_scale, updates)
    lr = lr * lr_scale
  params = optax.apply_updates(state.params, updates)
  grad_norm = optax.tree.norm(grads)
  loss_sum = _psum(loss_sum, axis_name)
  finite = jnp.isfinite(loss_sum) & jnp.isfinite(grad_norm)
  if objective is not None:
    finite = finite & jnp.isfinite(_psum(aux['sequence_loss_sum'], axis_name))
  keep = functools.partial(jax.tree.map, lambda new, old: jnp.where(finite, new, old))
  new_state = TrainState(step=state.step + 1, params=keep(params, state.params),
                         opt_state=keep(opt_state, state.opt_state), rng=rng)
  counts = _psum(counts, axis_name)
  real_B = batch['weights'].max(-1) > 0
  metrics = {'loss_sum': jnp.where(finite, loss_sum, 0.0), 'grad_norm': jnp.where(finite, grad_norm, 0.0),
             'nonfinite': (~finite).astype(jnp.int32),
             'src_tokens': _psum(((batch['src_len'] - 1) * real_B).sum(), axis_name),  # without EOS
             'tf_ratio': teacher_forcing_ratio(t, state.step), 'lr': lr, **counts}
  # sums over all devices' tokens (coverage), real (n, t) pairs (guided), sources or candidates (objectives)
  for key, value in aux.items():
    metrics[key] = jnp.where(finite, _psum(value, axis_name), 0.0)
  if t.guided_loss > 0:
    metrics.update(guided_pairs=guided_pairs, guided_weight=guided_weight(t, state.step))
  if 'stop' in batch:  # multi-process runs: the largest signal number any process got (0: none), see train.py
    stop = batch['stop'].max()
    metrics['stop'] = jax.lax.pmax(stop, axis_name) if axis_name else stop
  return new_state, metrics
