"""Ensembles: the combined step against the members' own log-probabilities; an ensemble of one model with
itself decodes like the model; beam 1 equals greedy; batch, order and padding invariance, also under the
decoding controls; vocabulary checks."""

import functools
import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from seq2seq_jax.data.pipeline import pad_sources
from seq2seq_jax.data.vocab import EOS
from seq2seq_jax.decoding import search
from seq2seq_jax.decoding.beam import Beam
from seq2seq_jax.decoding.controls import Controls
from seq2seq_jax.decoding.ensemble import EnsembleFns
from seq2seq_jax.decoding.fns import ModelFns
from seq2seq_jax.decoding.greedy import Greedy, LengthRule
from seq2seq_jax.model import ModelConfig, Seq2Seq
from tests import decoders

RULE = LengthRule(1.5, 4, 16)
SENTENCES = [[4, 5, 6, 7, 8, 9], [5, 6], [11, 10, 4, 4], [7], [8, 9, 10, 11, 4], [6, 6, 6]]


def _member(seed, **kw):
  c = ModelConfig(**{**dict(src_vocab=12, tgt_vocab=12, embed_size=8, encoder_size=8, decoder_size=16,
                            attention_size=8), **kw})
  model = Seq2Seq(c)
  params = model.init(jax.random.PRNGKey(seed), np.ones((1, 3), np.int32), np.ones((1,), np.int32),
                      np.ones((1, 2), np.int32))['params']
  params['decoder']['out_w'] = params['decoder']['out_w'] * 3.0
  params['decoder']['out_b'] = params['decoder']['out_b'].at[EOS].add(0.3)
  return ModelFns(model), params


@pytest.fixture(scope='module')
def members():
  return [_member(1), _member(2, cell='lstm', style='luong', attention='general', num_layers=2)]


def _batch(sentences, pad_to=None):
  """Sources (B, S) and lengths: each sentence, EOS, then PAD; S is `pad_to` or the longest plus EOS."""
  return pad_sources(sentences, pad_to or max(len(x) for x in sentences) + 1)


def _hyps(out):
  return [out['tokens'][i, 0, :out['lengths'][i, 0]].tolist() for i in range(len(out['tokens']))]


def _decode(fns, params, sentences, chosen, pad_to=None):
  return jax.tree.map(np.asarray, search.decode(params, *_batch(sentences, pad_to), None, fns=fns, search=chosen))


@pytest.mark.parametrize('combine', ['logprob', 'prob'])
def test_step_combines_the_members_log_probabilities(members, combine):
  fns = EnsembleFns(tuple(f for f, _ in members), combine)
  params = tuple(p for _, p in members)
  src, src_len = _batch(SENTENCES)
  carry, memory = fns.encode(params, src, src_len)
  y = np.array([1, 4, 5, 6, 7, 8], np.int32)
  _, logp, attn = fns.step(params, carry, y, memory)
  each = []
  for member_fns, member_params in members:
    member_carry, member_memory = member_fns.encode(member_params, src, src_len)
    each.append(np.asarray(member_fns.step(member_params, member_carry, y, member_memory)[1], np.float64))
  if combine == 'logprob':
    want = np.mean(each, 0)
    want = want - np.log(np.exp(want).sum(-1, keepdims=True))  # renormalised geometric mean
  else:
    with np.errstate(divide='ignore'):  # log(0) = -inf for PAD and BOS
      want = np.log(np.mean(np.exp(each), 0))
  finite = np.isfinite(want)
  np.testing.assert_allclose(np.asarray(logp)[finite], want[finite], rtol=1e-5, atol=1e-5)
  assert (np.asarray(logp)[~finite] == -np.inf).all()  # PAD and BOS stay impossible
  np.testing.assert_allclose(np.asarray(attn).sum(-1), 1.0, rtol=1e-5)


def test_ensemble_of_a_model_with_itself_decodes_like_the_model(members):
  fns, params = members[0]
  alone = _decode(fns, params, SENTENCES, Greedy(RULE))
  twice = _decode(EnsembleFns((fns, fns)), (params, params), SENTENCES, Greedy(RULE))
  assert _hyps(twice) == _hyps(alone)
  np.testing.assert_allclose(twice['scores'], alone['scores'], rtol=1e-5)


def test_beam_one_is_greedy_and_results_are_batch_order_and_padding_invariant(members):
  fns, params = EnsembleFns(tuple(f for f, _ in members)), tuple(p for _, p in members)
  greedy = _decode(fns, params, SENTENCES, Greedy(RULE))
  beam1 = _decode(fns, params, SENTENCES, Beam(RULE, 1))
  assert _hyps(beam1) == _hyps(greedy)
  assert len({len(h) for h in _hyps(greedy)}) > 2  # a varied case
  beam3 = _decode(fns, params, SENTENCES, Beam(RULE, 3, 2, 0.6))
  for chosen, reference in ((Greedy(RULE), greedy), (Beam(RULE, 3, 2, 0.6), beam3)):
    order = [3, 0, 5, 1, 4, 2]
    shuffled = _decode(fns, params, [SENTENCES[i] for i in order], chosen)
    assert _hyps(shuffled) == [_hyps(reference)[i] for i in order]
    padded = _decode(fns, params, SENTENCES, chosen, pad_to=12)
    assert _hyps(padded) == _hyps(reference)
    alone = [_hyps(_decode(fns, params, [s], chosen))[0] for s in SENTENCES[:3]]
    assert alone == _hyps(reference)[:3]


def test_the_decoding_controls_apply_to_the_ensembles_step(members):
  fns, params = EnsembleFns(tuple(f for f, _ in members), 'prob'), tuple(p for _, p in members)
  controls, prefixes = Controls(min_len=4, no_repeat_ngram=1), [[5], [], [7, 8], [], [9], [4, 6, 8]]
  run = functools.partial(decoders.run, fns, params, sentences=SENTENCES, prefixes=prefixes)
  greedy = decoders.hyps(run(Greedy(RULE, controls)))
  assert decoders.hyps(run(Beam(RULE, 1, controls=controls))) == greedy
  assert decoders.hyps(run(Greedy(RULE))) != greedy
  limits = RULE.limits(np.array([len(s) + 1 for s in SENTENCES]))
  for [h], prefix, limit in zip(greedy, prefixes, np.asarray(limits)):
    assert h[:len(prefix)] == prefix and min(4, limit) <= len(h) and len(set(h)) == len(h), h  # no repeated token
  order = [3, 0, 5, 1, 4, 2]
  shuffled = decoders.run(fns, params, Greedy(RULE, controls), [SENTENCES[i] for i in order],
                          prefixes=[prefixes[i] for i in order], pad_to=12, prefix_width=6)
  assert decoders.hyps(shuffled) == [greedy[i] for i in order]


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(*args):
  return subprocess.run([sys.executable, '-m', 'seq2seq_jax', *args], capture_output=True, text=True, cwd=ROOT,
                        timeout=600)


@pytest.mark.timeout(900)
def test_cli_ensemble_of_a_run_with_itself_and_a_vocabulary_mismatch(tmp_path):
  a = str(tmp_path / 'a')
  r = _cli('train', '--config', 'configs/reverse.py', '--workdir', a, '--config.train.num_steps=40',
           '--config.train.eval_every=40', '--config.data.num_train=2000', '--config.data.num_eval=50',
           '--config.train.attention_plots=0', '--config.model.embed_size=16', '--config.model.encoder_size=16',
           '--config.model.decoder_size=32', '--config.model.attention_size=16')
  assert r.returncode == 0, r.stderr
  single = _cli('eval', '--workdir', a, '--split', 'validation', '--beam', '2')
  double = _cli('eval', '--workdir', a, '--workdir', a, '--split', 'validation', '--beam', '2')
  assert single.returncode == 0 and double.returncode == 0, single.stderr + double.stderr
  one, two = json.loads(single.stdout), json.loads(double.stdout)
  assert 'loss' in one and 'loss' not in two  # an ensemble reports decoded metrics only
  assert {k: two[k] for k in ('per', 'wer', 'exact_match')} == {k: one[k] for k in ('per', 'wer', 'exact_match')}
  b = str(tmp_path / 'b')
  shutil.copytree(a, b)
  vocab_file = os.path.join(b, 'vocab_target.json')
  with open(vocab_file, encoding='utf-8') as f:
    vocab = json.load(f)
  symbols = vocab['symbols']
  symbols[-1], symbols[-2] = symbols[-2], symbols[-1]  # same size, another order: another vocabulary
  with open(vocab_file, 'w', encoding='utf-8') as f:
    json.dump(vocab, f)
  r = _cli('predict', '--workdir', a, '--workdir', b, '--input', vocab_file)
  assert r.returncode == 2 and 'Traceback' not in r.stderr
  assert r.stderr.strip().startswith(f'error: {b}: its target vocabulary') and len(r.stderr.splitlines()) == 1
