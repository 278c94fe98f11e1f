"""Fine-tuning with train.init_from (the parent's parameters, a fresh optimizer, the parent in run_info.json,
one-line errors for another model or vocabulary) and a sequence-level objective that resumes bitwise."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from seq2seq_jax import config
from seq2seq_jax.runs import checkpoint, open_run
from seq2seq_jax.tools import experiments
from seq2seq_jax.training import setup, steps, train
from tests.cli_helpers import one_error_line, run_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['data.task=reverse', 'data.min_len=5', 'data.max_len=5', 'data.num_train=300', 'data.num_eval=16',
        'data.batch_size=16', 'model.embed_size=8', 'model.encoder_size=8', 'model.decoder_size=16',
        'model.attention_size=8', 'train.num_steps=4', 'train.log_every=2', 'train.eval_every=2',
        'train.checkpoint_every=2', 'train.keep_checkpoints=3', 'train.attention_plots=0', 'train.eval_examples=16']
MRT = ['train.objective=mrt', 'train.num_candidates=3', 'train.mrt_reference=true', 'train.temperature=1.5',
       'train.cost=edit', 'train.xent_weight=0.5', 'model.dropout=0.1', 'train.num_steps=6',
       'train.checkpoint_every=3', 'train.eval_every=3', 'train.warmup_steps=0', 'train.learning_rate=0.001']


def _cfg(*extra):
  return config.load_config(os.path.join(ROOT, 'configs/reverse.py'), TINY + list(extra))


@pytest.fixture(scope='module')
def parent(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('parent'))
  train.train(_cfg(), workdir, log=lambda m: None)
  return workdir


def test_a_fresh_run_starts_from_the_parents_parameters_with_a_fresh_optimizer(parent, tmp_path):
  cfg = _cfg(f'train.init_from={parent}', 'train.init_step=2')
  model, examples = open_run(parent).model, setup.prepare_data(cfg, str(tmp_path), lambda m: None)[0]
  ckpt = checkpoint.Checkpointer(str(tmp_path / 'child'))
  try:
    state, data_state, start, meta, origin = setup.restore_or_init(cfg, str(tmp_path / 'child'), model, ckpt,
                                                                   examples, {}, lambda m: None)
  finally:
    ckpt.close()
  assert start == 0 and data_state is None and meta is None and origin == {'dir': os.path.abspath(parent), 'step': 2}
  assert checkpoint.fingerprint(state.params) == experiments.info(parent, '2')['fingerprint']
  fresh = steps.init_state(model, cfg, jax.random.PRNGKey(cfg.seed), examples.batch(np.arange(1)))
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves((state.opt_state, state.rng, state.step)),
                                                  jax.tree.leaves((fresh.opt_state, fresh.rng, fresh.step))))
  assert checkpoint.fingerprint(state.params) != checkpoint.fingerprint(fresh.params)


def test_mrt_fine_tune_names_its_parent_and_resumes_bitwise(parent, tmp_path):
  cfg = _cfg(*MRT, f'train.init_from={parent}')
  done = str(tmp_path / 'done')
  train.train(cfg, done, log=lambda m: None)
  with open(os.path.join(done, 'run_info.json')) as f:
    assert json.load(f)[0]['parent'] == {'dir': os.path.abspath(parent), 'step': experiments.info(parent)['step']}
  rows = [json.loads(line) for line in open(os.path.join(done, 'metrics.jsonl'))]
  logged = [r for r in rows if r['kind'] == 'train']
  assert len(logged) == 3 and all(r['candidates_per_source'] > 1 and 0 <= r['candidate_cost'] for r in logged)
  assert all(np.isfinite(r['sequence_loss']) for r in logged)
  # What a kill after the checkpoint at step 3 leaves behind; the same command resumes (without the parent).
  resumed = str(tmp_path / 'resumed')
  shutil.copytree(done, resumed)
  shutil.rmtree(os.path.join(resumed, 'checkpoints', '6'))
  moved = str(tmp_path / 'parent_gone')
  shutil.move(parent, moved)
  try:
    train.train(cfg, resumed, log=lambda m: None)
  finally:
    shutil.move(moved, parent)
  assert experiments.info(resumed, 'latest')['fingerprint'] == experiments.info(done, 'latest')['fingerprint']
  again = [json.loads(line) for line in open(os.path.join(resumed, 'metrics.jsonl'))]
  untimed = lambda r: {k: v for k, v in r.items() if k not in ('tokens_per_s', 'steps_per_s')}
  assert [untimed(r) for r in again if r['step'] in (2, 3, 6)] == [untimed(r) for r in rows if r['step'] in (2, 3, 6)]
  with open(os.path.join(resumed, 'run_info.json')) as f:
    runs = json.load(f)
  assert [r['started_at_step'] for r in runs] == [0, 3] and 'parent' not in runs[1]


@pytest.mark.parametrize('extra, message', [
    (['model.decoder_size=32'], 'that run has another model: model.decoder_size=16 there, 32 here'),
    (['model.cell=lstm'], "that run has another model: model.cell='gru' there, 'lstm' here"),
    (['data.alphabet_size=10'], 'that run has another source vocabulary'),
    (['train.init_step=5'], "no checkpoint at step '5'; saved steps: 2, 4"),
])
def test_a_parent_that_does_not_fit_is_one_line_and_nothing_is_created(parent, tmp_path, capsys, extra, message):
  workdir = tmp_path / 'child'
  argv = ['train', '--config', 'configs/reverse.py', '--workdir', str(workdir),
          *[f'--config.{o}' for o in TINY + [f'train.init_from={parent}'] + extra]]
  code, _, err = run_main(capsys, *argv)
  if 'vocabulary' in message:  # found once the data is read: its one log line comes first
    assert err.startswith('data: ') and err.count('\n') == 2
    err = err.split('\n', 1)[1]
  one_error_line(code, err, f'--config.train.init_from={parent}: ', message)
  assert not workdir.exists()


def test_a_parent_that_is_no_run_is_one_line(tmp_path, capsys):
  workdir = tmp_path / 'child'
  argv = ['train', '--config', 'configs/reverse.py', '--workdir', str(workdir),
          *[f'--config.{o}' for o in TINY + [f'train.init_from={tmp_path / "nothing"}']]]
  code, _, err = run_main(capsys, *argv)
  one_error_line(code, err, 'not a workdir (no config.json)')
  assert not workdir.exists()
