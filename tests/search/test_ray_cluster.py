"""Scale-out: the Ray engine on a multi-node Ray cluster simulated on this machine.

One cluster for the module (Ray start-up is the cost): a head without CPUs (the driver only)
and two worker nodes with one CPU each, so trials run on both worker nodes. A trial's node
is told by its process's parent, that node's raylet (FakeTrial's log has the PPID).
"""

import collections
import os
import signal
import threading
import time

import pytest

ray = pytest.importorskip("ray", reason="the ray extra (ray[tune]) is not installed")

from ray.cluster_utils import Cluster  # pylint: disable=wrong-import-position

from dpc_tf.search.algorithm import RandomSearch  # pylint: disable=wrong-import-position
from dpc_tf.search.coordinator import Coordinator  # pylint: disable=wrong-import-position
from dpc_tf.search.engines.ray_tune import RayEngine  # pylint: disable=wrong-import-position
from dpc_tf.search.fake_trial import FakeTrial  # pylint: disable=wrong-import-position
from dpc_tf.search.store import Store  # pylint: disable=wrong-import-position
from dpc_tf.search.trial import WorkerPayload  # pylint: disable=wrong-import-position
from dpc_tf.utils import processes  # pylint: disable=wrong-import-position

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAKE_CONFIG = os.path.join(ROOT, "gin", "search", "fake_demo.gin")


@pytest.fixture(scope="module")
def cluster():
  cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
  nodes = [cluster.add_node(num_cpus=1, resources={name: 1}) for name in ("node_a", "node_b")]
  cluster.wait_for_nodes()
  ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
  yield cluster, nodes
  ray.shutdown()
  cluster.shutdown()


def _raylet(node) -> int:
  return node.all_processes["raylet"][0].process.pid


def _log(path):
  """(event, fingerprint, pid, ppid) per line of FakeTrial's log."""
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [(e, fp, int(pid), int(ppid)) for e, fp, pid, ppid in (l.split() for l in f)]


def test_a_node_lost_mid_trial_costs_no_cell(tmp_path, cluster):
  cluster_obj, (node_a, node_b) = cluster
  raylet_a, raylet_b = _raylet(node_a), _raylet(node_b)
  log = str(tmp_path / "trials.log")
  trial_fn = FakeTrial(sleep_s=1.5, log_path=log)
  store = Store(str(tmp_path / "trials.sqlite"))
  coordinator = Coordinator(store, RandomSearch(num_branches=3, budget=6, top_k=3, seed=1),
                            max_attempts=2)
  removed = threading.Event()

  def remove_b_mid_trial():
    """Once both nodes have finished a trial, removes node B as soon as it starts another."""
    deadline = time.time() + 120
    while time.time() < deadline:
      events = _log(log)
      ended = {(fp, pid) for e, fp, pid, _ in events if e == "end"}
      started = [(fp, pid, ppid) for e, fp, pid, ppid in events if e == "start"]
      if {ppid for fp, pid, ppid in started if (fp, pid) in ended} == {raylet_a, raylet_b} \
          and started[-1][2] == raylet_b and started[-1][:2] not in ended:
        cluster_obj.remove_node(node_b)
        removed.set()
        return
      time.sleep(0.02)

  remover = threading.Thread(target=remove_b_mid_trial, daemon=True)
  remover.start()
  try:
    RayEngine(max_concurrent=2).run(coordinator, WorkerPayload(trial_fn), str(tmp_path))
  finally:
    remover.join(timeout=5)
  assert removed.is_set(), "node B was never removed"
  trials = store.trials()
  assert len(trials) == 6 and all(t.status == "done" for t in trials)  # the exact budget
  events = _log(log)
  ends = collections.Counter(fp for e, fp, _, _ in events if e == "end")
  assert sorted(ends) == sorted(t.fingerprint for t in trials)  # no cell lost...
  assert set(ends.values()) == {1}  # ...or repeated
  finished = {(fp, pid) for e, fp, pid, _ in events if e == "end"}
  cut = {fp for e, fp, pid, ppid in events
         if e == "start" and ppid == raylet_b and (fp, pid) not in finished}
  assert cut, "no trial was running on node B when it was removed"
  # the cut runs were retried (on node A), the others ran once
  assert {t.fingerprint: t.attempts for t in trials} == {
      t.fingerprint: 2 if t.fingerprint in cut else 1 for t in trials}


def test_a_killed_driver_reruns_against_the_same_cluster(tmp_path, cluster, commands, count_rows):
  """On what is left of the cluster (node B may be gone): the driver is a client of it.
  Two cells per Tune trial (a pack): a pack in flight at the kill gets its attempts back."""
  cluster_obj, _ = cluster
  search_dir, log = str(tmp_path / "search"), str(tmp_path / "trials.log")
  args = [f"--gin_file={FAKE_CONFIG}", f"--search_dir={search_dir}", "--budget=5",
          "--engine=ray", f"--gin_bindings=ray_engine.address = '{cluster_obj.address}'",
          "--gin_bindings=fake_trial.sleep_s = 0.6",
          "--gin_bindings=fake_trial.cells_per_program = 2",
          f"--gin_bindings=fake_trial.log_path = '{log}'",
          "--gin_bindings=search_pipeline.baselines = []",
          "--gin_bindings=search_pipeline.rerank_top_k = 0",
          "--gin_bindings=search_pipeline.plots = False"]
  store_path = os.path.join(search_dir, "trials.sqlite")
  driver = commands.start("dpc_tf.search", *args)
  deadline = time.time() + 120
  while count_rows(store_path, "done") < 2 and time.time() < deadline:
    assert driver.poll() is None, driver.communicate()[1][-3000:]
    time.sleep(0.05)
  driver.send_signal(signal.SIGKILL)
  driver.communicate()
  with Store(store_path) as store:
    done_at_kill = {t.fingerprint for t in store.trials("done")}
  assert 2 <= len(done_at_kill) < 5
  pids = {pid for _, _, pid, _ in _log(log)}
  deadline = time.time() + 30
  while any(processes.is_alive(p) for p in pids) and time.time() < deadline:
    time.sleep(0.2)
  assert not any(processes.is_alive(p) for p in pids)  # Ray ends a dead driver's trials

  rerun = commands.run("dpc_tf.search", *args, timeout=180)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  with Store(store_path) as store:
    trials = store.trials()
  assert len(trials) == 5 and all(t.status == "done" and t.attempts == 1 for t in trials)
  assert sorted(collections.Counter(t.worker for t in trials).values()) == [1, 2, 2]  # packs
  ends = collections.Counter(fp for e, fp, _, _ in _log(log) if e == "end")
  assert all(ends[fp] == 1 for fp in done_at_kill)  # a finished trial never runs again
  assert sorted(ends) == sorted(t.fingerprint for t in trials)
