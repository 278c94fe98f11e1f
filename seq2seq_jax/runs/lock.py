"""One training run per workdir: DIR/train.lock, taken before `train` writes anything, released when it ends.

The lock file names its holder (JSON): host name, PID, the machine's boot id and PID namespace, the process's
start time (from /proc), when it started, and a random token. While held, a thread touches it every HEARTBEAT_S
seconds (its modification time is the heartbeat).

Taking it: the holder's file is written under a temporary name and hard-linked to DIR/train.lock. `link()` fails
when the name exists, atomically on local file systems and on NFS (the classic NFS-safe lock; where hard links
are not supported, O_CREAT | O_EXCL is used), so of two runs started at once exactly one gets it.

Whether a lock found there still counts (the rule):
- Same machine (same host name, boot id and PID namespace): it counts while its PID runs and that process
  started when the lock says, so a PID reused by another program does not count. The lock of a run killed by
  SIGKILL, the OOM killer or a crash is therefore taken over at once, with a warning.
- Otherwise (another machine, another container, or this machine before a reboot), its PID cannot be checked
  from here: it counts until its heartbeat is older than STALE_S (5 minutes: 15 missed heartbeats, and more than
  NFS's attribute cache of up to a minute), then it is taken over with a warning. The machines' clocks must agree
  to within a minute or so (NTP). To take over at once, delete DIR/train.lock after making sure the run is gone.
Taking over is serialised by a second lock (DIR/train.lock.takeover, same protocol), so that two runs that both
find a dead lock cannot both take it; releasing removes the lock only while it is still ours.

Multi-process runs: only process 0 takes the lock. The processes of one run share the workdir by design (each
would otherwise find the others' lock), and only process 0 writes anything but checkpoints; training.train
broadcasts whether it got the lock, so all processes of a refused run stop with an error.
"""

import datetime
import errno
import json
import os
import socket
import threading
import time
import uuid

from seq2seq_jax.errors import WorkdirError

NAME = 'train.lock'
HEARTBEAT_S = 20.0
STALE_S = 300.0
TAKEOVER_STALE_S = 60.0  # a takeover left half done by a killed process


def _read(path: str) -> str:
  try:
    with open(path, encoding='utf-8') as f:
      return f.read().strip()
  except OSError:
    return ''


def _pid_namespace() -> str:
  try:
    return str(os.stat('/proc/self/ns/pid').st_ino)
  except OSError:
    return ''


def _machine() -> dict:
  return {'host': socket.gethostname(), 'boot_id': _read('/proc/sys/kernel/random/boot_id'),
          'pid_namespace': _pid_namespace()}


def _start_ticks(pid: int) -> str:
  """The process's start time in clock ticks since boot ('' where /proc does not tell)."""
  stat = _read(f'/proc/{pid}/stat')
  fields = stat.rsplit(')', 1)[-1].split()
  return fields[19] if len(fields) > 19 else ''


def _alive(pid: int, start_ticks: str) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    pass  # it exists, run by another user
  now = _start_ticks(pid)
  return not (start_ticks and now and now != start_ticks)


def holder(workdir: str) -> tuple[dict | None, float]:
  """(what the lock file says, seconds since its heartbeat); (None, 0) when there is no lock. A file that is
  not JSON (damaged) reads as {}: it counts until stale."""
  path = os.path.join(workdir, NAME)
  try:
    age = time.time() - os.stat(path).st_mtime
  except FileNotFoundError:
    return None, 0.0
  text = _read(path)
  try:
    found = json.loads(text)
  except ValueError:
    found = {}
  return (found if isinstance(found, dict) else {}), age


def _why_stale(found: dict, age: float) -> str | None:
  """Why the lock no longer counts, or None while it does (see the module's rule)."""
  here = _machine()
  if found and all(found.get(k) == v for k, v in here.items()):
    if _alive(int(found.get('pid', -1)), str(found.get('start_ticks', ''))):
      return None
    return f'its process {found.get("pid")} on this machine is no longer running'
  if age > STALE_S:
    return f'its heartbeat is {age:.0f} s old (over {STALE_S:.0f} s)'
  return None


def describe(found: dict) -> str:
  if not found:
    return 'an unknown process (the lock file is not readable)'
  return f'PID {found.get("pid")} on {found.get("host")} (started {found.get("started")})'


def _held_error(workdir: str, found: dict, age: float) -> WorkdirError:
  here = bool(found) and all(found.get(k) == v for k, v in _machine().items())
  rule = ('' if here else f'; it is taken over once its heartbeat is {STALE_S:.0f} s old, or delete the file '
                          f'if that run is gone')
  return WorkdirError(f'{workdir} is being trained by {describe(found)}: lock {os.path.join(workdir, NAME)}, '
                      f'last heartbeat {age:.0f} s ago{rule}; wait for it to end or use another --workdir')


def check_free(workdir: str) -> None:
  """Raises WorkdirError when a run that counts holds the workdir's lock (a quick look, taking nothing)."""
  found, age = holder(workdir)
  if found is not None and _why_stale(found, age) is None:
    raise _held_error(workdir, found, age)


def _create(path: str, content: dict) -> bool:
  """Creates `path` holding `content` unless it exists; True when this call created it."""
  tmp = f'{path}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp'
  with open(tmp, 'w', encoding='utf-8') as f:
    json.dump(content, f)
    f.flush()
    os.fsync(f.fileno())
  try:
    os.link(tmp, path)
    return True
  except FileExistsError:
    return False
  except OSError as e:
    if os.stat(tmp).st_nlink == 2:  # NFS: the link was made but its reply was lost
      return True
    if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
      raise
    try:  # a file system without hard links
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      return False
    with os.fdopen(fd, 'w', encoding='utf-8') as f:
      json.dump(content, f)
    return True
  finally:
    os.unlink(tmp)


class WorkdirLock:
  """The lock of one workdir, held by this process between `acquire` and `release`."""

  def __init__(self, workdir: str, warn=print):
    self.workdir, self.path, self.warn = workdir, os.path.join(workdir, NAME), warn
    self.token = uuid.uuid4().hex
    self.lost = False  # set by the heartbeat when the lock is no longer ours (deleted or taken over)
    self._stop = threading.Event()
    self._thread = None

  def _content(self) -> dict:
    return {**_machine(), 'pid': os.getpid(), 'start_ticks': _start_ticks(os.getpid()), 'token': self.token,
            'started': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')}

  def acquire(self) -> None:
    """Takes the lock, or takes over one that no longer counts (with a warning); WorkdirError when held."""
    for _ in range(5):
      if _create(self.path, self._content()):
        return self._start()
      found, age = holder(self.workdir)
      if found is None:
        continue  # released meanwhile
      why = _why_stale(found, age)
      if why is None:
        raise _held_error(self.workdir, found, age)
      if self._take_over(found, why):
        return self._start()
      time.sleep(0.2)
    raise WorkdirError(f'{self.path}: could not take the lock: other processes keep taking it')

  def _take_over(self, stale: dict, why: str) -> bool:
    mutex = self.path + '.takeover'
    if not _create(mutex, {'token': self.token}):
      try:
        if time.time() - os.stat(mutex).st_mtime > TAKEOVER_STALE_S:
          os.unlink(mutex)
      except FileNotFoundError:
        pass
      return False
    try:
      if holder(self.workdir)[0] != stale:
        return False  # it changed hands meanwhile: look again
      os.unlink(self.path)
      if not _create(self.path, self._content()):
        return False
    finally:
      try:
        os.unlink(mutex)
      except FileNotFoundError:
        pass
    self.warn(f'warning: took over the lock {self.path} from {describe(stale)}: {why}')
    return True

  def _start(self) -> None:
    self._thread = threading.Thread(target=self._beat, name='workdir-lock-heartbeat', daemon=True)
    self._thread.start()

  def _beat(self) -> None:
    while not self._stop.wait(HEARTBEAT_S):
      found, _ = holder(self.workdir)
      if found is None or found.get('token') != self.token:
        self.lost = True
        return
      try:
        os.utime(self.path)
      except OSError:
        pass  # a passing file-system error: the next heartbeat tries again

  def release(self) -> None:
    """Stops the heartbeat and removes the lock if it is still ours."""
    self._stop.set()
    if self._thread is not None:
      self._thread.join(timeout=5)
    found, _ = holder(self.workdir)
    if found is not None and found.get('token') == self.token:
      try:
        os.unlink(self.path)
      except FileNotFoundError:
        pass
