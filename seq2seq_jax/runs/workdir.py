"""What a workdir holds beside its checkpoints: the config and both vocabularies.

  DIR/config.json          the full config of the run
  DIR/vocab_source.json    source vocabulary (and .spm.model for SentencePiece)
  DIR/vocab_target.json
  DIR/run_info.json        package versions and the code's git commit, per start of `train`
  DIR/checkpoints/         orbax checkpoints with checksums (see checkpoint.py)
  DIR/train.lock           held by the run that trains it (see lock.py)
  DIR/metrics.jsonl        one JSON object per logged step / evaluation
  DIR/tensorboard/         TensorBoard event files
"""

import dataclasses
import errno
import importlib.metadata
import json
import os
import shutil
import subprocess
import time
from typing import Any

import ml_collections

from seq2seq_jax import config as config_lib
from seq2seq_jax.data.vocab import Vocab
from seq2seq_jax.errors import CheckpointError, ConfigError, WorkdirError
from seq2seq_jax.model import seq2seq
from seq2seq_jax.runs import checkpoint, integrity


def path(workdir: str, name: str) -> str:
  return os.path.join(workdir, name)


def write_atomic(filename: str, text: str) -> None:
  """Writes via a temporary file and rename, so a crash never leaves half a file."""
  tmp = filename + '.tmp'
  with open(tmp, 'w', encoding='utf-8') as f:
    f.write(text)
  os.replace(tmp, filename)


def save_config(workdir: str, cfg) -> None:
  write_atomic(path(workdir, 'config.json'), cfg.to_json_best_effort(indent=1, sort_keys=True) + '\n')


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The run's config; keys added to the defaults since the run keep their defaults. A config.json that is not
  valid JSON (truncated, damaged) or holds a value of the wrong type is a one-line CheckpointError."""
  filename = path(workdir, 'config.json')
  if not os.path.isfile(filename):
    raise CheckpointError(f'{workdir}: not a workdir (no config.json)')
  try:
    with open(filename, encoding='utf-8') as f:
      saved = json.load(f)
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    where = f':{e.lineno}' if isinstance(e, json.JSONDecodeError) else ''
    raise CheckpointError(f'{filename}{where}: damaged (not valid JSON: {e.msg if where else e.reason})') from None
  if not isinstance(saved, dict):
    raise CheckpointError(f'{filename}: damaged (a JSON object expected)')
  cfg = config_lib.default_config()
  config_lib.check_keys(ml_collections.ConfigDict(saved), cfg, where=filename)
  try:
    _update(cfg, saved)
  except (TypeError, ValueError, KeyError, AttributeError) as e:
    raise CheckpointError(f'{filename}: damaged or edited ({str(e).splitlines()[0] if str(e) else e!r})') from None
  try:
    config_lib.validate(cfg)
  except ConfigError as e:
    raise CheckpointError(f'{filename}: {e}') from None
  return cfg


def _update(cfg, saved: dict) -> None:
  for key, value in saved.items():
    if isinstance(value, dict):
      _update(cfg[key], value)
    else:
      cfg[key] = type(cfg[key])(value) if isinstance(cfg[key], (tuple, list)) else value


def save_vocabs(workdir: str, src_vocab: Vocab, tgt_vocab: Vocab) -> None:
  src_vocab.save(path(workdir, 'vocab_source.json'))
  tgt_vocab.save(path(workdir, 'vocab_target.json'))


def load_vocabs(workdir: str) -> tuple[Vocab, Vocab]:
  return Vocab.load(path(workdir, 'vocab_source.json')), Vocab.load(path(workdir, 'vocab_target.json'))


PACKAGES = ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'tensorflow-datasets', 'grain', 'chex', 'numpy',
            'ml-collections', 'sentencepiece', 'seq2seq_jax')


def git_commit() -> str:
  """The commit of the code being run ('' outside a git checkout), with '+dirty' for uncommitted changes."""
  here = os.path.dirname(os.path.abspath(__file__))
  try:
    commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=here, capture_output=True, text=True, timeout=10)
    if commit.returncode:
      return ''
    dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'], cwd=here,
                           capture_output=True, text=True, timeout=10).stdout.strip()
    return commit.stdout.strip() + ('+dirty' if dirty else '')
  except (OSError, subprocess.SubprocessError):
    return ''


def record_run_info(workdir: str, step: int, warn=print, parent: dict | None = None) -> None:
  """Appends what is running (versions, commit, start step; `parent`: the run whose parameters it started from,
  see parent.py) to DIR/run_info.json. A damaged file (a crash while the disk was full) is kept as
  run_info.json.damaged, with a warning, and a new one is started."""
  filename = path(workdir, 'run_info.json')
  runs = []
  if os.path.isfile(filename):
    try:
      with open(filename, encoding='utf-8') as f:
        runs = json.load(f)
    except ValueError:
      runs = None
    if not isinstance(runs, list):
      os.replace(filename, filename + '.damaged')
      warn(f'warning: {filename} is damaged; kept as {filename}.damaged, a new one is started')
      runs = []
  versions = {}
  for name in PACKAGES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = ''
  runs.append({'started_at_step': step, 'time': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
               'git_commit': git_commit(), 'versions': versions, **({'parent': parent} if parent else {})})
  write_atomic(filename, json.dumps(runs, indent=1) + '\n')


@dataclasses.dataclass(frozen=True)
class Run:
  """One checkpoint of a workdir, opened for inference: config, vocabularies, model and its parameters."""
  workdir: str
  cfg: ml_collections.ConfigDict
  src_vocab: Vocab
  tgt_vocab: Vocab
  model: seq2seq.Seq2Seq
  step: int              # the checkpoint's step
  checkpoint: str        # its directory
  params: Any
  meta: dict             # what was saved with it (validation metrics, vocabulary fingerprints, ...)


def check_writable(workdir: str) -> None:
  """WorkdirError unless `train` can create (or write in) `workdir`: it must not be a file, lie under a file,
  or be on a read-only file system. Checked before any work, and nothing is created here."""
  full = os.path.abspath(workdir)
  if os.path.exists(full) and not os.path.isdir(full):
    raise WorkdirError(f'workdir {workdir}: is a file, not a directory')
  existing = full
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise WorkdirError(f'workdir {workdir}: cannot be created: {existing} is a file')
  if os.statvfs(existing).f_flag & os.ST_RDONLY:
    raise WorkdirError(f'workdir {workdir}: {existing} is on a read-only file system')
  if not os.access(existing, os.W_OK | os.X_OK):
    raise WorkdirError(f'workdir {workdir}: {existing} is not writable (permission denied)')


WRITE_ERRORS = {errno.ENOSPC: 'no space left on its file system', errno.EDQUOT: 'disk quota exceeded',
                errno.EROFS: 'read-only file system', errno.EACCES: 'permission denied',
                errno.EPERM: 'operation not permitted', errno.EIO: 'input/output error'}


def write_error(e: OSError, workdir: str) -> WorkdirError | None:
  """The one-line error of a failed write in the workdir (disk full, read-only, ...); None for other errors."""
  if e.errno not in WRITE_ERRORS:
    return None
  try:
    free = f"; {integrity.human_size(shutil.disk_usage(workdir).free)} free"
  except OSError:
    free = ''
  return WorkdirError(f'{workdir}: {WRITE_ERRORS[e.errno]} writing {e.filename or "a file"}{free}')


def checkpointer(workdir: str, step: str | int = 'best') -> tuple[checkpoint.Checkpointer, int]:
  """A read-only checkpointer of the workdir (or of its averaged/ folder) and the saved step that `step` names:
  'latest', 'best' (by the task's validation metric; the latest when nothing was evaluated), a step number, or
  'averaged' (the newest `average` result)."""
  cfg = load_config(workdir)
  folder = 'averaged' if step == 'averaged' else 'checkpoints'
  ckpt = checkpoint.Checkpointer(workdir, read_only=True, folder=folder)
  return ckpt, ckpt.resolve('latest' if step == 'averaged' else step, *config_lib.task_metric(cfg))


def open_run(workdir: str, step: str | int = 'best') -> Run:
  """The workdir's config, vocabularies, model and the parameters at `step` (see `checkpointer`); reads no
  optimizer state, and verifies the checksums of what it reads. Safe while `train` writes the workdir."""
  cfg = load_config(workdir)
  src_vocab, tgt_vocab = load_vocabs(workdir)
  model = seq2seq.build(cfg.model, len(src_vocab), len(tgt_vocab), cfg.data.shared_vocab)
  for attempt in range(5):  # a run being trained may delete the chosen step while it is read: choose again
    ckpt, chosen = checkpointer(workdir, step)
    try:
      out = ckpt.restore(chosen, seq2seq.abstract_params(model))
      break
    except checkpoint.CheckpointGone:
      if attempt == 4 or str(step).isdigit():
        raise
    finally:
      ckpt.close()
  return Run(workdir=workdir, cfg=cfg, src_vocab=src_vocab, tgt_vocab=tgt_vocab, model=model, step=chosen,
             checkpoint=f'{ckpt.directory}/{chosen}', params=out['params'], meta=out['meta'])
