"""Batches: few shapes, filler rows that weigh nothing, seeded order, exact iterator restore; synthetic tasks."""

import numpy as np
import pytest

from seq2seq_jax import config
from seq2seq_jax.data import pipeline, synthetic
from seq2seq_jax.data.vocab import BOS, EOS, PAD
from seq2seq_jax.errors import ConfigError


def _examples(n=300, seed=0):
  rng = np.random.default_rng(seed)
  src = [rng.integers(4, 20, rng.integers(1, 30)).tolist() for _ in range(n)]
  tgt = [rng.integers(4, 20, rng.integers(1, 30)).tolist() for _ in range(n)]
  return pipeline.Examples(src, tgt, step=4)


def test_bucket_boundaries():
  # 4, 8, 12, 16, then x1.5 rounded up to a multiple of 4: 24, 36, 56 (54), 84, 128 (126)
  assert [pipeline.bucket_len(n, 4) for n in (1, 4, 5, 16, 17, 25, 100)] == [4, 4, 8, 16, 24, 36, 128]


def test_batches_cover_every_example_once_with_few_shapes():
  ex = _examples()
  seen, shapes = [], set()
  for batch in pipeline.eval_batches(ex, 32):
    shapes.add((batch['src'].shape, batch['tgt_in'].shape))
    real = batch['index'] >= 0
    seen += batch['index'][real].tolist()
    # filler rows carry no weight; real rows weigh exactly their target length + EOS
    assert (batch['weights'][~real] == 0).all()
    for row in np.where(real)[0]:
      i = batch['index'][row]
      n_src, n_tgt = len(ex.src[i]), len(ex.tgt[i])
      assert batch['src_len'][row] == n_src + 1 and batch['src'][row, n_src] == EOS
      assert (batch['src'][row, n_src + 1:] == PAD).all()
      assert batch['tgt_in'][row, 0] == BOS and batch['tgt_out'][row, n_tgt] == EOS
      np.testing.assert_array_equal(batch['tgt_in'][row, 1:n_tgt + 1], ex.tgt[i])
      assert batch['weights'][row].sum() == n_tgt + 1
  assert sorted(seen) == list(range(len(ex)))
  # one shape per frequent (source, target) length bucket, not one per batch
  assert len(shapes) <= 36


def test_batches_with_references_carry_every_target_of_the_source():
  src = [[4, 5], [6], [4, 5], [7, 8, 9], [4, 5]]
  tgt = [[10, 11], [12, 13, 14, 15, 16], [11], [10], [13, 12, 11]]
  ex = pipeline.Examples(src, tgt, step=4)
  assert 'refs' not in ex.batch(np.array([0, 1]))
  b = ex.batch(np.array([2, 1, 3, -1]), refs=True)
  assert b['refs'].shape == (4, 3, 6) and b['refs_len'].shape == (4, 3)  # 3 targets of [4, 5]; 5 symbols + EOS
  assert b['refs_len'].tolist() == [[2, 1, 3], [5, 0, 0], [1, 0, 0], [2, 1, 3]]  # the filler row copies row 0
  assert b['refs'][0].tolist() == [[10, 11, EOS, PAD, PAD, PAD], [11, EOS] + [PAD] * 4, [13, 12, 11, EOS, PAD, PAD]]
  assert b['refs'][1, 0].tolist() == [12, 13, 14, 15, 16, EOS] and (b['refs'][1, 1:] == PAD).all()
  part = ex.batch(np.array([2, 1, 3, -1]), rows=slice(2, 4), refs=True)  # one process's rows
  np.testing.assert_array_equal(part['refs'], b['refs'][2:])
  streamed = next(iter(pipeline.train_stream(ex, 4, seed=0, refs=True)))
  for row, i in enumerate(streamed['index']):
    if i >= 0:
      assert sorted(tuple(r[:n]) for r, n in zip(streamed['refs'][row], streamed['refs_len'][row]) if n) == sorted(
          tuple(t) for s, t in zip(src, tgt) if s == src[i])


def test_train_stream_is_seeded_and_restores_exactly():
  ex = _examples()

  def take(it, n):
    return [next(it)['index'].tolist() for _ in range(n)]

  a = take(iter(pipeline.train_stream(ex, 16, seed=1)), 40)  # crosses an epoch boundary
  assert a == take(iter(pipeline.train_stream(ex, 16, seed=1)), 40)
  assert a != take(iter(pipeline.train_stream(ex, 16, seed=2)), 40)
  it = iter(pipeline.train_stream(ex, 16, seed=1))
  take(it, 17)
  state = it.get_state()
  rest = take(it, 23)
  resumed = iter(pipeline.train_stream(ex, 16, seed=1))
  resumed.set_state(state)
  assert take(resumed, 23) == rest == a[17:]


def test_rare_length_buckets_merge_into_a_larger_frequent_one():
  keys = np.array([[8, 8]] * 200 + [[12, 12]] * 200 + [[8, 12]] * 3 + [[36, 36]] * 2 + [[4, 4]] * 130)
  merged = pipeline.merge_rare_keys(keys, min_count=128)
  np.testing.assert_array_equal(merged[400:403], [[12, 12]] * 3)   # (8, 12) fits in (12, 12)
  np.testing.assert_array_equal(merged[403:405], [[36, 36]] * 2)   # nothing frequent fits: stays
  np.testing.assert_array_equal(merged[:400], keys[:400])
  np.testing.assert_array_equal(merged[405:], keys[405:])


def test_synthetic_tasks():
  d = config.default_config().data
  d.num_train, d.num_eval, d.max_len = 500, 100, 6
  for task in synthetic.TASKS:
    train = synthetic.generate(task, 'train', d, seed=0)
    test = synthetic.generate(task, 'test', d, seed=0)
    assert len(train) == 500 and len(test) == 100
    assert not {s for s, _ in train} & {s for s, _ in test}  # held out
    assert train == synthetic.generate(task, 'train', d, seed=0)
    assert train != synthetic.generate(task, 'train', d, seed=1)
    for src, tgt in test:
      if task == 'addition':
        a, b = src.split('+')
        assert int(tgt) == int(a) + int(b)
      else:
        assert tgt == {'copy': src, 'reverse': src[::-1], 'sort': ''.join(sorted(src))}[task]


def test_a_process_builds_exactly_its_rows_of_the_global_batch():
  ex = _examples()
  idx = ex.plan(16)[-1]  # a bucket's last batch: has filler rows
  idx = np.concatenate([idx[idx >= 0][:5], np.full(11, -1)])
  full = ex.batch(idx)
  for rows in (slice(0, 8), slice(8, 16), slice(4, 12)):
    part = ex.batch(idx, rows)
    for key in full:
      np.testing.assert_array_equal(part[key], full[key][rows])


def test_token_budget_batches_fit_the_budget_with_one_shape_per_bucket():
  ex = _examples(600)
  budget, devices = 400, 4
  rows = ex.rows_by_key(budget, multiple=devices)
  counts = {key: int((ex.keys == key).all(axis=1).sum()) for key in rows}
  for (s_len, t_len), r in rows.items():
    assert r % devices == 0 and r * (s_len + t_len) <= budget
    # the most rows that fit, unless the bucket has fewer examples (then its size, rounded up to the devices)
    assert (r + devices) * (s_len + t_len) > budget or r >= counts[(s_len, t_len)]
  assert len(set(rows.values())) > 2  # short buckets get more rows than long ones
  shapes, seen = set(), []
  for idx in ex.plan(rows, np.random.default_rng(0)):
    batch = ex.batch(idx)
    shapes.add(batch['src'].shape + batch['tgt_in'].shape)
    assert batch['src'].shape[0] * (batch['src'].shape[1] + batch['tgt_in'].shape[1]) <= budget
    seen += batch['index'][batch['index'] >= 0].tolist()
  assert sorted(seen) == list(range(len(ex)))  # every example once per epoch
  assert len(shapes) == len(rows)  # one shape per bucket: jit compiles a bounded number of programs


def test_token_budget_too_small_for_a_bucket_is_a_config_error():
  ex = _examples(300)
  longest = max(int(s) + int(t) for s, t in ex.keys)
  with pytest.raises(ConfigError, match=rf'data\.batch_tokens={2 * longest - 1} is too small for the length bucket '
                                        rf'of \d+ source \+ \d+ target positions: 2 row\(s\) \(one per device\) '
                                        rf'need {2 * longest}'):
    ex.rows_by_key(2 * longest - 1, multiple=2)
  assert min(ex.rows_by_key(2 * longest, multiple=2).values()) == 2


def test_processes_build_their_rows_of_token_budget_batches():
  ex = _examples(300)
  rows = ex.rows_by_key(300, multiple=4)
  whole = iter(pipeline.train_stream(ex, rows, seed=3))
  parts = [iter(pipeline.train_stream(ex, rows, seed=3, process=(p, 2))) for p in range(2)]
  for _ in range(12):
    full = next(whole)
    halves = [next(part) for part in parts]
    for key in full:
      np.testing.assert_array_equal(np.concatenate([h[key] for h in halves]), full[key])
