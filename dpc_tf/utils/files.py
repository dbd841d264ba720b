"""Atomic file writes: a crash at any instant leaves either the old file or the new one.

Files and folders written here get the permissions of normally created ones (0666 / 0777
less the umask): tempfile's mkstemp/mkdtemp make them private (0600 / 0700), which would
lock every other user of a shared machine out of results, caches and exported models. A
full or read-only disk is one line (DiskFullError), naming the file; the old file is kept.
"""

import errno
import json
import os
import shutil
import tempfile

from dpc_tf.errors import DpcError

DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)


class DiskFullError(DpcError):
  """A write failed because the disk is full, over quota or read-only."""


class NotWritableError(DpcError):
  """An output folder is a file, or cannot be created or written."""


def current_umask() -> int:
  """The process's umask, read without changing it (Linux /proc), else by setting it back."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("Umask:"):
          return int(line.split()[1], 8)
  except (OSError, ValueError, IndexError):
    pass
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


def normal_permissions(path: str) -> None:
  """chmod a file or folder made by tempfile to what open()/mkdir() would have made."""
  mode = 0o777 if os.path.isdir(path) else 0o666
  os.chmod(path, mode & ~current_umask())


def make_temp_dir(parent: str, prefix: str) -> str:
  """A fresh folder in `parent` for a whole-folder atomic write (mkdtemp, made non-private);
  rename it into place when complete, remove_tree it otherwise."""
  os.makedirs(parent, exist_ok=True)
  path = tempfile.mkdtemp(dir=parent, prefix=prefix)
  normal_permissions(path)
  return path


def disk_error(error: OSError, path: str) -> DpcError:
  """The one-line error for a failed write: DiskFullError for a full/read-only disk."""
  if error.errno in DISK_ERRNOS:
    return DiskFullError(f"cannot write {path}: {error.strerror} (free space or choose "
                         "another folder; the previous file is kept)")
  if error.errno in (errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR):
    return NotWritableError(f"cannot write {path}: {error.strerror}")
  return error


def write_bytes_atomic(path: str, data: bytes, durable: bool = True) -> None:
  """Writes via a temporary file in the same folder, fsync, then an atomic rename.

  durable=False skips the fsync, for caches whose files are checked when read and made
  again when damaged (a power cut may leave one empty, never a half-written one in place).
  """
  folder = os.path.dirname(os.path.abspath(path))
  tmp = None
  try:
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix="-" + os.path.basename(path))
    with os.fdopen(fd, "wb") as f:
      os.fchmod(f.fileno(), 0o666 & ~current_umask())
      f.write(data)
      if durable:
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException as e:
    if tmp is not None and os.path.exists(tmp):
      os.unlink(tmp)
    if isinstance(e, OSError):
      error = disk_error(e, path)
      if error is not e:
        raise error from None
    raise


def write_text_atomic(path: str, text: str) -> None:
  write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str, obj, indent: int = 2) -> None:
  write_text_atomic(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


def writable_dir(path: str, flag: str) -> str:
  """Makes sure `path` is (or can be made) a folder this process can write; one line naming
  the flag otherwise. Returns the path."""
  if not path:
    raise NotWritableError(f"--{flag} is required")
  if os.path.exists(path) and not os.path.isdir(path):
    raise NotWritableError(f"--{flag}={path} is a file, not a folder")
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise NotWritableError(f"--{flag}={path} cannot be created: {e.strerror}") from None
  if not os.access(path, os.W_OK | os.X_OK):
    raise NotWritableError(f"--{flag}={path} is not writable")
  return path


def remove_tree(path: str) -> None:
  shutil.rmtree(path, ignore_errors=True)


class JsonError(DpcError):
  """A JSON file (cell, manifest, config) that is not valid UTF-8 JSON of sane depth."""


def _no_duplicates(pairs):
  out = {}
  for key, value in pairs:
    if key in out:
      raise JsonError(f"duplicated key {key!r}")
    out[key] = value
  return out


def loads_json(text, where: str, duplicates_ok: bool = False):
  """json.loads as a user input: non-UTF-8 bytes, invalid JSON, absurd nesting and (unless
  duplicates_ok) duplicated keys are one-line JsonErrors naming `where`."""
  try:
    if isinstance(text, bytes):
      text = text.decode("utf-8")
    hook = None if duplicates_ok else _no_duplicates
    return json.loads(text, object_pairs_hook=hook)
  except UnicodeDecodeError as e:
    raise JsonError(f"{where}: not UTF-8 text (byte {e.start})") from None
  except json.JSONDecodeError as e:
    raise JsonError(f"{where}: invalid JSON ({e.msg} at line {e.lineno} column {e.colno})"
                    ) from None
  except RecursionError:
    raise JsonError(f"{where}: JSON nested too deeply") from None
  except JsonError as e:
    raise JsonError(f"{where}: {e}") from None


def read_json(path: str, what: str = "", duplicates_ok: bool = False):
  """The JSON value in file `path`, or a one-line JsonError naming the file (see loads_json)."""
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise JsonError(f"{what + ' ' if what else ''}{path}: cannot read ({e.strerror})") from None
  return loads_json(data, f"{what + ' ' if what else ''}{path}", duplicates_ok)
