"""Child processes that die with their parent: the one mechanism every subprocess uses.

Two halves, both needed:

- `die_with_parent(parent_pid)`, called first thing in every child (the search's stage
  subprocess and the local engine's workers): Linux `prctl(PR_SET_PDEATHSIG, SIGKILL)`, so
  the kernel kills the child when the driver dies, even by `kill -9`; if the driver died
  before the prctl took effect the child exits at once. Elsewhere a watchdog thread polls
  os.getppid() and exits when the parent is gone.
- the parent ends its children itself when it stops (Ctrl-C, SIGTERM, an error):
  `run_in_child` kills the child in a `finally`, so a SIGTERM'd driver does not wait for a
  whole caching pass, and the child's file locks (flock) are released by the kernel.

PR_SET_PDEATHSIG fires when the *thread* that created the child ends, so children are
started from the driver's main thread (both users do).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import traceback
from typing import Callable, Optional

from dpc_tf.errors import DpcError, one_line
from dpc_tf.utils.files import DISK_ERRNOS

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
  """Makes this process end when `parent_pid` (its parent) ends; call it first in a child."""
  armed = False
  try:
    libc = ctypes.CDLL(None, use_errno=True)
    armed = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) == 0
  except (OSError, AttributeError):
    pass
  if os.getppid() != parent_pid:  # the parent died before the prctl took effect
    os._exit(1)  # pylint: disable=protected-access
  if not armed:  # not Linux: poll
    def watch():
      while True:
        if os.getppid() != parent_pid:
          os._exit(1)  # pylint: disable=protected-access
        threading.Event().wait(1.0)
    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def exec_dies_with_parent() -> Callable[[], None]:
  """preexec_fn for subprocess.Popen/run: the exec'd child is killed when this process
  dies (PR_SET_PDEATHSIG survives execve). Linux only; elsewhere a no-op."""
  parent_pid = os.getpid()

  def preexec() -> None:
    try:
      ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
      return
    if os.getppid() != parent_pid:
      os._exit(1)  # pylint: disable=protected-access
  return preexec


def is_alive(pid: int) -> bool:
  """True while `pid` runs (a zombie counts as gone): for tests and lock owners."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0] != "Z"
  except (FileNotFoundError, ProcessLookupError, IndexError):
    return False
  except OSError:
    try:
      os.kill(pid, 0)
      return True
    except ProcessLookupError:
      return False
    except PermissionError:
      return True


def end_process(process, grace_s: float = 2.0) -> None:
  """SIGTERM, then SIGKILL after grace_s; joins (no zombie is left)."""
  if process.is_alive() and grace_s > 0:
    process.terminate()
    process.join(grace_s)
  if process.is_alive():
    process.kill()
  process.join()


class ChildFailure(RuntimeError):
  """A bug in the child (not a user error): carries the child's traceback as text."""


def _child_main(conn, parent_pid: int, fn: Callable, args: tuple) -> None:
  die_with_parent(parent_pid)
  signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
  signal.signal(signal.SIGTERM, signal.SIG_DFL)
  try:
    reply = ("ok", fn(*args))
  except DpcError as e:
    # gin re-raises errors from configurables as classes made on the fly (not picklable):
    # the one line travels, and the parent raises it as its own error class.
    reply = ("user", one_line(e))
  except OSError as e:
    reply = ("disk", one_line(e)) if e.errno in DISK_ERRNOS else \
        ("bug", "".join(traceback.format_exception(e)))
  except BaseException as e:  # pylint: disable=broad-except
    if _is_disk_full(e):
      reply = ("disk", one_line(e))
    else:
      reply = ("bug", "".join(traceback.format_exception(e)))
  try:
    conn.send(reply)
  except Exception:  # pylint: disable=broad-except  (an unpicklable result)
    conn.send(("bug", "the child's result cannot be sent back:\n" + traceback.format_exc()))
  conn.close()


def _is_disk_full(error: BaseException) -> bool:
  """TensorFlow reports a full disk as an OpError whose text names the errno."""
  text = str(error)
  return "No space left on device" in text or "Disk quota exceeded" in text


def run_in_child(fn: Callable, *args, what: str = "a subprocess",
                 error_class: type = DpcError, poll_s: Optional[float] = None):
  """fn(*args) in a fresh spawned process that dies with this one; returns its result.

  A DpcError (or a full disk) there is raised here as error_class with its one line; any
  other exception there is a bug: ChildFailure with the child's traceback. The child is
  ended whenever this returns or raises (Ctrl-C, SIGTERM, an error), never left running.
  """
  ctx = multiprocessing.get_context("spawn")
  parent_conn, child_conn = ctx.Pipe(duplex=False)
  process = ctx.Process(target=_child_main, args=(child_conn, os.getpid(), fn, args),
                        name=what)
  process.start()
  child_conn.close()
  reply = None
  try:
    while reply is None:
      ready = multiprocessing.connection.wait([parent_conn, process.sentinel], timeout=poll_s)
      if parent_conn in ready or parent_conn.poll():
        try:
          reply = parent_conn.recv()
        except (EOFError, OSError):  # closed without an answer: it is exiting
          reply = None
          process.join(5)
        if reply is not None:
          break
      if not process.is_alive():
        process.join()
        raise error_class(f"{what} died ({describe_exit(process.exitcode)}); its partial "
                          "work is kept, run again to resume")
  finally:
    if reply is not None:
      process.join(10)  # it has answered: let it exit by itself
    end_process(process)
    parent_conn.close()
  kind, body = reply
  if kind == "ok":
    return body
  if kind == "user":
    raise error_class(body)
  if kind == "disk":
    raise error_class(f"{what}: the disk is full or read-only ({body}); free space and run "
                      "again to resume")
  raise ChildFailure(f"{what} failed with a bug; its traceback:\n{body}")


def describe_exit(code: Optional[int]) -> str:
  """'killed by SIGKILL', 'exit code 1', ... for a process's exitcode."""
  if code is None:
    return "unknown exit"
  if code < 0:
    try:
      return f"killed by {signal.Signals(-code).name}"
    except ValueError:
      return f"killed by signal {-code}"
  return f"exit code {code}"
