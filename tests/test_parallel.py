"""Data parallelism on 8 fake CPU devices: pmap and shard_map train exactly like one device; batch size checks.

The pytest process already runs JAX with 1 device, so the 8-device work runs in subprocesses whose environment
sets XLA_FLAGS before JAX starts (tests/parallel_check.py and the CLI).
Greedy decoding is not data-parallel (the predictor decodes on one device), so there is nothing to compare.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from seq2seq_jax import config
from seq2seq_jax.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVICES = 8
STEPS = 5


def _env(devices: int) -> dict:
  flags = os.environ.get('XLA_FLAGS', '')
  return {**os.environ, 'XLA_FLAGS': f'{flags} --xla_force_host_platform_device_count={devices}'.strip(),
          'PYTHONPATH': ROOT}


@pytest.fixture(scope='module')
def check(tmp_path_factory):
  """The report of tests/parallel_check.py on 8 devices, and the folder with its parameters."""
  out = tmp_path_factory.mktemp('parallel')
  r = subprocess.run([sys.executable, os.path.join(ROOT, 'tests', 'parallel_check.py'), str(STEPS), str(out)],
                     cwd=ROOT, env=_env(DEVICES), capture_output=True, text=True, timeout=280)
  assert r.returncode == 0, r.stderr[-3000:]
  report = json.loads(r.stdout.strip().splitlines()[-1])
  assert report['devices'] == DEVICES and report['steps'] == STEPS
  assert report['batch_shapes'] == ['(16, 8)']  # one shape: every run compiles once
  return report, out


def _params(folder, name: str) -> dict:
  with np.load(os.path.join(folder, f'params_{name}.npz')) as f:
    return dict(f)


def test_pmap_and_shard_map_parameters_equal_one_device(check):
  _, folder = check
  init, single = _params(folder, 'init'), _params(folder, 'single')
  assert max(np.abs(single[k] - init[k]).max() for k in init) > 1e-3  # training moved the parameters
  for mode in ('pmap', 'shard_map'):
    params = _params(folder, mode)
    assert params.keys() == single.keys()
    for key in single:
      np.testing.assert_allclose(params[key], single[key], rtol=1e-5, atol=1e-6, err_msg=f'{mode} {key}')


def test_the_step_compiles_once(check):
  # pmap: the replicated first state has the layout of the states that the step returns (else: 2 compilations).
  assert check[0]['recompiles'] == {'pmap': 0, 'shard_map': 0}


def test_metrics_equal_one_device(check):
  metrics = check[0]['metrics']
  single = metrics['single']
  assert len(single['loss_sum']) == STEPS and all(t > 0 for t in single['tokens'])
  assert single['nonfinite'] == [0.0] * STEPS
  for mode in ('pmap', 'shard_map'):
    m = metrics[mode]
    for key in ('tokens', 'correct', 'src_tokens', 'nonfinite'):  # counts: exactly
      assert m[key] == single[key], (mode, key)
    for key in ('loss_sum', 'grad_norm'):  # sums in another order
      np.testing.assert_allclose(m[key], single[key], rtol=1e-5, err_msg=f'{mode} {key}')


def test_shard_map_gradient_traps(check):
  report = check[0]
  # parallel.py's shard_map runs with check_vma=False: with it on, the RNN's scans do not even trace.
  assert 'carry input and carry output must have equal types' in report['vma_error']
  t = report['traps']
  single = t['bow_single']['grad_norm']
  assert single > 0
  for name in ('bow_vma_no_psum', 'bow_vma_psum', 'bow_novma_psum', 'bow_novma_no_psum'):
    np.testing.assert_allclose(t[name]['loss_sum'], t['bow_single']['loss_sum'], rtol=1e-5)
    assert t[name]['tokens'] == t['bow_single']['tokens']
  # check_vma on: JAX already sums the gradient of replicated parameters; another psum makes it N times larger.
  np.testing.assert_allclose(t['bow_vma_no_psum']['grad_norm'], single, rtol=1e-5)
  np.testing.assert_allclose(t['bow_vma_psum']['grad_norm'], DEVICES * single, rtol=1e-5)
  # check_vma off (what parallel.py does): the psum is what makes it right; without it a device keeps its part.
  np.testing.assert_allclose(t['bow_novma_psum']['grad_norm'], single, rtol=1e-5)
  assert t['bow_novma_no_psum']['grad_norm'] < 0.5 * single


def test_stateful_kind_with_attention_losses_trains_like_one_device(tmp_path):
  """mocha (attention state in the carry) with the coverage and guided losses, whose normalisers are summed over
  the devices: pmap and shard_map give one device's parameters and loss sums (no noise: each device draws its
  own, as it does its own dropout)."""
  overrides = ['model.attention=mocha', 'model.mocha_width=2', 'model.monotonic_noise=0.0',
               'model.monotonic_init_r=0.0', 'train.coverage_loss=0.5', 'train.guided_loss=1.0']
  r = subprocess.run([sys.executable, os.path.join(ROOT, 'tests', 'parallel_check.py'), '3', str(tmp_path),
                      *overrides], cwd=ROOT, env=_env(DEVICES), capture_output=True, text=True, timeout=280)
  assert r.returncode == 0, r.stderr[-3000:]
  report = json.loads(r.stdout.strip().splitlines()[-1])
  single = _params(tmp_path, 'single')
  for mode in ('pmap', 'shard_map'):
    params = _params(tmp_path, mode)
    for key in single:
      np.testing.assert_allclose(params[key], single[key], rtol=1e-5, atol=1e-6, err_msg=f'{mode} {key}')
    for key in ('loss_sum', 'grad_norm', 'coverage_loss_sum', 'guided_loss_sum', 'guided_pairs'):
      np.testing.assert_allclose(report['metrics'][mode][key], report['metrics']['single'][key], rtol=1e-5,
                                 err_msg=f'{mode} {key}')
  assert min(report['metrics']['single']['guided_loss_sum']) > 0


def test_accumulation_and_a_changing_learning_rate_scale_train_like_one_device(tmp_path):
  """train.accumulate=2 (each device's rows split into 2 micro-batches) and a learning-rate scale that changes at
  every step (reduce-on-plateau): pmap and shard_map give one device's parameters, without recompiling."""
  r = subprocess.run([sys.executable, os.path.join(ROOT, 'tests', 'parallel_check.py'), '3', str(tmp_path),
                      'train.accumulate=2', 'train.plateau_patience=1'], cwd=ROOT, env=_env(DEVICES),
                     capture_output=True, text=True, timeout=280)
  assert r.returncode == 0, r.stderr[-3000:]
  report = json.loads(r.stdout.strip().splitlines()[-1])
  assert report['recompiles'] == {'pmap': 0, 'shard_map': 0}
  single = _params(tmp_path, 'single')
  for mode in ('pmap', 'shard_map'):
    params = _params(tmp_path, mode)
    for key in single:
      np.testing.assert_allclose(params[key], single[key], rtol=1e-5, atol=1e-6, err_msg=f'{mode} {key}')
    for key in ('loss_sum', 'grad_norm', 'tokens', 'correct'):
      np.testing.assert_allclose(report['metrics'][mode][key], report['metrics']['single'][key], rtol=1e-5)


def test_pointer_generator_with_tied_embeddings_trains_like_one_device(tmp_path):
  """model.copy (batches with extended source ids, targets with ids past the vocabulary), tied embeddings and
  label smoothing over the target vocabulary: pmap and shard_map give one device's parameters and losses."""
  overrides = ['model.copy=True', 'model.tie_embeddings=True', 'train.label_smoothing=0.1']
  r = subprocess.run([sys.executable, os.path.join(ROOT, 'tests', 'parallel_check.py'), '3', str(tmp_path),
                      *overrides], cwd=ROOT, env=_env(DEVICES), capture_output=True, text=True, timeout=280)
  assert r.returncode == 0, r.stderr[-3000:]
  report = json.loads(r.stdout.strip().splitlines()[-1])
  single = _params(tmp_path, 'single')
  assert 'decoder/copy/b' in {k.replace("']['", '/').strip("[']") for k in single}
  for mode in ('pmap', 'shard_map'):
    params = _params(tmp_path, mode)
    for key in single:
      np.testing.assert_allclose(params[key], single[key], rtol=1e-5, atol=1e-6, err_msg=f'{mode} {key}')
    for key in ('loss_sum', 'grad_norm', 'correct'):
      np.testing.assert_allclose(report['metrics'][mode][key], report['metrics']['single'][key], rtol=1e-5,
                                 err_msg=f'{mode} {key}')
  assert report['metrics']['single']['nonfinite'] == [0.0] * 3


def test_token_budget_batches_with_accumulation_train_on_8_devices(tmp_path):
  """data.batch_tokens with train.accumulate on 8 devices: data.batch_size (12, not a multiple of 8) is unused."""
  workdir = str(tmp_path / 'run')
  r = subprocess.run([sys.executable, '-m', 'seq2seq_jax', 'train', '--config', 'configs/reverse.py',
                      '--workdir', workdir, *[f'--config.{o}' for o in (
                          'data.batch_size=12', 'data.batch_tokens=256', 'train.accumulate=2', 'data.min_len=5',
                          'data.max_len=6', 'data.num_train=200', 'data.num_eval=8', 'model.embed_size=8',
                          'model.encoder_size=8', 'model.decoder_size=16', 'model.attention_size=8',
                          'train.num_steps=2', 'train.log_every=1', 'train.eval_every=2', 'train.attention_plots=0')]],
                     cwd=ROOT, env=_env(DEVICES), capture_output=True, text=True, timeout=280)
  assert r.returncode == 0, r.stderr[-3000:]
  assert ('batches: each step (one optimizer update) sums the gradients of 2 micro-batches of up to 256 padded '
          'source + target positions (rows per length bucket)') in r.stderr, r.stderr[-3000:]
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f if '"train"' in line]
  assert [r['micro_batches'] for r in rows] == [2, 4] and all(r['skipped_updates'] == 0 for r in rows)


@pytest.mark.parametrize('overrides', [
    ('train.objective=mrt', 'train.candidates=beam', 'train.num_candidates=3', 'train.mrt_reference=true',
     'train.cost=edit', 'train.xent_weight=0.3'),
    ('train.objective=scst', 'train.num_candidates=2', 'train.temperature=1.5', 'train.cost=edit')],
    ids=['mrt_beam', 'scst_samples'])
def test_sequence_objectives_train_like_one_device(tmp_path, overrides):
  """Minimum risk training (beam candidates and the reference) and SCST (samples, greedy baseline): the candidates
  are searched on each device for its rows, the samples drawn with keys of the global row, so 8 devices give one
  device's candidates, costs, losses and parameters (pmap and shard_map)."""
  r = subprocess.run([sys.executable, os.path.join(ROOT, 'tests', 'parallel_check.py'), '3', str(tmp_path),
                      *overrides], cwd=ROOT, env=_env(DEVICES), capture_output=True, text=True, timeout=280)
  assert r.returncode == 0, r.stderr[-3000:]
  report = json.loads(r.stdout.strip().splitlines()[-1])
  single, init = _params(tmp_path, 'single'), _params(tmp_path, 'init')
  assert max(np.abs(single[k] - init[k]).max() for k in init) > 1e-3
  for mode in ('pmap', 'shard_map'):
    params = _params(tmp_path, mode)
    for key in single:
      np.testing.assert_allclose(params[key], single[key], rtol=1e-5, atol=1e-6, err_msg=f'{mode} {key}')
    m, one = report['metrics'][mode], report['metrics']['single']
    assert m['candidates'] == one['candidates'] and m['nonfinite'] == one['nonfinite'] == [0.0] * 3
    for key in ('loss_sum', 'grad_norm', 'sequence_loss_sum', 'candidate_cost_sum') + (
        ('baseline_cost_sum',) if 'scst' in overrides[0] else ()):
      np.testing.assert_allclose(m[key], one[key], rtol=1e-5, atol=1e-7, err_msg=f'{mode} {key}')
  assert min(report['metrics']['single']['candidate_cost_sum']) > 0


def test_batch_size_must_divide_by_the_devices():
  cfg = config.default_config()
  cfg.data.batch_size = 16
  config.validate(cfg, num_devices=8)
  cfg.data.batch_size = 12
  config.validate(cfg, num_devices=1)
  with pytest.raises(ConfigError, match=r'data\.batch_size=12 does not divide by the 8 devices in use; '
                                        r'choose a multiple of 8'):
    config.validate(cfg, num_devices=8)


def test_cli_refuses_a_batch_that_does_not_divide(tmp_path):
  workdir = str(tmp_path / 'run')
  r = subprocess.run([sys.executable, '-m', 'seq2seq_jax', 'train', '--config', 'configs/reverse.py',
                      '--workdir', workdir, '--config.data.batch_size=12', '--config.data.num_train=100'],
                     cwd=ROOT, env=_env(DEVICES), capture_output=True, text=True, timeout=120)
  assert r.returncode == 2, r.stderr[-3000:]
  errors = [line for line in r.stderr.splitlines() if line.startswith('error:')]
  assert len(errors) == 1 and 'data.batch_size=12' in errors[0] and '8 devices' in errors[0], r.stderr
  assert 'Traceback' not in r.stderr
  assert not os.path.exists(workdir)  # refused before anything was written


def test_decoding_on_8_devices_gives_the_one_device_results():
  """Greedy and beam search split their batch over the local devices; every sentence's result is unchanged."""
  results = {}
  for devices in (1, 8):
    r = subprocess.run([sys.executable, os.path.join(ROOT, 'tests', 'parallel_decode_check.py')], cwd=ROOT,
                       env=_env(devices), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    results[devices] = json.loads(r.stdout.strip().splitlines()[-1])
  assert results[1]['devices'] == 1 and results[8]['devices'] == 8
  assert results[8]['greedy'] == results[1]['greedy'] and results[8]['beam'] == results[1]['beam']
  assert len({len(h[0]) for h in results[1]['greedy']}) > 2  # sentences of several output lengths
