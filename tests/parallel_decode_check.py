"""Decoding on however many devices this process has, for tests/test_parallel.py:

  XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/parallel_decode_check.py

Builds a small random model (fixed seed; a slight push towards EOS so that sentences end at different steps)
and prints one JSON object: the device count and the greedy and beam-3 n-best token lists of 11 sources.
"""

import json

import jax
import numpy as np

from seq2seq_jax import config
from seq2seq_jax.model import ModelConfig, Seq2Seq
from seq2seq_jax.decoding.predictor import DecodeOptions, Predictor
from seq2seq_jax.data.vocab import EOS, Vocab


def main():
  cfg = config.load_config('configs/reverse.py', ['model.embed_size=16', 'model.encoder_size=16',
                                                   'model.decoder_size=32', 'model.attention_size=16'])
  vocab = Vocab([chr(ord('a') + i) for i in range(8)], 'char')
  model = Seq2Seq(ModelConfig.from_config(cfg.model, len(vocab), len(vocab)))
  params = model.init(jax.random.PRNGKey(7), np.ones((1, 3), np.int32), np.ones((1,), np.int32),
                      np.ones((1, 2), np.int32))['params']
  params['decoder']['out_b'] = params['decoder']['out_b'].at[EOS].add(0.2)
  predictor = Predictor(cfg, params, vocab, vocab)
  rng = np.random.default_rng(0)
  sources = [rng.integers(4, len(vocab), rng.integers(1, 9)).tolist() for _ in range(11)]
  out = {'devices': jax.local_device_count()}
  for name, options in (('greedy', DecodeOptions()), ('beam', DecodeOptions(beam=3, nbest=2))):
    out[name] = [[h['tokens'] for h in r['nbest']] for r in predictor.decode_ids(sources, options)]
  print(json.dumps(out))


if __name__ == '__main__':
  main()
