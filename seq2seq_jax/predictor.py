"""Text in, text out: batching, padding and detokenization around the compiled decoders.

  from seq2seq_jax.predictor import Predictor
  Predictor.load('workdir').predict(['hello', 'world'])
"""

import jax
import numpy as np

from seq2seq_jax import checkpoint, decoding, steps, workdir as workdir_lib
from seq2seq_jax.data.pipeline import bucket_len
from seq2seq_jax.errors import CheckpointError, DataError
from seq2seq_jax.model import ModelConfig, Seq2Seq
from seq2seq_jax.vocab import EOS, PAD, Vocab


class Predictor:
  """A trained model with its vocabularies and decoding settings."""

  def __init__(self, cfg, params, src_vocab: Vocab, tgt_vocab: Vocab):
    self.cfg, self.params, self.src_vocab, self.tgt_vocab = cfg, params, src_vocab, tgt_vocab
    self.model = Seq2Seq(ModelConfig.from_config(cfg.model, len(src_vocab), len(tgt_vocab)))

  @classmethod
  def load(cls, workdir: str, step: int | None = None) -> 'Predictor':
    """The workdir's model at `step` (default: the latest checkpoint)."""
    cfg = workdir_lib.load_config(workdir)
    src_vocab, tgt_vocab = workdir_lib.load_vocabs(workdir)
    model = Seq2Seq(ModelConfig.from_config(cfg.model, len(src_vocab), len(tgt_vocab)))
    ckpt = checkpoint.Checkpointer(workdir, read_only=True)
    step = ckpt.latest_step() if step is None else step
    if step is None:
      raise CheckpointError(f'{workdir}: has no complete checkpoint')
    batch = {'src': np.full((1, 2), EOS, np.int32), 'src_len': np.ones((1,), np.int32),
             'tgt_in': np.zeros((1, 1), np.int32)}
    like = jax.eval_shape(lambda: steps.init_state(model, cfg, jax.random.PRNGKey(0), batch))
    state, _, _ = ckpt.restore(step, like)
    ckpt.close()
    return cls(cfg, state.params, src_vocab, tgt_vocab)

  def decode_ids(self, sources: list[list[int]]) -> list[dict]:
    """Greedy results per source (token ids without EOS): {'tokens', 'attention' (L, S), 'score'}."""
    dc = self.cfg.decode
    decode = decoding.jitted_greedy(self.model, float(dc.max_len_a), int(dc.max_len_b), int(dc.max_len_cap))
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    results = [None] * len(sources)
    for start in range(0, len(order), dc.batch_size):
      idx = order[start:start + dc.batch_size]
      rows = 1 << (len(idx) - 1).bit_length()  # batch rows rounded up to a power of two: few shapes
      s_len = bucket_len(max(len(sources[i]) for i in idx) + 1, self.cfg.data.bucket_step)
      src = np.full((rows, s_len), PAD, np.int32)
      src_len = np.ones((rows,), np.int32)
      src[:, 0] = EOS
      for row, i in enumerate(idx):
        src[row, :len(sources[i])], src[row, len(sources[i])] = sources[i], EOS
        src_len[row] = len(sources[i]) + 1
      out = {k: np.asarray(v) for k, v in decode(self.params, src, src_len).items()}
      for row, i in enumerate(idx):
        n = int(out['lengths'][row])
        results[i] = {'tokens': out['tokens'][row, :n].tolist(),
                      'attention': out['attn'][row, :n + 1, :src_len[row]], 'score': float(out['scores'][row])}
    return results

  def predict(self, texts: list[str], where: str = 'input') -> list[str]:
    """Decodes each text; an unknown symbol is an error naming it and the line (`where`:line)."""
    ids = []
    for i, text in enumerate(texts):
      if not text:
        raise DataError(f'{where}:{i + 1}: empty line')
      ids.append(self.src_vocab.encode(text, f'{where}:{i + 1}'))
      if len(ids[-1]) > self.cfg.data.max_source_len:
        raise DataError(f'{where}:{i + 1}: {len(ids[-1])} symbols, over data.max_source_len='
                        f'{self.cfg.data.max_source_len}')
    return [self.tgt_vocab.decode(r['tokens']) for r in self.decode_ids(ids)]
