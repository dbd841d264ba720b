"""The local engine hands cells_per_program trials to one worker call: each its own row,
retried, failed and resumed alone."""

import collections
import os
import signal
import subprocess
import sys
import time

from dpc_tf.search.algorithm import History, RandomSearch
from dpc_tf.search.coordinator import Coordinator
from dpc_tf.search.engines.local import LocalEngine
from dpc_tf.search.fake_trial import FakeTrial
from dpc_tf.search.store import Store
from dpc_tf.search.trial import WorkerPayload

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAKE_CONFIG = os.path.join(ROOT, "gin", "search", "fake_demo.gin")


def test_packs_fail_and_crash_cell_by_cell(tmp_path):
  first = RandomSearch(num_branches=4, seed=2).suggest(0, History(set(), [])).cell
  log = str(tmp_path / "calls.log")
  trial_fn = FakeTrial(cells_per_program=3, crash_once_cells=(first.fingerprint(),),
                       marker_dir=str(tmp_path), fail_fraction=0.3, log_path=log)
  store = Store(str(tmp_path / "trials.sqlite"))
  coordinator = Coordinator(store, RandomSearch(num_branches=4, budget=9, top_k=3, seed=2),
                            max_attempts=2, max_consecutive_failures=0)
  LocalEngine(workers=1, poll_s=0.2).run(coordinator, WorkerPayload(trial_fn))
  trials = store.trials()
  assert len(trials) == 9 and {t.status for t in trials} <= {"done", "failed"}
  failed = [t for t in trials if t.status == "failed"]
  assert failed and all(trial_fn.always_fails(t.cell) and t.attempts == 2 for t in failed)
  done = [t for t in trials if t.status == "done"]
  assert done and all(not trial_fn.always_fails(t.cell) for t in done)
  # Trial 0 crashed its worker: its pack-mates lost that attempt with it and ran again.
  with open(log) as f:
    starts = collections.Counter(line.split()[1] for line in f if line.startswith("start"))
  assert trials[0].cell_text == first.text and trials[0].attempts == 2
  assert all(t.attempts == (2 if t.id in (0, 1, 2) or t.status == "failed" else 1)
             for t in trials)
  assert starts[trials[3].fingerprint] == 1 and starts[trials[0].fingerprint] == 2
  # The worker ran 3 trials per call: one process per pack until the crash, then one more.
  with open(log) as f:
    pids = [line.split()[2] for line in f]
  assert len(set(pids)) == 2


def test_sigkill_with_a_pack_in_flight_then_resume(tmp_path, count_rows):
  search_dir, log = str(tmp_path / "search"), str(tmp_path / "evaluations.log")
  args = [sys.executable, "-m", "dpc_tf.search", f"--gin_file={FAKE_CONFIG}",
          f"--search_dir={search_dir}", "--budget=9", "--workers=1",
          "--gin_bindings=fake_trial.sleep_s = 0.2", f"--gin_bindings=fake_trial.log_path = '{log}'",
          "--gin_bindings=fake_trial.cells_per_program = 3",
          "--gin_bindings=search_pipeline.rerank_top_k = 0",
          "--gin_bindings=search_pipeline.plots = False"]
  driver = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  store_path = os.path.join(search_dir, "trials.sqlite")
  deadline = time.time() + 60
  while not (count_rows(store_path, "done") >= 2 and count_rows(store_path, "running") == 3) \
      and time.time() < deadline:
    time.sleep(0.02)
  driver.send_signal(signal.SIGKILL)
  driver.wait()
  with Store(store_path) as store:
    done_at_kill = {t.fingerprint for t in store.trials("done")}
    running_at_kill = {t.fingerprint for t in store.trials("running")}
  assert len(running_at_kill) == 3  # a whole pack was in flight
  resumed = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  with Store(store_path) as store:
    trials = store.trials()
  assert len([t for t in trials if not t.is_baseline]) == 9
  assert all(t.status == "done" for t in trials)
  with open(log) as f:
    ends = collections.Counter(line.split()[1] for line in f if line.startswith("end"))
  assert all(ends[fp] == 1 for fp in done_at_kill)  # nothing recorded runs again
  assert all(ends[t.fingerprint] >= 1 for t in trials)  # nothing is lost
  # the kill gave the pack its attempts back (a driver stop is never the cells' fault)
  assert all(t.attempts == 1 for t in trials)


def test_a_pack_time_is_charged_by_what_each_record_claims():
  from dpc_tf.search import trial  # pylint: disable=import-outside-toplevel

  class Pack:  # a trial function whose run_pack sleeps, then claims 1:3 of its time
    cells_per_program = 2

    def run_pack(self, subjects):
      time.sleep(0.2)
      return [{"miou": 0.5, "seconds": 1.0}, {"miou": 0.6, "seconds": 3.0}]

  cells = [RandomSearch(num_branches=2, seed=s).suggest(0, History(set(), [])).cell
           for s in (0, 1)]
  cells = [c.to_json_string() for c in cells]
  (_, _, first), (_, _, second) = trial.execute_pack(WorkerPayload(Pack()), cells)
  assert second == 3 * first and first + second >= 0.2
  # A record that cannot say (an error, no seconds): equal shares.
  assert trial._time_shares([{"seconds": 2.0}, ValueError("x")]) == [0.5, 0.5]
  assert trial._time_shares([{"seconds": 0.0}, {"seconds": 0.0}]) == [0.5, 0.5]
