"""The analytic FLOP count (against the jaxpr's matmuls and XLA's own count) and the `bench` command."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend import core as jax_core

from seq2seq_jax import cli, config
from seq2seq_jax.model import flops
from seq2seq_jax.tools import bench
from seq2seq_jax.training import train
from seq2seq_jax.model import ModelConfig, Seq2Seq

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
B, S, T = 8, 8, 8
MODELS = {  # model keyword arguments beside the sizes below
    'additive-bahdanau-bigru': {},
    'additive-bahdanau-lstm': {'cell': 'lstm', 'bidirectional': False},
    'general-luong-gru': {'attention': 'general', 'style': 'luong', 'bidirectional': False},
    'general-luong-bilstm-2layers': {'attention': 'general', 'style': 'luong', 'cell': 'lstm', 'num_layers': 2},
    'dot-luong-no-feeding': {'attention': 'dot', 'style': 'luong', 'input_feeding': False, 'decoder_size': 192},
    'no-attention': {'attention': 'none'},
    'location': {'attention': 'location', 'location_filters': 6, 'location_width': 5},
    'coverage-luong': {'attention': 'coverage', 'style': 'luong'},
    'monotonic': {'attention': 'monotonic'},
    'mocha': {'attention': 'mocha', 'mocha_width': 3},
    'copy': {'copy': True},
    'copy-luong-tied': {'copy': True, 'attention': 'general', 'style': 'luong', 'tie_embeddings': True},
    'tied-projection': {'tie_embeddings': True},
}


def _model(kwargs: dict) -> tuple[Seq2Seq, dict, tuple]:
  sizes = {'src_vocab': 30, 'tgt_vocab': 40, 'embed_size': 64, 'encoder_size': 96, 'decoder_size': 128,
           'attention_size': 80}
  model = Seq2Seq(ModelConfig(**{**sizes, **kwargs}))
  inputs = (jnp.ones((B, S), jnp.int32), jnp.array([S, S - 1, 3, 1, S, 2, 5, S], jnp.int32),
            jnp.ones((B, T), jnp.int32))
  return model, model.init(jax.random.PRNGKey(0), *inputs)['params'], inputs


def _apply(model, params, *inputs):
  """The teacher-forced output; a copy model's source positions get extended ids, some past the vocabulary."""
  extended = {'src_ext_BxS': jnp.arange(B * S, dtype=jnp.int32).reshape(B, S) % 50} if model.c.copy else {}
  return model.apply({'params': params}, *inputs, **extended)[0]


def _dot_flops(jaxpr) -> int:
  """2·m·k·n of every dot_general (and convolution) in a jaxpr and its sub-jaxprs (scan bodies times their length)."""
  total = 0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == 'dot_general':
      (contracting, _), _ = eqn.params['dimension_numbers']
      k = math.prod(eqn.invars[0].aval.shape[i] for i in contracting)
      total += 2 * math.prod(eqn.outvars[0].aval.shape) * k
    if eqn.primitive.name == 'conv_general_dilated':  # each output: kernel width x input channels products
      kernel = eqn.invars[1].aval.shape
      out_channels = kernel[eqn.params['dimension_numbers'].rhs_spec[0]]
      total += 2 * math.prod(eqn.outvars[0].aval.shape) * math.prod(kernel) // out_channels
    times = eqn.params.get('length', 1) if eqn.primitive.name == 'scan' else 1
    for value in eqn.params.values():
      for sub in value if isinstance(value, (tuple, list)) else (value,):
        if isinstance(sub, (jax_core.ClosedJaxpr, jax_core.Jaxpr)):
          total += times * _dot_flops(getattr(sub, 'jaxpr', sub))
  return total


# Without attention, the decoder reads the same context at every step: flops.py counts its projection once,
# as XLA computes it (the jaxpr has it in every step), so that model is only checked against XLA.
@pytest.mark.parametrize('name', sorted(set(MODELS) - {'no-attention'}))
def test_flops_equal_the_matmuls_of_the_jaxpr(name):
  model, params, inputs = _model(MODELS[name])
  forward = jax.make_jaxpr(lambda p: _apply(model, p, *inputs))(params)
  assert flops.forward(model.c, B, S, T) == _dot_flops(forward.jaxpr)
  grad = jax.make_jaxpr(jax.grad(lambda p: _apply(model, p, *inputs).sum()))(params)
  # backward = 2 x forward, plus each step's attention scores once more: the decoder recomputes them
  # (jax.checkpoint); the context sum is not recomputed, as the backward pass needs only its inputs
  recomputed = T * (flops._attend(model.c, B, S) - 2 * B * S * model.c.memory_size)
  assert flops.train_step(model.c, B, S, T) + recomputed == _dot_flops(grad.jaxpr)


@pytest.mark.parametrize('name', sorted(MODELS))
def test_flops_match_xla_on_a_loop_free_forward(name):
  """XLA counts a while loop's body once, so both scans are fully unrolled (scan_unroll = their length); XLA
  also counts elementwise work (gates, tanh's inputs, softmax, masks) that flops.py leaves out, so the
  analytic matmul count must lie between 85% and 100% of XLA's (it is 94-98% at these sizes)."""
  model, params, inputs = _model({**MODELS[name], 'scan_unroll': max(S, T)})
  compiled = jax.jit(lambda p, *x: _apply(model, p, *x)).lower(params, *inputs).compile()
  assert ' while(' not in compiled.as_text()
  cost = compiled.cost_analysis()
  xla = (cost[0] if isinstance(cost, list) else cost)['flops']
  assert 0.85 * xla <= flops.forward(model.c, B, S, T) <= xla


def test_useful_flops_count_real_rows_at_their_own_lengths():
  c = ModelConfig(src_vocab=30, tgt_vocab=40)
  weights_BxT = np.zeros((3, 6), np.float32)
  weights_BxT[0], weights_BxT[1, :2] = 1.0, 1.0  # row 2 is a filler row
  useful = flops.useful_train_step(c, np.array([4, 2, 4]), weights_BxT)
  assert useful == flops.train_step(c, 1, 4, 6) + flops.train_step(c, 1, 2, 2)
  assert useful < flops.train_step(c, 3, 4, 6)


def test_tokens_are_source_symbols_and_target_symbols_with_eos():
  batch = {'src_len': np.array([4, 2, 4]), 'weights': np.array([[1, 1, 1], [1, 1, 0], [0, 0, 0]], np.float32)}
  assert bench.real_tokens(batch) == (3 + 1) + (3 + 2)


def test_compile_counter_counts_real_compilations():
  f = jax.jit(lambda x: jnp.sin(x) * 3.0 + 0.5)
  x5, x7, x9 = np.ones(5, np.float32), np.ones(7, np.float32), np.ones(9, np.float32)
  with bench.CompileCounter() as counter:
    f(x5).block_until_ready()
    f(x5).block_until_ready()  # compiled already
    f(x7).block_until_ready()  # a new shape
  assert counter.count == 2 and counter.seconds > 0
  f(x9).block_until_ready()
  assert counter.count == 2  # not listening any more


TINY = ['--config.data.num_train=400', '--config.data.num_eval=8', '--config.data.max_len=6',
        '--config.data.batch_size=16', '--config.model.embed_size=8', '--config.model.encoder_size=16',
        '--config.model.decoder_size=16', '--config.model.attention_size=16', '--config.decode.batch_size=8']


def _run(capsys, *args) -> tuple[int, list[str], str]:
  capsys.readouterr()
  code = cli.main(list(args))
  out, err = capsys.readouterr()
  return code, out.splitlines(), err


def test_bench_command(capsys, tmp_path):
  output = str(tmp_path / 'out.json')
  code, lines, err = _run(capsys, 'bench', '--config', os.path.join(ROOT, 'configs/reverse.py'), '--steps', '6',
                          '--output', output, '--profile', str(tmp_path / 'trace'), *TINY)
  assert code == 0, err
  r = json.loads(lines[-1])
  with open(output, encoding='utf-8') as f:
    assert json.load(f) == r
  assert r['steps'] == 6 and r['batch_size'] == 16 and r['devices']['count'] == jax.device_count()
  assert r['model']['encoder_size'] == 16 and r['parameters'] > 0 and r['jax_version'] == jax.__version__
  ms = r['step_ms']
  assert 0 < ms['min'] <= ms['median'] <= ms['max']
  assert r['train_tokens'] > 0 and r['train_tokens_per_s'] == pytest.approx(r['train_tokens'] / r['timed_s'], rel=1e-3)
  assert r['timed_s'] >= 6 * ms['min'] / 1e3
  assert r['recompiles_during_timing'] == 0 and r['compiles_during_warmup'] == r['shapes'] >= 1
  assert r['compile_s'] > 0 and r['nonfinite_steps'] == 0
  assert 0 < r['useful_flops_per_step'] < r['flops_per_step']
  assert r['achieved_flops_per_s'] == pytest.approx(r['flops_per_step'] / (ms['median'] / 1e3), rel=1e-3)
  assert r['matmul_peak_flops_per_s'] > 0
  assert r['share_of_peak'] == pytest.approx(r['achieved_flops_per_s'] / r['matmul_peak_flops_per_s'], abs=1e-4)
  memory = r['peak_memory']
  assert memory['rss_mib'] > 0 and len(memory['train_step']['shape']) == 3 and memory['train_step']['temp'] >= 0
  ops = r['profile']['top_ops']
  assert ops and all(op['ms_per_step'] > 0 and op['calls_per_step'] >= 1 for op in ops)
  assert [op['ms_per_step'] for op in ops] == sorted((op['ms_per_step'] for op in ops), reverse=True)
  d = r['decode']
  assert d['params'] == 'untrained' and d['sources'] == 8 and 'EOS' in d['note']
  assert d['greedy_sentences_per_s'] > 0 and d['beam5_sentences_per_s'] > 0 and d['beam5']['beam'] == 5


def test_bench_decodes_with_a_trained_workdir(capsys, tmp_path):
  workdir = str(tmp_path / 'run')
  overrides = [o[len('--config.'):] for o in TINY] + ['train.num_steps=10', 'train.eval_every=10',
                                                      'train.attention_plots=0']
  train.train(config.load_config(os.path.join(ROOT, 'configs/reverse.py'), overrides), workdir, log=lambda m: None)
  code, lines, err = _run(capsys, 'bench', '--config', os.path.join(ROOT, 'configs/reverse.py'), '--steps', '2',
                          '--workdir', workdir, *TINY)
  assert code == 0, err
  r = json.loads(lines[-1])
  with open(os.path.join(workdir, 'bench.json'), encoding='utf-8') as f:
    assert json.load(f) == r
  d = r['decode']
  assert d['params'] == 'trained' and 'note' not in d and d['sources'] == 8
  assert 0 <= d['greedy']['wer'] <= 100 and d['beam5_sentences_per_s'] > 0


@pytest.mark.parametrize('args,message', [
    (['--config.model.hiden_size=8'], "unknown config key 'model.hiden_size'"),
    (['--workdir', 'no/such/dir'], 'not a workdir'),
    (['--steps', '0'], '--steps must be at least 1'),
    (['--output', 'no/such/dir/bench.json'], 'no such directory'),
])
def test_bench_errors_are_one_line(capsys, args, message):
  code, lines, err = _run(capsys, 'bench', '--config', os.path.join(ROOT, 'configs/reverse.py'), '--no-decode',
                          *args)
  assert code == 2 and not lines
  assert err.startswith('error: ') and message in err and len(err.strip().splitlines()) == 1, err
