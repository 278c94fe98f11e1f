"""The stateful attention kinds in the whole model: padding, gradients, decoders (greedy and beam search independent
of batch size, order and padding; beam 1 = greedy), hard monotonic decoding, and training from the command line."""

import functools
import json
import os

import jax
import numpy as np
import pytest
from PIL import Image

from seq2seq_jax import cli
from seq2seq_jax.data.vocab import EOS, PAD
from seq2seq_jax.model import ModelConfig, Seq2Seq, losses
from tests import decoders

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KINDS = ('location', 'coverage', 'monotonic', 'mocha')
MONOTONIC = ('monotonic', 'mocha')
RULE = dict(a=1.5, b=4, cap=20)
SENTENCES = [[4, 5, 6, 7, 8, 9], [5, 6], [11, 10, 4, 4], [7], [8, 9, 10, 11, 4], [6, 6, 6]]
ORDER = [3, 0, 5, 1, 4, 2]
BEAM = dict(beam_size=3, nbest=2, alpha=0.6)


@functools.lru_cache(maxsize=None)
def _model_and_params(kind: str, style: str = 'bahdanau'):
  c = ModelConfig(src_vocab=12, tgt_vocab=12, embed_size=16, encoder_size=16, decoder_size=32, attention_size=16,
                  attention=kind, style=style, location_filters=4, location_width=5, mocha_width=3)
  model = Seq2Seq(c)
  dummy = (np.ones((1, 3), np.int32), np.ones((1,), np.int32), np.ones((1, 2), np.int32))
  params = jax.jit(model.init)(jax.random.PRNGKey(2), *dummy)['params']
  params['decoder']['out_w'] = params['decoder']['out_w'] * 3.0  # sharper outputs: varied lengths untrained
  params['decoder']['out_b'] = params['decoder']['out_b'].at[EOS].add(0.3)
  if kind in MONOTONIC:  # r = 0: the untrained alignment stops about every other position instead of running off
    mono = params['decoder']['attention'].get('monotonic', params['decoder']['attention'])
    mono['r'] = mono['r'] * 0.0
  return model, params


def _batch(sentences, pad_to=8):
  src = np.full((len(sentences), pad_to), PAD, np.int32)
  for i, x in enumerate(sentences):
    src[i, :len(x)], src[i, len(x)] = x, EOS
  return src, np.array([len(x) + 1 for x in sentences], np.int32)


@pytest.mark.parametrize('kind, style', [(kind, 'bahdanau') for kind in KINDS] + [('monotonic', 'luong')])
def test_teacher_forced_padding_and_finite_gradients(kind, style):
  """In training mode (the monotonic kinds draw their noise; the same key and shapes give the same noise)."""
  model, params = _model_and_params(kind, style)

  @jax.jit
  def forward_and_grads(p, src, src_len, tgt_in, tgt_out):
    def loss(p):
      logits, attn = model.apply({'params': p}, src, src_len, tgt_in, train=True,
                                 rngs={'dropout': jax.random.PRNGKey(0)})
      return losses.cross_entropy(logits, tgt_out, (tgt_out > 0) * 1.0)[0], (logits, attn)
    return jax.grad(loss, has_aux=True)(p)

  src, src_len = _batch(SENTENCES[:2], pad_to=7)
  tgt_in = np.array([[1, 4, 5, 6], [1, 7, 0, 0]], np.int32)
  tgt_out = np.array([[4, 5, 6, 2], [7, 2, 0, 0]], np.int32)
  g, (logits, attn) = forward_and_grads(params, src, src_len, tgt_in, tgt_out)
  attn = np.asarray(attn)
  assert (attn[1, :, 3:] == 0.0).all()  # padding gets exactly nothing
  if kind in MONOTONIC:  # the expected alignment: what ran off the end is lost
    assert (attn.sum(-1) <= 1.0 + 1e-5).all() and (attn >= 0).all()
  else:
    np.testing.assert_allclose(attn.sum(-1), 1.0, rtol=1e-5)
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(g))
  for path, x in jax.tree_util.tree_flatten_with_path(g['decoder']['attention'])[0]:
    assert np.abs(np.asarray(x)).max() > 0, f'no gradient for {jax.tree_util.keystr(path)}'
  # Sentence 1 with another batch mate and garbage ids in its source and target padding (same shapes: no new
  # compilation): the same numbers.
  other_src = np.array([[9, 10, 11, 2, 0, 0, 0], [5, 6, 2, 8, 8, 8, 8]], np.int32)
  _, (other, attn_other) = forward_and_grads(params, other_src, np.array([4, 3], np.int32),
                                             np.array([[1, 9, 9, 9], [1, 7, 3, 3]], np.int32), tgt_out)
  np.testing.assert_allclose(other[1, :2], logits[1, :2], atol=1e-5)
  np.testing.assert_allclose(attn_other[1, :2], attn[1, :2], atol=1e-6)


def _hyps(out, nbest: bool):
  tokens, lengths = out['tokens'], out['lengths']
  if not nbest:
    return [tokens[i, :lengths[i]].tolist() for i in range(len(tokens))]
  return [[tokens[i, n, :lengths[i, n]].tolist() for n in range(tokens.shape[1])] for i in range(len(tokens))]


def _check_monotonic(attn_LxS, length: int, kind: str):
  """Hard decoding: every row is one position (monotonic) or a chunk ending there (mocha), or nothing once the
  alignment has run off the end; positions never move backwards."""
  last = 0
  for row in attn_LxS[:length + 1]:
    support = np.flatnonzero(row)
    if last is None:
      assert support.size == 0  # run off the end: nothing comes back
      continue
    if support.size == 0:
      last = None
      continue
    position = support[-1]
    assert position >= last
    if kind == 'monotonic':
      assert support.size == 1 and row[position] == 1.0
    else:
      assert support[0] >= position - 2 and support.size == position - support[0] + 1  # width 3, contiguous
      np.testing.assert_allclose(row.sum(), 1.0, rtol=1e-5)
    last = position


@pytest.mark.parametrize('kind', KINDS)
def test_greedy_and_beam_independent_of_batch_size_order_and_padding(kind):
  model, params = _model_and_params(kind)
  src, src_len = _batch(SENTENCES)
  greedy = decoders.greedy(model, params, src, src_len, **RULE)
  reference = _hyps(greedy, nbest=False)
  assert len({len(h) for h in reference}) > 2  # a varied case
  # Each sentence alone and with more padding (batch size and padding), then the batch shuffled (order).
  alone = [decoders.greedy(model, params, *_batch([s], pad_to=12), **RULE) for s in SENTENCES]
  assert [_hyps(a, nbest=False)[0] for a in alone] == reference
  steps = greedy['attn'].shape[1]  # (a longer source padding gives a longer output buffer)
  for i, a in enumerate(alone):
    np.testing.assert_allclose(a['scores'][0], greedy['scores'][i], rtol=1e-5)
    np.testing.assert_allclose(a['attn'][0, :steps, :8], greedy['attn'][i], atol=1e-6)
    assert (a['attn'][0, steps:] == 0).all() and (a['attn'][0, :, 8:] == 0).all()
  shuffled = decoders.greedy(model, params, *_batch([SENTENCES[i] for i in ORDER]), **RULE)
  assert _hyps(shuffled, nbest=False) == [reference[i] for i in ORDER]
  np.testing.assert_allclose(shuffled['attn'], greedy['attn'][ORDER], atol=1e-6)

  beam1 = decoders.beam(model, params, src, src_len, beam_size=1, **RULE)
  np.testing.assert_array_equal(beam1['tokens'][:, 0], greedy['tokens'])
  np.testing.assert_allclose(beam1['scores'][:, 0], greedy['scores'], rtol=1e-6)
  np.testing.assert_allclose(beam1['attn'][:, 0], greedy['attn'], atol=1e-6)

  out = decoders.beam(model, params, src, src_len, **BEAM, **RULE)
  reference = _hyps(out, nbest=True)
  alone = [decoders.beam(model, params, *_batch([s], pad_to=12), **BEAM, **RULE) for s in SENTENCES]
  assert [_hyps(a, nbest=True)[0] for a in alone] == reference
  np.testing.assert_allclose(np.concatenate([a['scores'] for a in alone]), out['scores'], rtol=1e-5)
  shuffled = decoders.beam(model, params, *_batch([SENTENCES[i] for i in ORDER]), **BEAM, **RULE)
  assert _hyps(shuffled, nbest=True) == [reference[i] for i in ORDER]
  np.testing.assert_allclose(shuffled['scores'], out['scores'][ORDER], rtol=1e-5)

  if kind in MONOTONIC:
    for i, length in enumerate(greedy['lengths']):
      _check_monotonic(greedy['attn'][i], length, kind)
      for n in range(BEAM['nbest']):
        _check_monotonic(out['attn'][i, n], out['lengths'][i, n], kind)
    assert any(np.abs(greedy['attn'][i, :greedy['lengths'][i] + 1]).sum() > 1.5 for i in range(len(SENTENCES)))


def _cli(capsys, *args) -> list[str]:
  capsys.readouterr()
  code = cli.main(list(args))
  out, err = capsys.readouterr()
  assert code == 0, err
  return out.splitlines()


def test_mocha_with_both_losses_trains_from_the_command_line(tmp_path, capsys):
  """A few steps of the reverse task with --config.model.attention=mocha (the kind with the most parts: its own
  step, training noise, hard decoding) and both attention losses: trains, validates, draws the attention PNG,
  checkpoints; then plot-attention and a beam-search eval with the coverage penalty. (Every kind trains from
  the command line in the smoke run of report/attention_kinds.py; here one, for time.)"""
  kind = 'mocha'
  workdir = str(tmp_path / kind)
  extra = ['--config.train.guided_loss=1.0', '--config.train.coverage_loss=0.5',
           '--config.train.guided_anneal_steps=4']
  _cli(capsys, 'train', '--config', os.path.join(ROOT, 'configs/reverse.py'), '--workdir', workdir,
       f'--config.model.attention={kind}', '--config.train.num_steps=4', '--config.train.eval_every=4',
       '--config.train.log_every=2', '--config.train.eval_examples=4', '--config.train.attention_plots=1',
       '--config.data.num_train=64', '--config.data.num_eval=8', '--config.data.max_len=6',
       '--config.data.batch_size=16', '--config.data.bucket_step=8', '--config.model.embed_size=8',
       '--config.model.encoder_size=8', '--config.model.decoder_size=16', '--config.model.attention_size=8',
       '--config.model.location_width=3', '--config.model.location_filters=2', '--config.decode.batch_size=8',
       *extra)
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f]
  train_rows = [r for r in rows if r['kind'] == 'train']
  assert len(train_rows) == 2 and all(np.isfinite(r['loss']) for r in train_rows)
  assert all(r['guided_loss'] > 0 and r['coverage_loss'] >= 0 for r in train_rows)
  assert [r['guided_weight'] for r in train_rows] == [0.75, 0.25]  # steps 2 and 4 (weights of steps 1, 3)
  assert [r['step'] for r in rows if r['kind'] == 'validation'] == [4]
  assert os.listdir(os.path.join(workdir, 'attention')) == ['step-4-1.png']
  assert os.path.isdir(os.path.join(workdir, 'checkpoints', '4'))
  png = str(tmp_path / 'attn.png')
  assert _cli(capsys, 'plot-attention', '--workdir', workdir, '--output', png, 'abcd') == [png]
  assert Image.open(png).size[0] > 0
  result = json.loads(_cli(capsys, 'eval', '--workdir', workdir, '--split', 'test', '--beam', '2',
                           '--coverage-penalty', '0.2')[-1])
  assert 0 < result['num_items'] <= 8 and 0 <= result['wer'] <= 100
