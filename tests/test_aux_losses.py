"""Coverage and guided attention losses, GNMT's coverage penalty in beam search, their config keys and schedules,
on hand-computed cases."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seq2seq_jax import config
from seq2seq_jax.data.vocab import BOS, EOS, PAD
from seq2seq_jax.decoding import DecodeOptions, beam
from seq2seq_jax.decoding.greedy import LengthRule
from seq2seq_jax.errors import ConfigError
from seq2seq_jax.model import ModelConfig, Seq2Seq, losses
from seq2seq_jax.training import steps


def test_coverage_loss_by_hand():
  attn = np.array([[[0.5, 0.5], [0.8, 0.2], [0.1, 0.9]]], np.float32)
  # coverage before each step: [0, 0], [0.5, 0.5], [1.3, 0.7]; Σ_j min(α, c): 0, 0.5 + 0.2, 0.1 + 0.7
  np.testing.assert_allclose(losses.coverage_loss(attn, np.array([[1.0, 1.0, 1.0]], np.float32)), 1.5, rtol=1e-6)
  np.testing.assert_allclose(losses.coverage_loss(attn, np.array([[1.0, 1.0, 0.0]], np.float32)), 0.7, rtol=1e-6)


def test_guided_attention_loss_by_hand():
  # One sentence: N = 2 real source positions (of 3), T = 2 real target steps (of 3), g = 0.5.
  attn = np.array([[[0.7, 0.3, 0.0], [0.4, 0.6, 0.0], [0.2, 0.2, 0.6]]], np.float32)
  total, pairs = losses.guided_attention_loss(attn, np.array([2]), np.array([[1.0, 1.0, 0.0]], np.float32), 0.5)
  off_diagonal = 1.0 - np.exp(-(0.5 - 0.0) ** 2 / (2 * 0.5 ** 2))  # W at (n, t) = (1, 0) and (0, 1); 0 on (0, 0), (1, 1)
  np.testing.assert_allclose(total, (0.3 + 0.4) * off_diagonal, rtol=1e-6)
  assert float(pairs) == 4.0
  # A perfectly diagonal alignment costs nothing.
  total, _ = losses.guided_attention_loss(np.eye(3, dtype=np.float32)[None], np.array([3]), np.ones((1, 3)), 0.2)
  assert float(total) == 0.0


def test_guided_weight_anneals_linearly_to_zero():
  t = config.default_config().train
  t.guided_loss = 2.0
  assert float(steps.guided_weight(t, 10_000)) == 2.0
  t.guided_anneal_steps = 100
  assert [float(steps.guided_weight(t, s)) for s in (0, 25, 100, 500)] == [2.0, 1.5, 0.0, 0.0]


def test_coverage_penalty_by_hand():
  cp = beam.coverage_penalty_of(np.array([[0.5, 1.5, 0.0, 3.0]], np.float32), np.array([[1, 1, 1, 0]], bool), 0.2)
  np.testing.assert_allclose(cp, [0.2 * (np.log(0.5) + 0.0 + np.log(beam.COVERAGE_FLOOR))], rtol=1e-6)


class PointingChain:
  """A stand-in model for the decoders: the next token depends on the previous one (`table`), and each step
  attends to one source position chosen by its input token: BOS -> 0, 4 -> 1, 5 -> 2."""

  def __init__(self, table_VxV):
    self.logp_VxV = np.log(np.maximum(table_VxV, 1e-9)).astype(np.float32)

  def encode(self, src_BxS, src_len_B):
    return {'h': jnp.zeros((src_BxS.shape[0], 1))}, {'s': jnp.zeros((src_BxS.shape[0], src_BxS.shape[1]))}

  def step(self, carry, y_B, memory):
    position_B = jnp.select([y_B == 4, y_B == 5], [1, 2], 0)
    attn_BxS = jax.nn.one_hot(position_B, memory['s'].shape[1])
    return carry, jnp.asarray(self.logp_VxV)[y_B], attn_BxS


def test_coverage_penalty_reranks_beam_search():
  table = np.full((6, 6), 1 / 6)
  table[BOS], table[4], table[5] = 0.0, 0.0, 0.0
  table[BOS, [EOS, 4, 5]] = 0.5, 0.45, 0.05  # "" is likelier than "4 5" ...
  table[4, [5, EOS, 4]] = 0.97, 0.02, 0.01
  table[5, [EOS, 4, 5]] = 0.97, 0.02, 0.01
  model = PointingChain(table)
  src, src_len = np.array([[4, 4, EOS, PAD]], np.int32), np.array([3], np.int32)  # 3 real positions
  run = functools.partial(beam.beam_search, model.encode, model.step, src, src_len, LengthRule(1.5, 4, 20), beam=2,
                          nbest=2)
  short, long = np.log(0.5), np.log(0.45 * 0.97 * 0.97)
  plain = jax.tree.map(np.asarray, run())
  assert plain['tokens'][0, 0, 0] == EOS and plain['tokens'][0, 1, :3].tolist() == [4, 5, EOS]
  penalised = jax.tree.map(np.asarray, run(coverage_penalty=0.1))
  # ... but "" attends to position 0 only (coverage [1, 0, 0]), "4 5" to all three ([1, 1, 1]: no penalty).
  assert penalised['tokens'][0, 0, :3].tolist() == [4, 5, EOS] and penalised['tokens'][0, 1, 0] == EOS
  np.testing.assert_allclose(penalised['scores'][0], [long, short + 0.1 * 2 * np.log(beam.COVERAGE_FLOOR)],
                             rtol=1e-5)
  np.testing.assert_allclose(penalised['logprobs'][0], [long, short], rtol=1e-5)
  full = jax.tree.map(np.asarray, run(coverage_penalty=0.1, early_stop=False))
  np.testing.assert_array_equal(full['tokens'], penalised['tokens'])  # the early stop stays exact with it


def test_decode_options_take_the_coverage_penalty():
  rule = LengthRule(1.5, 4, 20)
  assert DecodeOptions(coverage_penalty=0.2).search(rule) == beam.Beam(rule, 1, 1, 0.0, coverage_penalty=0.2)
  with pytest.raises(ConfigError, match='coverage penalty must be >= 0'):
    DecodeOptions(beam=2, coverage_penalty=-1.0)
  with pytest.raises(ConfigError, match='sampling takes no beam, alpha or coverage penalty'):
    DecodeOptions(sample=True, coverage_penalty=0.5)


@pytest.mark.parametrize('override, message', [
    ('model.location_width=0', 'model.location_width=0 must be at least 1'),
    ('model.location_filters=0', 'model.location_filters=0 must be at least 1'),
    ('model.mocha_width=0', 'model.mocha_width=0 must be at least 1'),
    ('model.monotonic_noise=-1.0', 'model.monotonic_noise=-1.0 must be at least 0'),
    ('train.coverage_loss=-0.5', 'train.coverage_loss=-0.5 must be at least 0'),
    ('train.guided_loss=-1.0', 'train.guided_loss=-1.0 must be at least 0'),
    ('train.guided_width=0.0', 'train.guided_width=0.0 must be > 0'),
    ('train.guided_anneal_steps=-5', 'train.guided_anneal_steps=-5 must be at least 0'),
])
def test_bad_values_of_the_new_keys_are_named(override, message):
  with pytest.raises(ConfigError) as e:
    config.load_config('configs/reverse.py', [override])
  assert message in str(e.value)


def test_attention_losses_need_attention():
  with pytest.raises(ConfigError, match="train.guided_loss=1.0 needs attention weights, not attention='none'"):
    config.load_config('configs/reverse.py', ['model.attention=none', 'train.guided_loss=1.0'])
  cfg = config.load_config('configs/reverse.py', ['model.attention=mocha', 'train.coverage_loss=1.0'])
  assert cfg.model.attention == 'mocha'


def test_train_step_adds_the_weighted_losses_and_reports_them():
  cfg = config.load_config('configs/reverse.py', ['model.embed_size=8', 'model.encoder_size=8',
                                                 'model.decoder_size=16', 'model.attention_size=8'])
  model = Seq2Seq(ModelConfig.from_config(cfg.model, 9, 11))
  src = np.array([[4, 5, 6, 7, 2], [5, 6, 2, 0, 0]], np.int32)
  tgt_out = np.array([[4, 5, 6, 2], [7, 2, 0, 0]], np.int32)
  batch = {'src': src, 'src_len': np.array([5, 3], np.int32), 'tgt_out': tgt_out, 'weights': (tgt_out > 0) * 1.0,
           'tgt_in': np.array([[1, 4, 5, 6], [1, 7, 0, 0]], np.int32)}
  state = steps.init_state(model, cfg, jax.random.PRNGKey(0), batch)
  plain = jax.eval_shape(functools.partial(steps.train_step, model=model, cfg=cfg), state, batch)[1]
  assert not {'coverage_loss_sum', 'guided_loss_sum', 'guided_pairs'} & set(plain)  # not even computed
  cfg.train.coverage_loss, cfg.train.guided_loss, cfg.train.guided_anneal_steps = 0.5, 2.0, 10
  logits, attn = model.apply({'params': state.params}, src, batch['src_len'], batch['tgt_in'])
  new, m = jax.jit(functools.partial(steps.train_step, model=model, cfg=cfg))(state, batch)
  np.testing.assert_allclose(m['coverage_loss_sum'], losses.coverage_loss(attn, batch['weights']), rtol=1e-6)
  guided, pairs = losses.guided_attention_loss(attn, batch['src_len'], batch['weights'], cfg.train.guided_width)
  np.testing.assert_allclose(m['guided_loss_sum'], guided, rtol=1e-6)
  assert float(m['guided_pairs']) == float(pairs) == 4 * 5 + 2 * 3 and float(m['guided_weight']) == 2.0
  xent = losses.cross_entropy(logits, tgt_out, batch['weights'])[0]
  np.testing.assert_allclose(m['loss_sum'], xent, rtol=1e-6)  # the reported loss stays the cross-entropy
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(new.params))

  @jax.jit
  def total_loss(params):  # xent / tokens + λ_c coverage / tokens + λ_g guided / pairs, as written out above
    logits, attn = model.apply({'params': params}, src, batch['src_len'], batch['tgt_in'])
    tokens = batch['weights'].sum()
    return (losses.cross_entropy(logits, tgt_out, batch['weights'])[0] / tokens
            + 0.5 * losses.coverage_loss(attn, batch['weights']) / tokens
            + 2.0 * losses.guided_attention_loss(attn, batch['src_len'], batch['weights'], 0.2)[0] / pairs)
  grad_norm = jnp.sqrt(sum((g ** 2).sum() for g in jax.tree.leaves(jax.grad(total_loss)(state.params))))
  np.testing.assert_allclose(m['grad_norm'], grad_norm, rtol=1e-4)
