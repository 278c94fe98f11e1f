"""Imports only go down the layers (README, Layout): every import of every module, found with `ast`, including
imports inside functions."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / 'seq2seq_jax'

# Each unit (a folder, or a top-level module) and its layer; a unit may import its own modules and units of
# lower layers only (not those of its own layer).
LAYERS = {'errors': 0, 'process': 0, '__init__': 0, 'data': 1, 'model': 1, 'config': 2, 'runs': 3, 'decoding': 4,
          'evaluation': 5, 'training': 6, 'tools': 7, 'cli': 8, '__main__': 9}


def _unit(module: str) -> str:
  """'seq2seq_jax.model.attention' -> 'model'; 'seq2seq_jax.cli' -> 'cli'; 'seq2seq_jax' -> '__init__'."""
  parts = module.split('.')
  return parts[1] if len(parts) > 1 else '__init__'


def _modules(package: pathlib.Path):
  for path in sorted(package.rglob('*.py')):
    rel = path.relative_to(package.parent).with_suffix('')
    yield '.'.join(p for p in rel.parts if p != '__init__') if rel.name == '__init__' else '.'.join(rel.parts), path


def _imports(path: pathlib.Path, module: str):
  """(line, imported module) of every `import seq2seq_jax...` / `from seq2seq_jax... import ...`."""
  package = module if path.name == '__init__.py' else module.rsplit('.', 1)[0]
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:  # relative import
        base = '.'.join(package.split('.')[:len(package.split('.')) - node.level + 1] + ([base] if base else []))
      if base == 'seq2seq_jax':  # `from seq2seq_jax import config, errors`: each name is a unit
        for alias in node.names:
          yield node.lineno, f'seq2seq_jax.{alias.name}'
      elif base.startswith('seq2seq_jax.'):
        yield node.lineno, base
    elif isinstance(node, ast.Import):
      for alias in node.names:
        if alias.name.startswith('seq2seq_jax'):
          yield node.lineno, alias.name


def violations(package: pathlib.Path = PACKAGE) -> list[str]:
  found = []
  for module, path in _modules(package):
    unit = _unit(module)
    assert unit in LAYERS, f'{path}: unit {unit!r} has no layer in LAYERS (add it, and to the README)'
    for line, target in _imports(path, module):
      other = _unit(target)
      if other != unit and not LAYERS[other] < LAYERS[unit]:
        found.append(f'{path.relative_to(package.parent)}:{line}: {unit} (layer {LAYERS[unit]}) imports {target} '
                     f'(layer {LAYERS[other]})')
  return found


def test_imports_only_go_down():
  assert violations() == []


def test_the_check_sees_wrong_imports(tmp_path):
  (tmp_path / 'seq2seq_jax' / 'model').mkdir(parents=True)
  (tmp_path / 'seq2seq_jax' / 'model' / 'probe.py').write_text(
      'from seq2seq_jax import errors\nfrom seq2seq_jax.model import cells\n'
      'def f():\n  from seq2seq_jax.training import steps\n  import seq2seq_jax.data.vocab\n')
  assert violations(tmp_path / 'seq2seq_jax') == [
      'seq2seq_jax/model/probe.py:4: model (layer 1) imports seq2seq_jax.training (layer 6)',
      'seq2seq_jax/model/probe.py:5: model (layer 1) imports seq2seq_jax.data.vocab (layer 1)']


@pytest.mark.parametrize('unit', sorted(u for u in LAYERS if (PACKAGE / u).is_dir()))
def test_each_folder_says_what_it_may_import(unit):
  doc = ast.get_docstring(ast.parse((PACKAGE / unit / '__init__.py').read_text()))
  assert doc and 'May import' in doc, f'seq2seq_jax/{unit}/__init__.py: docstring must say what it may import'
