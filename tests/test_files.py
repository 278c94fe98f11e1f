"""Tests for seq2seq_jax.data.files: reading TSV pairs/references and every malformed-file error."""

import os
import re
import subprocess
import sys

import pytest

from seq2seq_jax import config as config_lib
from seq2seq_jax.data import files, sources
from seq2seq_jax.data.files import Pair
from seq2seq_jax.errors import DataError, Seq2SeqError


def _write(tmp_path, data: bytes | str, name: str = 'data.tsv') -> str:
  path = tmp_path / name
  path.write_bytes(data.encode('utf-8') if isinstance(data, str) else data)
  return str(path)


def _raises(path: str, where: str, what: str, read=files.read_pairs) -> None:
  """`read(path)` raises a one-line DataError starting with `where: ` and mentioning `what`."""
  with pytest.raises(DataError) as info:
    read(path)
  message = str(info.value)
  assert '\n' not in message
  assert message.startswith(f'{where}: '), message
  assert re.search(what, message), message


# --- good files ----------------------------------------------------------------------------------


def test_read_pairs_round_trip(tmp_path):
  path = _write(tmp_path, 'cat\tK AE T\nread\tR EH D\nread\tR IY D\n')
  assert files.read_pairs(path) == [
      Pair('cat', 'K AE T', f'{path}:1'),
      Pair('read', 'R EH D', f'{path}:2'),
      Pair('read', 'R IY D', f'{path}:3'),
  ]


def test_read_pairs_crlf_no_final_newline_whitespace_and_unicode(tmp_path):
  path = _write(tmp_path, 'über\t Y UW B ER \r\n  naïve \tN AY IY V\r\nlast\tL AE S T')
  assert files.read_pairs(path) == [
      Pair('über', 'Y UW B ER', f'{path}:1'),
      Pair('naïve', 'N AY IY V', f'{path}:2'),
      Pair('last', 'L AE S T', f'{path}:3'),
  ]


def test_read_pairs_accepts_path_objects_and_a_bom(tmp_path):
  path = tmp_path / 'bom.tsv'
  path.write_bytes(b'\xef\xbb\xbfa\tb\n')
  assert files.read_pairs(path) == [Pair('a', 'b', f'{path}:1')]


def test_read_references_one_and_three_refs(tmp_path):
  path = _write(tmp_path, 'cat\tK AE T\r\nread\tR EH D\tR IY D\t R EH D Z \ndog\tD AO G')
  assert files.read_references(path) == [
      ('cat', ['K AE T']),
      ('read', ['R EH D', 'R IY D', 'R EH D Z']),
      ('dog', ['D AO G']),
  ]


def test_group_references_first_appearance_order_and_dedup():
  pairs = [('b', 'x', 'f:1'), ('a', 'y', 'f:2'), ('b', 'z', 'f:3'), ('b', 'x', 'f:4'), ('c', 'w', 'f:5'),
           ('a', 'y', 'f:6')]
  assert sources.group_references(pairs) == [('b', ['x', 'z']), ('a', ['y']), ('c', ['w'])]
  assert sources.group_references([]) == []


def test_pair_is_frozen():
  with pytest.raises(AttributeError):
    Pair('a', 'b', 'f:1').source = 'c'


# --- errors --------------------------------------------------------------------------------------


def test_missing_file_and_directory(tmp_path):
  missing = str(tmp_path / 'nope.tsv')
  _raises(missing, missing, 'not found')
  _raises(missing, missing, 'not found', files.read_references)
  _raises(str(tmp_path), str(tmp_path), 'directory')


def test_empty_file(tmp_path):
  path = _write(tmp_path, b'')
  _raises(path, path, 'empty file')
  _raises(path, path, 'empty file', files.read_references)


def test_undecodable_bytes_name_the_line(tmp_path):
  path = _write(tmp_path, b'a\tb\nc\td\ne\t\xff\xfe\ng\th\n')
  _raises(path, f'{path}:3', 'UTF-8.*0xff')
  path = _write(tmp_path, b'\xe9t\xe9\tx\n', 'latin1.tsv')
  _raises(path, f'{path}:1', 'UTF-8', files.read_references)


def test_line_without_tab(tmp_path):
  path = _write(tmp_path, 'a\tb\nc d\n')
  _raises(path, f'{path}:2', 'no tab')
  _raises(path, f'{path}:2', 'no tab', files.read_references)


def test_more_than_one_tab_in_pairs(tmp_path):
  path = _write(tmp_path, 'a\tb\nc\td\te\n')
  _raises(path, f'{path}:2', '2 tabs')
  assert files.read_references(path)[1] == ('c', ['d', 'e'])  # fine as references


@pytest.mark.parametrize('line, what', [
    ('\tb', 'empty source'), ('  \tb', 'empty source'), ('a\t', 'empty target'), ('a\t \r', 'empty target'),
])
def test_empty_fields_in_pairs(tmp_path, line, what):
  path = _write(tmp_path, f'x\ty\n{line}\nz\tw\n')
  _raises(path, f'{path}:2', what)


def test_empty_fields_in_references(tmp_path):
  path = _write(tmp_path, 'x\ty\n \tb\tc\n')
  _raises(path, f'{path}:2', 'empty source', files.read_references)
  path = _write(tmp_path, 'x\ty\nz\tb\t\tc\n', 'ref.tsv')
  _raises(path, f'{path}:2', 'empty reference 2', files.read_references)


@pytest.mark.parametrize('data, lineno', [
    ('a\tb\n\nc\td\n', 2),  # blank line in the middle
    ('a\tb\n  \t \nc\td\n', 2),  # whitespace-only line
    ('a\tb\r\n\r\nc\td\r\n', 2),  # CRLF blank line
    ('\na\tb\n', 1),  # blank first line
    ('a\tb\n\n', 2),  # two newlines at the end: an empty last line
    ('\n', 1),
])
def test_empty_lines(tmp_path, data, lineno):
  path = _write(tmp_path, data)
  _raises(path, f'{path}:{lineno}', 'empty line')
  _raises(path, f'{path}:{lineno}', 'empty line', files.read_references)


def test_whole_file_is_validated_before_returning(tmp_path):
  lines = [f'w{i}\tp{i}' for i in range(5000)] + ['broken']
  path = _write(tmp_path, '\n'.join(lines) + '\n')
  _raises(path, f'{path}:5001', 'no tab')


def test_large_file_reads_every_line(tmp_path):
  path = _write(tmp_path, ''.join(f'word{i}\tW ER D {i % 7}\n' for i in range(130_000)))
  pairs = files.read_pairs(path)
  assert len(pairs) == 130_000 and pairs[-1] == Pair('word129999', 'W ER D 2', f'{path}:130000')


# --- scripts/write_splits.py: a task's splits as files, read back as the same data -----------------

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WRITE_SPLITS = os.path.join(ROOT, 'scripts', 'write_splits.py')


def _write_splits(out) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, WRITE_SPLITS, '--config', 'configs/reverse.py', '--output', str(out)],
                        capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_write_splits_round_trip_and_never_overwrites(tmp_path):
  out = tmp_path / 'splits'
  done = _write_splits(out)
  assert done.returncode == 0, done.stderr
  cfg = config_lib.load_config(os.path.join(ROOT, 'configs', 'reverse.py'))
  from_files = config_lib.load_config(os.path.join(ROOT, 'configs', 'reverse.py'))
  for split in sources.SPLITS:
    from_files.data[f'{split}_file'] = str(out / f'{split}.tsv')
  for split in sources.SPLITS:
    original = [(s, t) for s, t, _ in sources.load_pairs(cfg, split)]
    assert original and [(s, t) for s, t, _ in sources.load_pairs(from_files, split)] == original
  before = (out / 'test.tsv').read_bytes()
  again = _write_splits(out)
  assert again.returncode == 2 and again.stderr.count('\n') == 1 and 'train.tsv exists' in again.stderr
  assert (out / 'test.tsv').read_bytes() == before


def test_write_splits_refuses_a_pair_with_a_tab(tmp_path, monkeypatch):
  sys.path.insert(0, os.path.dirname(WRITE_SPLITS))
  import write_splits
  monkeypatch.setattr(sources, 'load_pairs', lambda cfg, split: [('a\tb', 'x', 'src.tsv:3')])
  with pytest.raises(Seq2SeqError, match=r"^src\.tsv:3: a tab or line break in 'a\\tb'"):
    write_splits.write_splits(None, str(tmp_path / 'out'))
  assert not (tmp_path / 'out').exists()
