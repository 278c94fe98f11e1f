"""Export: the serialised decoders run with jax and numpy only and reproduce `predict` exactly."""

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.timeout(900)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args, stdin=None):
  return subprocess.run([sys.executable, '-m', 'seq2seq_jax', *args], input=stdin, capture_output=True, text=True,
                        cwd=ROOT, timeout=600)
WORDS = ['abc', 'hello', 'a', 'jihgfedcba', 'bad', 'cab', 'fig', 'aaaaaaaaaaaa']

# Runs scripts/run_exported.py in a process where importing flax, optax, orbax or seq2seq_jax fails.
NO_FLAX = textwrap.dedent('''
    import runpy, sys
    class Refuse:
      def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('flax', 'optax', 'orbax', 'seq2seq_jax'):
          raise ImportError(f'{name} may not be imported here')
    sys.meta_path.insert(0, Refuse())
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name='__main__')
    assert not any(m.split('.')[0] in ('flax', 'seq2seq_jax') for m in sys.modules)
''')


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  folder = tmp_path_factory.mktemp('export')
  workdir, artefact = str(folder / 'run'), str(folder / 'model.s2s.npz')
  r = run_cli('train', '--config', 'configs/reverse.py', '--workdir', workdir, '--config.train.num_steps=60',
              '--config.train.eval_every=60', '--config.data.max_source_len=12', '--config.data.num_train=2000',
              '--config.data.num_eval=50', '--config.train.attention_plots=0', '--config.model.embed_size=16',
              '--config.model.encoder_size=16', '--config.model.decoder_size=32', '--config.model.attention_size=16')
  assert r.returncode == 0, r.stderr
  r = run_cli('export', '--workdir', workdir, '--output', artefact, '--beam', '3')
  assert r.returncode == 0, r.stderr
  return workdir, artefact


def _run_exported(artefact, *flags, stdin):
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  return subprocess.run([sys.executable, '-c', NO_FLAX, os.path.join(ROOT, 'scripts', 'run_exported.py'), artefact,
                         *flags], input=stdin, capture_output=True, text=True, timeout=600, env=env, cwd='/')


@pytest.mark.parametrize('flags', [(), ('--beam',)], ids=['greedy', 'beam'])
def test_exported_decoders_reproduce_predict_without_flax(exported, flags):
  workdir, artefact = exported
  stdin = ''.join(w + '\n' for w in WORDS)
  r = _run_exported(artefact, *flags, '--batch-size', '3', stdin=stdin)
  assert r.returncode == 0, r.stderr
  want = run_cli('predict', '--workdir', workdir, *(('--beam', '3') if flags else ()), stdin=stdin)
  assert want.returncode == 0, want.stderr
  assert r.stdout == want.stdout
  assert len(r.stdout.splitlines()) == len(WORDS)


def test_unknown_symbol_is_a_one_line_error(exported):
  _, artefact = exported
  r = _run_exported(artefact, stdin='abc\nab!\n')
  assert r.returncode == 2 and r.stderr.strip().startswith('error: <stdin>:2:') and len(r.stderr.splitlines()) == 1


def test_export_refuses_an_output_that_is_not_npz(exported, tmp_path):
  workdir, _ = exported
  r = run_cli('export', '--workdir', workdir, '--output', str(tmp_path / 'model.bin'))
  assert r.returncode == 2 and 'name it FILE.npz' in r.stderr and 'Traceback' not in r.stderr


def test_readme_shows_the_runner_whole():
  with open(os.path.join(ROOT, 'README.md'), encoding='utf-8') as f:
    readme = f.read()
  with open(os.path.join(ROOT, 'scripts', 'run_exported.py'), encoding='utf-8') as f:
    script = f.read()
  assert f'```python\n{script}```' in readme
