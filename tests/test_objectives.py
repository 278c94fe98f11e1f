"""Minimum risk training and self-critical sequence training (training/objectives.py) against slow references:
Q and the risk in numpy, log-probabilities by stepping the decoder token by token, SCST's update on hand-built
samples, the candidate sets against the decoders, and the train step's loss and gradient."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seq2seq_jax import config
from seq2seq_jax.data.vocab import BOS, EOS, PAD, Vocab
from seq2seq_jax.decoding.fns import ModelFns
from seq2seq_jax.errors import ConfigError
from seq2seq_jax.model import ModelConfig, Seq2Seq, costs
from seq2seq_jax.training import objectives, steps
from tests import decoders

VOCAB = 10  # 4 reserved + 6 symbols
TINY = ['model.embed_size=8', 'model.encoder_size=8', 'model.decoder_size=16', 'model.attention_size=8',
        'model.dropout=0.0', 'decode.max_len_a=1.0', 'decode.max_len_b=2']


def _setup(*extra):
  cfg = config.load_config('configs/reverse.py', TINY + list(extra))
  model = Seq2Seq(ModelConfig.from_config(cfg.model, VOCAB, VOCAB))
  symbols = [chr(ord('a') + i) for i in range(VOCAB - 4)]
  return cfg, model, objectives.build(cfg, Vocab(symbols, 'char'))


def _batch():
  """Two sources (and a filler row: weights 0); the first has two references."""
  src = np.array([[4, 5, 6, 7, 2], [8, 9, 2, 0, 0], [4, 5, 6, 7, 2]], np.int32)
  tgt_out = np.array([[7, 6, 5, 4, 2], [9, 8, 2, 0, 0], [7, 6, 5, 4, 2]], np.int32)
  tgt_in = np.concatenate([np.full((3, 1), BOS, np.int32), tgt_out[:, :-1]], 1) * (tgt_out > 0)
  tgt_in[:, 0] = BOS
  refs = np.zeros((3, 2, 6), np.int32)
  refs[:, 0, :5] = tgt_out
  refs[0, 1, :4] = [7, 6, 4, EOS]
  refs_len = np.array([[4, 3], [2, 0], [4, 3]], np.int32)
  weights = (tgt_out > 0).astype(np.float32)
  weights[2] = 0.0
  return {'src': src, 'src_len': np.array([5, 3, 5], np.int32), 'tgt_in': tgt_in, 'tgt_out': tgt_out,
          'weights': weights, 'refs': refs, 'refs_len': refs_len}


def _params(model, seed=0):
  b = _batch()
  return model.init(jax.random.PRNGKey(seed), b['src'][:1], b['src_len'][:1], b['tgt_in'][:1])['params']


def slow_logps(model, params, src_BxS, src_len_B, tokens_BxKxL, lengths_BxK):
  """log p(tokens[:length] EOS | src) (B, K) by feeding the tokens one by one to the decoders' step function (the
  inference path of decoding/fns.py, not the model's teacher-forced pass)."""
  fns = ModelFns(model)

  def one(src_S, src_len, tokens_L, length):
    carry, memory = fns.encode(params, src_S[None], src_len[None])

    def feed(state, t):
      carry, y = state
      carry, logp_1xV, _ = fns.step(params, carry, y, memory)
      return (carry, tokens_L[t][None]), jnp.where(t <= length, logp_1xV[0, tokens_L[t]], 0.0)

    _, logp_L = jax.lax.scan(feed, (carry, jnp.array([BOS])), jnp.arange(tokens_L.shape[0]))
    return logp_L.sum()

  k = tokens_BxKxL.shape[1]
  rep = lambda x: jnp.repeat(jnp.asarray(x), k, axis=0)
  flat = jax.vmap(one)(rep(src_BxS), rep(src_len_B), jnp.asarray(tokens_BxKxL).reshape(-1, tokens_BxKxL.shape[-1]),
                       jnp.asarray(lengths_BxK).reshape(-1))
  return flat.reshape(lengths_BxK.shape)


def numpy_risk(logp_BxK, cost_BxK, valid_BxK, alpha):
  """Q ∝ p^α renormalised over the valid candidates, and Σ Q Δ, in float64."""
  risks, qs = [], []
  for logp, cost, valid in zip(np.float64(logp_BxK), np.float64(cost_BxK), valid_BxK):
    w = np.where(valid, np.exp(alpha * (logp - logp[valid].max())), 0.0)
    q = w / w.sum()
    qs.append(q)
    risks.append((q * np.where(valid, cost, 0.0)).sum())
  return np.array(risks), np.array(qs)


def test_mrt_risk_and_its_gradient_against_numpy():
  rng = np.random.default_rng(0)
  logp = rng.normal(-4.0, 2.0, (64, 5)).astype(np.float32)
  cost = rng.random((64, 5)).astype(np.float32)
  valid = rng.random((64, 5)) < 0.7
  valid[:, 0] = True
  risk_and_grad = jax.jit(lambda lp, alpha: (objectives.mrt_risk(lp, cost, valid, alpha),
                                              jax.grad(lambda x: objectives.mrt_risk(x, cost, valid, alpha).sum())(lp)))
  for alpha in (0.005, 0.5, 1.0, 3.0):
    want, q = numpy_risk(logp, cost, valid, alpha)
    risk, grad = risk_and_grad(logp, alpha)
    np.testing.assert_allclose(risk, want, rtol=1e-5, atol=1e-6)
    # ∂risk/∂log p(y) = α Q(y) (Δ(y) − risk) on valid candidates, 0 on the others; and by finite differences.
    np.testing.assert_allclose(grad, alpha * q * (cost - want[:, None]), rtol=1e-4, atol=1e-6)
    eps, k = 1e-4, (3, 2)
    bumped = np.float64(logp)
    bumped[k] += eps
    fd = (numpy_risk(bumped, cost, valid, alpha)[0][3] - numpy_risk(logp, cost, valid, alpha)[0][3]) / eps
    np.testing.assert_allclose(grad[k], fd, rtol=2e-3, atol=1e-6)


def test_duplicates_count_once():
  tokens = np.array([[[4, 2, 0], [5, 2, 0], [4, 2, 0], [5, 2, 0], [6, 2, 0]]], np.int32)
  valid = np.array([[True, False, True, True, True]])
  # 2 equals 0; 3 equals 1, but 1 is not a valid candidate (an unfilled beam slot): 3 stays.
  assert np.asarray(objectives.duplicates(tokens, valid)).tolist() == [[False, False, True, False, False]]


def _hand_candidates(obj, batch):
  """Candidates of both sources with a duplicate, costs from the objective's cost (edit distance)."""
  tokens = np.array([[[7, 6, 5, 4, 2, 0], [7, 6, 4, 2, 0, 0], [4, 2, 0, 0, 0, 0], [7, 6, 4, 2, 0, 0]],
                     [[9, 8, 2, 0, 0, 0], [9, 2, 0, 0, 0, 0], [5, 5, 5, 5, 5, 2], [8, 9, 2, 0, 0, 0]]], np.int32)
  tokens = np.concatenate([tokens, tokens[:1]])  # the filler row copies source 0
  lengths = (tokens > 2).sum(-1).astype(np.int32)
  valid = ~np.asarray(objectives.duplicates(tokens, np.ones(lengths.shape, bool)))
  cost = np.asarray(objectives._cost(obj, tokens, lengths, batch))
  return {'tokens': tokens, 'lengths': lengths, 'valid': valid, 'cost': cost}


def test_mrt_loss_and_gradient_on_a_tiny_model_against_a_step_by_step_reference():
  cfg, model, obj = _setup('train.objective=mrt', 'train.cost=edit', 'train.mrt_alpha=0.7')
  batch, params = _batch(), _params(model)
  cands = _hand_candidates(obj, batch)
  # Costs: to the closest reference; [7, 6, 4] is source 0's second reference.
  np.testing.assert_allclose(cands["cost"][0], [0.0, 0.0, 2 / 3, 0.0], atol=1e-6)  # [4]: 2 edits from [7, 6, 4]
  assert cands['valid'][0].tolist() == [True, True, True, False]

  def reference(params):  # the risk by the formula, log p by stepping the decoder; the two real sources only
    logp_BxK = slow_logps(model, params, batch['src'][:2], batch['src_len'][:2], cands['tokens'][:2],
                          cands['lengths'][:2])
    scores_BxK = jnp.where(cands['valid'][:2], 0.7 * logp_BxK, -jnp.inf)
    return (jax.nn.softmax(scores_BxK) * jnp.where(cands['valid'][:2], cands['cost'][:2], 0.0)).sum(), logp_BxK

  loss = lambda p: objectives.loss(obj, model, p, batch, cands)
  (total, aux), got = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
  (risk, logp), want = jax.jit(jax.value_and_grad(reference, has_aux=True))(params)
  np.testing.assert_allclose(total, numpy_risk(logp, cands['cost'][:2], cands['valid'][:2], 0.7)[0].sum(), rtol=1e-5)
  np.testing.assert_allclose(total, risk, rtol=1e-5)
  assert float(aux['candidates']) == 7  # 3 + 4 distinct; the filler row not counted
  np.testing.assert_allclose(aux['candidate_cost_sum'], cands['cost'][0, :3].sum() + cands['cost'][1].sum(), rtol=1e-6)
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(g, w, rtol=2e-4, atol=1e-6)
  assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(got)) > 1e-4


def test_scst_raises_a_sample_better_than_the_greedy_baseline_and_lowers_a_worse_one():
  cfg, model, obj = _setup('train.objective=scst', 'train.cost=edit', 'train.num_candidates=1')
  batch, params = _batch(), _params(model, seed=3)
  greedy = decoders.greedy(model, params, batch['src'], batch['src_len'], a=1.0, b=2, cap=256)
  cost = jax.jit(functools.partial(objectives._cost, obj))
  base = np.asarray(cost(greedy['tokens'][:, None], greedy['lengths'][:, None], batch))
  assert (base[:2] > 0.5).all()  # the untrained model's greedy outputs are far from the references
  logp = jax.jit(lambda p, tokens, lengths: objectives.sequence_logprobs(model, p, batch['src'], batch['src_len'],
                                                                         tokens, lengths))

  @jax.jit
  def sgd(params, cands):  # one plain gradient step on the scst loss
    grads = jax.grad(lambda p: objectives.loss(obj, model, p, batch, cands)[0])(params)
    return jax.tree.map(lambda p, g: p - 0.5 * g, params, grads)

  for sample, better in (([7, 6, 5, 4, 2, 0, 0], True), ([8, 8, 8, 8, 8, 8, 2], False)):
    tokens = np.array([[sample]] * 3, np.int32)
    lengths = (tokens > 2).sum(-1).astype(np.int32)
    cands = {'tokens': tokens, 'lengths': lengths, 'valid': np.ones((3, 1), bool),
             'cost': np.asarray(cost(tokens, lengths, batch)), 'baseline': base}
    assert (cands['cost'][0, 0] < base[0, 0]) == better
    before, after = logp(params, tokens, lengths), logp(sgd(params, cands), tokens, lengths)
    assert (float(after[0, 0]) > float(before[0, 0])) == better, (before, after)
  # A sample exactly as good as the baseline teaches nothing.
  cands['cost'] = base
  same = sgd(params, cands)
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(same), jax.tree.leaves(params)))


def test_scst_mean_baseline_is_the_mean_of_the_other_samples():
  cfg, model, obj = _setup('train.objective=scst', 'train.scst_baseline=mean', 'train.num_candidates=3',
                           'train.cost=edit')
  batch, params = _batch(), _params(model)
  cands = objectives.candidates(obj, model, params, batch, objectives.row_keys(jax.random.PRNGKey(1), 3))
  cost = np.asarray(cands['cost'])
  np.testing.assert_allclose(cands['baseline'], (cost.sum(-1, keepdims=True) - cost) / 2, rtol=1e-6)
  loss = objectives.scst_loss(np.array([[-1.0, -2.0, -3.0]]), np.array([[0.0, 0.5, 1.0]]), np.array([[0.75, 0.5, 0.25]]))
  np.testing.assert_allclose(loss, [-(0.75 * -1.0 + 0.0 * -2.0 - 0.75 * -3.0) / 3], rtol=1e-6)


def test_sampled_candidates_are_the_decoders_samples_with_the_row_keys():
  cfg, model, obj = _setup('train.objective=mrt', 'train.num_candidates=3', 'train.temperature=1.5',
                           'train.mrt_reference=true')
  batch, params = _batch(), _params(model)
  keys_B = objectives.row_keys(jax.random.PRNGKey(7), 3)
  cands = jax.jit(functools.partial(objectives.candidates, obj, model))(params, batch, keys_B)
  for b in range(3):
    for k in range(3):  # each source alone, with its row's k-th key: the same sample
      one = decoders.sample(model, params, batch['src'][b:b + 1], batch['src_len'][b:b + 1],
                            jax.random.fold_in(keys_B[b], k)[None], temperature=1.5, a=1.0, b=2, cap=256)
      n = int(one['lengths'][0])
      assert int(cands['lengths'][b, k]) == n
      assert np.asarray(cands['tokens'][b, k, :n + 1]).tolist() == one['tokens'][0, :n + 1].tolist()
    # The reference is the last candidate.
    ref_len = int((batch['tgt_out'][b] > 0).sum()) - 1
    assert int(cands['lengths'][b, 3]) == ref_len
    assert np.asarray(cands['tokens'][b, 3, :ref_len + 1]).tolist() == batch['tgt_out'][b, :ref_len + 1].tolist()
  assert float(cands['cost'][0, 3]) == 0.0
  # Sentence 0 and the filler row (a copy of it) have other keys, hence other samples.
  assert np.asarray(cands['tokens'][0, :3]).tolist() != np.asarray(cands['tokens'][2, :3]).tolist()


def test_beam_candidates_are_the_beams_n_best():
  cfg, model, obj = _setup('train.objective=mrt', 'train.candidates=beam', 'train.num_candidates=3')
  batch, params = _batch(), _params(model)
  cands = objectives.candidates(obj, model, params, batch, None)
  want = decoders.beam(model, params, batch['src'], batch['src_len'], beam_size=3, nbest=3, a=1.0, b=2, cap=256)
  np.testing.assert_array_equal(cands['tokens'], want['tokens'])
  np.testing.assert_array_equal(cands['lengths'], want['lengths'])
  assert np.asarray(cands['valid']).all()  # a beam's n-best are distinct


def test_row_keys_depend_on_the_global_row_only():
  key = jax.random.PRNGKey(3)
  whole = objectives.row_keys(key, 8)
  halves = jax.vmap(lambda _: objectives.row_keys(key, 4, 'd'), axis_name='d')(jnp.arange(2))
  np.testing.assert_array_equal(halves.reshape(whole.shape), whole)


def test_train_step_loss_is_the_mixture_and_xent_is_untouched():
  cfg, model, obj = _setup('train.objective=mrt', 'train.cost=edit', 'train.mrt_reference=true',
                           'train.xent_weight=0.25', 'train.num_candidates=3')
  batch = _batch()
  state = steps.init_state(model, cfg, jax.random.PRNGKey(0), batch)
  _, m = jax.jit(functools.partial(steps.train_step, model=model, cfg=cfg, objective=obj))(state, batch)
  # What the step does, written out: candidates with the step's row keys, then 0.25 xent + 0.75 risk.
  _, _, sample_rng = jax.random.split(state.rng, 3)
  cands = jax.jit(functools.partial(objectives.candidates, obj, model))(
      state.params, batch, objectives.row_keys(jax.random.fold_in(sample_rng, 1), 3))

  @jax.jit
  def total(params):
    logits, _ = model.apply({'params': params}, batch['src'], batch['src_len'], batch['tgt_in'])
    logp = jax.nn.log_softmax(logits)
    xent = -(jnp.take_along_axis(logp, batch['tgt_out'][..., None], -1)[..., 0] * batch['weights']).sum()
    return 0.25 * xent / batch['weights'].sum() + 0.75 * objectives.loss(obj, model, params, batch, cands)[0] / 2

  grads = jax.grad(total)(state.params)
  np.testing.assert_allclose(m['grad_norm'], jnp.sqrt(sum((g ** 2).sum() for g in jax.tree.leaves(grads))),
                             rtol=1e-4)
  seq_sum = jax.jit(lambda p: objectives.loss(obj, model, p, batch, cands)[0])(state.params)
  np.testing.assert_allclose(m['sequence_loss_sum'], seq_sum, rtol=1e-5)
  assert float(m['sequences']) == 2 and float(m['candidates']) >= 2 * 2
  # xent: no objective, and the step refuses a mismatch either way.
  plain = config.load_config('configs/reverse.py', TINY)
  with pytest.raises(ValueError, match='needs objective='):
    steps.train_step(state, batch, model=model, cfg=plain, objective=obj)
  with pytest.raises(ValueError, match='needs objective='):
    steps.train_step(state, batch, model=model, cfg=cfg)


def test_task_costs_and_config_checks():
  assert config.task_cost(config.load_config('configs/g2p_cmudict.py')) == 'edit'
  assert config.task_cost(config.load_config('configs/ted_hrlr_pt_en.py')) == 'bleu'
  assert config.task_cost(config.load_config('configs/addition.py')) == 'zero_one'
  assert config.task_cost(config.load_config('configs/reverse.py', ['train.cost=chrf'])) == 'chrf'
  assert set(costs.COSTS) == {'edit', 'zero_one', 'bleu', 'chrf'}
  bad = {('train.objective=ranking',): "train.objective='ranking' is not one of xent, mrt, scst",
         ('train.cost=meteor',): "train.cost='meteor' is not one of , edit, zero_one, bleu, chrf",
         ('train.objective=scst', 'train.candidates=beam'): 'scst learns from samples',
         ('train.objective=scst', 'train.scst_baseline=mean', 'train.num_candidates=1'): 'at least 2 samples',
         ('train.objective=mrt', 'train.num_candidates=1'): 'needs at least 2 candidates',
         ('train.xent_weight=1.5',): r'train.xent_weight=1.5 must be in \[0, 1\]',
         ('train.temperature=0',): 'train.temperature=0.0 must be > 0',
         ('train.init_step=last',): "train.init_step='last' is not 'best', 'latest' or a step number"}
  for overrides, message in bad.items():
    with pytest.raises(ConfigError, match=message):
      config.load_config('configs/reverse.py', list(overrides))
  config.load_config('configs/reverse.py', ['train.objective=mrt', 'train.num_candidates=1',
                                            'train.mrt_reference=true', 'train.init_step=2200'])
