"""The local engine: trials in worker subprocesses on this machine, no extra services.

Each of `workers` slots is a long-lived subprocess (spawned, so it never inherits the driver's
TensorFlow state or file locks) that receives the trial function once and then one cell at a
time over a pipe. A trial that raises reports the error; a worker that dies (segfault, OOM
killer, os._exit) or runs past `trial_timeout_s` is replaced by a fresh process and its
trial counts one failed attempt; the driver itself never runs trial code, so it survives all
of these. Workers die with the driver (Linux PR_SET_PDEATHSIG), so a killed driver leaves no
orphan burning a GPU (dpc_tf.utils.processes, the mechanism every child uses). With
several GPUs, `visible_devices` pins worker i to visible_devices[i % n] through
CUDA_VISIBLE_DEVICES; on CPU, several workers each get cores // workers (DPC_TF_CPU_SHARE,
dpc_tf.utils.threads) instead of all of them.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import socket
import time
from typing import Optional, Sequence

from absl import logging

from dpc_tf.search import checks, trial as trial_lib
from dpc_tf.search.coordinator import Coordinator
from dpc_tf.search.errors import SearchError
from dpc_tf.search.store import Trial
from dpc_tf.utils import processes, threads

def _worker_main(conn, payload_bytes: bytes, env: dict, parent_pid: int) -> None:
  """Worker loop: ('run', [(id, cell_json), ...]) -> one ('done', id, record, s) or
  ('error', id, text, s) per trial. Several trials in one message are one pack: the trial
  function trains them side by side (trial.execute_pack)."""
  signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
  processes.die_with_parent(parent_pid)
  os.environ.update(env)
  try:
    payload, load_error = pickle.loads(payload_bytes), None
  except Exception as e:  # pylint: disable=broad-except
    payload, load_error = None, "cannot load the trial function in the worker: " + \
        trial_lib.describe_exception(e)
  while True:
    try:
      message = conn.recv()
    except (EOFError, OSError):
      return
    if message[0] == "stop":
      return
    _, batch = message
    if load_error:
      for trial_id, _ in batch:
        conn.send(("error", trial_id, load_error, None))
      continue
    results = trial_lib.execute_pack(payload, [cell_json for _, cell_json in batch])
    for (trial_id, _), (kind, body, seconds) in zip(batch, results):
      reply = (kind, trial_id, body, seconds)
      try:
        pickle.dumps(reply)  # fail here, as this trial's error, if the record cannot travel
      except Exception as e:  # pylint: disable=broad-except
        reply = ("error", trial_id, trial_lib.describe_exception(e), seconds)
      conn.send(reply)


class _Worker:
  """One subprocess slot and the trials (one, or a pack) it is running."""

  def __init__(self, ctx, name: str, payload_bytes: bytes, env: dict):
    self.name = name
    self.conn, child = ctx.Pipe()
    self.process = ctx.Process(target=_worker_main, name=name,
                               args=(child, payload_bytes, env, os.getpid()))
    self.process.start()
    child.close()
    self.trials: dict[int, Trial] = {}
    self.dispatched = 0.0
    self.timeout_s = 0.0
    self.calls_run = 0

  @property
  def busy(self) -> bool:
    return bool(self.trials)

  def submit(self, trials: Sequence[Trial], timeout_s: float) -> None:
    self.trials = {t.id: t for t in trials}
    self.dispatched, self.timeout_s = time.monotonic(), timeout_s * len(trials)
    self.conn.send(("run", [(t.id, t.cell_json) for t in trials]))

  def stop(self, grace_s: float = 2.0) -> None:
    """Idle: asks it to exit, then kills it after grace_s. Busy or grace_s 0: kills it."""
    if self.process.is_alive() and not self.trials and grace_s > 0:
      try:
        self.conn.send(("stop",))
      except (BrokenPipeError, OSError):
        pass
      self.process.join(grace_s)
    if self.process.is_alive():
      self.process.kill()
      self.process.join()
    self.conn.close()


class LocalEngine:
  """Runs a search's trials in `workers` subprocesses on this machine."""
  name = "local"

  def __init__(self, workers: int = 1, trial_timeout_s: float = 0.0,
               trials_per_worker: int = 0, visible_devices: Sequence[str] = (),
               poll_s: float = 1.0):
    if not isinstance(workers, int) or workers < 1:
      raise SearchError(f"the local engine needs workers >= 1, got {workers!r}")
    self.workers = workers
    self.trial_timeout_s = trial_timeout_s
    self.trials_per_worker = trials_per_worker
    self.visible_devices = tuple(str(d) for d in visible_devices)
    self.poll_s = poll_s

  def _env(self, slot: int) -> dict:
    """A worker's environment: its GPU, or on CPU its share of the cores when several
    workers share them (utils/threads.py: 4 threads on 2 cores kept preempting each other)."""
    if self.visible_devices:
      return {"CUDA_VISIBLE_DEVICES": self.visible_devices[slot % len(self.visible_devices)]}
    if self.workers > 1 and not os.environ.get(threads.SHARE_VARIABLE):
      return {threads.SHARE_VARIABLE: str(threads.share_for(self.workers))}
    return {}

  def close(self) -> None:
    """Nothing outlives run(): workers are stopped when it returns."""

  def run(self, coordinator: Coordinator, payload: trial_lib.WorkerPayload,
          work_dir: str = "") -> None:
    del work_dir  # nothing to keep: the store has it all
    try:
      payload_bytes = pickle.dumps(payload)
    except Exception as e:  # pylint: disable=broad-except
      raise SearchError(f"the trial function cannot be pickled for the worker processes ({e}); "
                        "use a module-level function, a functools.partial of one, or an "
                        "instance of a module-level class") from None
    ctx = multiprocessing.get_context("spawn")
    host = socket.gethostname()
    pack = trial_lib.pack_size(payload.trial_fn)
    slots: list[Optional[_Worker]] = [None] * self.workers
    try:
      while not coordinator.finished():
        for i in range(self.workers):
          if slots[i] is not None and slots[i].busy:
            continue
          trials = coordinator.next_trials(f"{host}/local-{i}", pack)
          if not trials:
            break
          try:
            if slots[i] is None:
              slots[i] = _Worker(ctx, f"{host}/local-{i}", payload_bytes, self._env(i))
            slots[i].submit(trials, self.trial_timeout_s)
          except OSError as e:  # the idle worker had died, or no process could start
            for trial in trials:
              coordinator.release(trial.id)
            if slots[i] is not None:
              slots[i].trials = {}
              slots[i].stop()
              slots[i] = None
            logging.warning("local worker %d could not take a trial (%s); restarting it", i, e)
        busy = [w for w in slots if w is not None and w.busy]
        if not busy:
          if coordinator.finished():
            break
          raise SearchError("internal error: the search has nothing running and nothing to run")
        multiprocessing.connection.wait([w.conn for w in busy] + [w.process.sentinel for w in busy],
                                        timeout=self.poll_s)
        for i, worker in enumerate(slots):
          if worker is not None and worker.busy and not self._collect(worker, coordinator):
            worker.stop()
            slots[i] = None
    finally:
      # Every worker is stopped even if giving a trial back fails (a full disk under the
      # store): a worker left running would keep the driver waiting for it at exit.
      released = []
      for worker in slots:
        if worker is None:
          continue
        trials, worker.trials = list(worker.trials), {}
        worker.stop(grace_s=0 if trials else 2.0)
        released += trials  # stopped by us (Ctrl-C, SIGTERM, repeated failures)
      for trial_id in released:
        try:
          coordinator.release(trial_id)
        except Exception as e:  # pylint: disable=broad-except
          logging.warning("could not give trial %d back (%s); the next run requeues it",
                          trial_id, e)

  def _collect(self, worker: _Worker, coordinator: Coordinator) -> bool:
    """Takes the worker's results if any; False when the worker must be replaced."""
    while worker.trials and worker.conn.poll():
      try:
        kind, trial_id, body, seconds = worker.conn.recv()
      except (EOFError, OSError):
        break
      if worker.trials.pop(trial_id, None) is None:
        continue
      coordinator.record(trial_id, kind, body, seconds)
      if not worker.trials:
        worker.calls_run += 1
        return not (self.trials_per_worker and worker.calls_run >= self.trials_per_worker)
    if not worker.trials:
      return True
    if not worker.process.is_alive():
      worker.process.join()
      trials, worker.trials = list(worker.trials), {}
      error = (f"the worker process died ({processes.describe_exit(worker.process.exitcode)}) while "
               f"running the trial")
      logging.warning("%s: %s", worker.name, error)
      for trial_id in trials:
        coordinator.fail(trial_id, error)
      return False
    elapsed = time.monotonic() - worker.dispatched
    if worker.timeout_s and elapsed > worker.timeout_s:
      worker.process.kill()
      worker.process.join()
      trials, worker.trials = list(worker.trials), {}
      for trial_id in trials:
        coordinator.fail(trial_id, f"timed out after {elapsed:.0f} s (trial_timeout_s="
                                   f"{self.trial_timeout_s:g} per trial, {len(trials)} in the "
                                   f"call)", elapsed)
      return False
    return True


@checks.configurable("local_engine")
def make_local_engine(workers: int = 1, trial_timeout_s: float = 0.0,
                      trials_per_worker: int = 0,
                      visible_devices: Sequence[str] = ()) -> LocalEngine:
  """The local engine as configured. trials_per_worker > 0 recycles workers (leaky trials)
  after that many worker calls (a call is one trial, or one pack of cells_per_program)."""
  return LocalEngine(workers=workers, trial_timeout_s=trial_timeout_s,
                     trials_per_worker=trials_per_worker, visible_devices=visible_devices)
