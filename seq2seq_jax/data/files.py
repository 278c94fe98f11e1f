"""Plain-text data files: `SOURCE<TAB>TARGET` pairs and `SOURCE<TAB>REF1[<TAB>REF2 ...]` references.

Files are UTF-8, one record per line. CRLF line ends and a missing final newline are accepted, and each
field is stripped of surrounding whitespace. The whole file is validated before anything is returned, so a
malformed file fails a run before it starts, with a `DataError` naming `path:line`.
"""

from __future__ import annotations

import codecs
import dataclasses
import os
from collections.abc import Iterator

from seq2seq_jax.errors import DataError


@dataclasses.dataclass(frozen=True, slots=True)
class Pair:
  """One `SOURCE<TAB>TARGET` line; `where` is `path:line` (1-based) for later error messages."""

  source: str
  target: str
  where: str


def decode_utf8(data: bytes, where: str, first_line: int = 1) -> str:
  """`data` as UTF-8 text, a leading BOM dropped; DataError naming `where:line` and the byte otherwise (the
  first line of `data` being line `first_line`)."""
  if data.startswith(codecs.BOM_UTF8):
    data = data[len(codecs.BOM_UTF8):]
  try:
    return data.decode("utf-8")
  except UnicodeDecodeError as e:
    lineno = data.count(b"\n", 0, e.start) + first_line
    column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
    bad = f"byte 0x{data[e.start]:02x} at column {column}, byte offset {e.start} of the input"
    raise DataError(f"{where}:{lineno}: not valid UTF-8 ({bad})") from None


def split_lines(text: str) -> list[str]:
  r"""The lines of `text`: a line ends at "\n" (a "\r" before it is dropped), and only there. U+2028, U+0085,
  \v, \f and \x1c-\x1e are characters inside a line (`str.splitlines()` would end lines there too, and one
  input line would become several). A final "\n" ends the last line; it does not start an empty one."""
  lines = text.split("\n")
  if lines[-1] == "":
    lines.pop()
  return [line[:-1] if line.endswith("\r") else line for line in lines]


def read_text(path: str, allow_empty: bool = False) -> str:
  """The file decoded as UTF-8 (a leading BOM dropped); DataError if missing, a directory, unreadable, not
  UTF-8 or (unless `allow_empty`) empty, where a file holding nothing but a BOM counts as empty."""
  if os.path.isdir(path):
    raise DataError(f"{path}: is a directory, expected a text file")
  try:
    with open(path, "rb") as f:
      data = f.read()
  except FileNotFoundError:
    raise DataError(f"{path}: file not found") from None
  except OSError as e:
    raise DataError(f"{path}: cannot read file ({e.strerror or e})") from None
  text = decode_utf8(data, path)
  if not text and not allow_empty:
    raise DataError(f"{path}: empty file" + (" (nothing but a byte-order mark)" if data else ""))
  return text


def _records(path: str) -> Iterator[tuple[str, list[str]]]:
  """(`path:line`, stripped tab-separated fields) of each line; DataError for empty or tab-less lines."""
  for lineno, line in enumerate(split_lines(read_text(path)), 1):
    if not line.strip():
      raise DataError(f"{path}:{lineno}: empty line")
    fields = line.split("\t")
    if len(fields) < 2:
      raise DataError(f"{path}:{lineno}: no tab; expected SOURCE<TAB>TARGET")
    yield f"{path}:{lineno}", [field.strip() for field in fields]


def read_pairs(path: str | os.PathLike) -> list[Pair]:
  """All `SOURCE<TAB>TARGET` lines of `path`, in file order."""
  path = os.fspath(path)
  pairs = []
  for where, fields in _records(path):
    if len(fields) > 2:
      raise DataError(f"{where}: {len(fields) - 1} tabs; expected exactly one (SOURCE<TAB>TARGET)")
    source, target = fields
    if not source:
      raise DataError(f"{where}: empty source")
    if not target:
      raise DataError(f"{where}: empty target")
    pairs.append(Pair(source, target, where))
  return pairs


def read_references(path: str | os.PathLike) -> list[tuple[str, list[str]]]:
  """(source, [reference, ...]) of each `SOURCE<TAB>REF1[<TAB>REF2 ...]` line of `path`, in file order."""
  path = os.fspath(path)
  records = []
  for where, (source, *refs) in _records(path):
    if not source:
      raise DataError(f"{where}: empty source")
    for k, ref in enumerate(refs, 1):
      if not ref:
        raise DataError(f"{where}: empty reference {k}")
    records.append((source, refs))
  return records
