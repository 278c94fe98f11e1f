"""Bigger effective batches: gradient accumulation over micro-batches (train.accumulate) and batches formed by a
token budget (data.batch_tokens)."""

import functools
import json
import os

import jax
import numpy as np
import pytest

from seq2seq_jax import config
from seq2seq_jax.data import pipeline
from seq2seq_jax.data.vocab import Vocab
from seq2seq_jax.errors import ConfigError
from seq2seq_jax.model import ModelConfig, Seq2Seq
from seq2seq_jax.training import objectives, steps, train
from tests.cli_helpers import one_error_line, run_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Deterministic steps (no dropout, no sampled inputs): the only difference between the runs compared is the
# accumulation itself.
TINY = ['data.min_len=2', 'data.max_len=9', 'data.num_train=300', 'data.num_eval=16', 'model.embed_size=8',
        'model.encoder_size=8', 'model.decoder_size=16', 'model.attention_size=8', 'model.dropout=0.0',
        'train.warmup_steps=2', 'train.learning_rate=0.01', 'train.attention_plots=0', 'train.eval_examples=16']


def _cfg(*extra):
  return config.load_config(os.path.join(ROOT, 'configs/reverse.py'), TINY + list(extra))


def _examples(n=200, seed=0, max_len=14):
  rng = np.random.default_rng(seed)
  src = [rng.integers(4, 12, rng.integers(1, max_len)).tolist() for _ in range(n)]
  return pipeline.Examples(src, [s[::-1] for s in src], step=4)


def _batch(rows=16, refs=False):
  """One batch of reversal pairs of several lengths (the micro-batches hold different numbers of tokens) with
  filler rows at the end (`refs`: with every reference of each source, for a sequence-level objective)."""
  ex = _examples(60)
  idx = np.concatenate([np.arange(rows - 3), np.full(3, -1)])
  batch = ex.batch(idx, refs=refs)
  batch.pop('index')
  return batch


def _steps(cfg, state, batch, n=3):
  """`n` updates on `batch` (the first has learning rate 0: warmup)."""
  model = Seq2Seq(ModelConfig.from_config(cfg.model, 12, 12))
  objective = objectives.build(cfg, Vocab([chr(ord('a') + i) for i in range(8)], 'char'))
  step = jax.jit(functools.partial(steps.train_step, model=model, cfg=cfg, objective=objective))
  for _ in range(n):
    state, metrics = step(state, batch)
  return state, metrics


# Sequence-level objectives too: a source's loss depends only on its own candidates, whose sampling keys are
# those of its row in the whole batch.
@pytest.mark.parametrize('aux', [
    [], ['train.coverage_loss=0.5', 'train.guided_loss=1.0'],
    ['train.objective=mrt', 'train.num_candidates=3', 'train.mrt_reference=true', 'train.cost=edit',
     'train.xent_weight=0.3'],
    ['train.objective=scst', 'train.num_candidates=2', 'train.scst_baseline=mean', 'train.cost=edit']],
    ids=['xent', 'attention_losses', 'mrt', 'scst'])
def test_accumulated_micro_batches_give_the_update_of_the_whole_batch(aux):
  batch = _batch(refs=any(a.startswith('train.objective') for a in aux))
  micro_tokens = batch['weights'].reshape(4, 4, -1).sum(axis=(1, 2))
  assert len(set(micro_tokens.tolist())) > 1  # a mean of micro-batch means would weigh tokens unequally
  whole, accumulated = _cfg(*aux), _cfg('train.accumulate=4', *aux)
  model = Seq2Seq(ModelConfig.from_config(whole.model, 12, 12))
  state = steps.init_state(model, whole, jax.random.PRNGKey(0), batch)
  s1, m1 = _steps(whole, state, batch)
  s4, m4 = _steps(accumulated, state, batch)
  for key in ('tokens', 'correct', 'seq_correct', 'sequences', 'src_tokens'):  # counts: exactly
    assert float(m4[key]) == float(m1[key]), key
  sums = ('coverage_loss_sum', 'guided_loss_sum', 'sequence_loss_sum', 'candidate_cost_sum', 'baseline_cost_sum')
  for key in ('loss_sum', 'grad_norm', *(k for k in sums if k in m1)):
    np.testing.assert_allclose(m4[key], m1[key], rtol=1e-5, err_msg=key)
  moved = max(float(np.abs(a - b).max()) for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(state.params)))
  assert moved > 1e-3
  for a, b in zip(jax.tree.leaves(s4.params), jax.tree.leaves(s1.params)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  for a, b in zip(jax.tree.leaves(s4.opt_state), jax.tree.leaves(s1.opt_state)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-9)


def _params(workdir):
  from seq2seq_jax.decoding.predictor import Predictor
  return jax.tree.leaves(Predictor.load(workdir, 'latest').params)


def test_a_run_with_accumulation_follows_the_run_with_the_k_times_larger_batch(tmp_path):
  """Same data in the same order (a step of 2 micro-batches of 8 takes the rows one batch of 16 would), so the
  parameters after 8 steps agree up to rounding; the rows log optimizer steps and the micro-batches behind them."""
  common = ['train.num_steps=8', 'train.log_every=4', 'train.eval_every=8']
  train.train(_cfg(*common, 'data.batch_size=16'), str(tmp_path / 'big'), log=lambda m: None)
  lines = []
  train.train(_cfg(*common, 'data.batch_size=8', 'train.accumulate=2'), str(tmp_path / 'acc'), log=lines.append)
  assert any('sums the gradients of 2 micro-batches of 8 examples' in line for line in lines), lines
  for a, b in zip(_params(str(tmp_path / 'acc')), _params(str(tmp_path / 'big'))):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
  rows = {}
  for name in ('big', 'acc'):
    with open(tmp_path / name / 'metrics.jsonl') as f:
      rows[name] = [r for r in map(json.loads, f) if r['kind'] == 'train']
  assert [r['step'] for r in rows['acc']] == [4, 8] and [r['micro_batches'] for r in rows['acc']] == [8, 16]
  assert 'micro_batches' not in rows['big'][0]
  np.testing.assert_allclose([r['loss'] for r in rows['acc']], [r['loss'] for r in rows['big']], rtol=1e-4)
