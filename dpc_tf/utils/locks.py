"""Folder locks: one live process owns a folder (a search_dir, a cache, a model_dir).

A lock is an flock on a lock file inside the folder, so the kernel releases it when the
owner dies (kill -9 included) and a rerun needs no cleanup. The lock file is opened with
O_NOFOLLOW | O_CREAT and never O_TRUNC: a symlink (or a hard link) planted at the lock's
path is refused, never followed, so no other file can be truncated or overwritten through
it. The owner ("pid N on HOST") is written into the lock file only after the lock is held
and only when it is a regular file with a single link.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import socket
import stat
from typing import Callable, Optional

from dpc_tf.errors import DpcError


class LockError(DpcError):
  """A folder is in use by another process, or its lock file is not a plain file."""


def _open_lock_file(path: str, error_class: type) -> int:
  flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
  try:
    fd = os.open(path, flags, 0o666)
  except OSError as e:
    if e.errno == errno.ELOOP:
      raise error_class(f"lock file {path} is a symbolic link; refusing to follow it "
                        "(remove it)") from None
    raise error_class(f"cannot create the lock file {path}: {e.strerror}") from None
  info = os.fstat(fd)
  if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
    os.close(fd)
    raise error_class(f"lock file {path} is not a plain file of its own (a link or a "
                      "special file); refusing to use it (remove it)")
  return fd


@contextlib.contextmanager
def folder_lock(folder: str, name: str = ".lock", what: str = "is in use by another process",
                error_class: type = LockError):
  """Holds FOLDER/NAME exclusively for the `with` body; error_class if another holds it."""
  path = os.path.join(folder, name)
  fd = _open_lock_file(path, error_class)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      owner = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
      raise error_class(f"{folder} {what} ({owner}); wait for it or stop it") from None
    record = f"pid {os.getpid()} on {socket.gethostname()}\n".encode()
    os.ftruncate(fd, 0)  # ours now, and a plain single-link file: checked above
    os.pwrite(fd, record, 0)
    yield path
  finally:
    os.close(fd)  # releases the flock


def locks_folder(folder_of: Callable[..., Optional[str]],
                 what: str = "is in use by another process",
                 name: str = ".lock") -> Callable:
  """Decorator: the function runs holding folder_lock on folder_of(*args, **kwargs).

  folder_of returns the folder, or None for no lock (e.g. a non-chief worker). Re-entrant
  within a process (a nested call for the same folder does not lock again); another live
  process is refused in one line (LockError).
  """
  held: set[str] = set()

  def decorate(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
      folder = folder_of(*args, **kwargs)
      key = os.path.realpath(folder) if folder else None
      if key is None or key in held:
        return fn(*args, **kwargs)
      os.makedirs(folder, exist_ok=True)
      with folder_lock(folder, name, what):
        held.add(key)
        try:
          return fn(*args, **kwargs)
        finally:
          held.discard(key)
    return wrapper
  return decorate
