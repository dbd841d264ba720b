"""Search workers keep to their share of the cores, packs run one thread per op, unless the
user or the runtime decided."""

import json
import os
import subprocess
import sys

import pytest

from dpc_tf.search.engines.local import LocalEngine
from dpc_tf.utils import threads

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_PROBE = """
import json, sys
import tensorflow as tf
from dpc_tf.utils import threads
if sys.argv[1] == "started":
  tf.constant(1.0) + 1.0  # the runtime starts with the first op
configure = threads.configure_for_packs if sys.argv[2] == "packs" else threads.configure_for_share
print(json.dumps({"set": configure(),
                  "now": [tf.config.threading.get_intra_op_parallelism_threads(),
                          tf.config.threading.get_inter_op_parallelism_threads()]}))
"""


def _probe(case: str, kind: str = "packs", **env) -> dict:
  clean = {k: v for k, v in os.environ.items()
           if k not in threads.ENV_VARIABLES + (threads.SHARE_VARIABLE,)}
  out = subprocess.run([sys.executable, "-c", _PROBE, case, kind], capture_output=True,
                       text=True, check=True, env={**clean, "PYTHONPATH": ROOT,
                                                   "CUDA_VISIBLE_DEVICES": "", **env})
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_fresh_process_gets_one_thread_per_op_and_twice_the_cores_in_flight():
  result = _probe("fresh")
  assert result["set"] == [1, 2 * threads.cpu_cores()] == result["now"]


def test_a_worker_with_a_share_of_one_core_runs_one_thread_per_op_for_packs_and_alone():
  assert _probe("fresh", "packs", DPC_TF_CPU_SHARE="1") == {"set": [1, 2], "now": [1, 2]}
  assert _probe("fresh", "share", DPC_TF_CPU_SHARE="1") == {"set": [1, 2], "now": [1, 2]}


def test_a_process_with_every_core_keeps_tensorflows_default_for_lone_trials():
  assert _probe("fresh", "share") == {"set": None, "now": [0, 0]}
  cores = str(threads.cpu_cores() + 3)  # more than there are: capped, so every core
  assert _probe("fresh", "share", DPC_TF_CPU_SHARE=cores) == {"set": None, "now": [0, 0]}


def test_the_users_variables_and_a_started_runtime_are_left_alone():
  assert _probe("fresh", TF_NUM_INTEROP_THREADS="3") == {"set": None, "now": [0, 0]}
  assert _probe("fresh", "share", DPC_TF_CPU_SHARE="1",
                TF_NUM_INTRAOP_THREADS="2") == {"set": None, "now": [0, 0]}
  assert _probe("started") == {"set": None, "now": [0, 0]}


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_a_bad_share_is_one_line_naming_the_variable(monkeypatch, value):
  monkeypatch.setenv(threads.SHARE_VARIABLE, value)
  with pytest.raises(ValueError, match=rf"^DPC_TF_CPU_SHARE='{value}': expected a whole "):
    threads.cpu_share()


def test_the_local_engine_gives_each_of_several_cpu_workers_its_share(monkeypatch):
  monkeypatch.delenv(threads.SHARE_VARIABLE, raising=False)
  monkeypatch.setattr(threads, "cpu_cores", lambda: 8)
  assert LocalEngine(workers=1)._env(0) == {}
  assert LocalEngine(workers=2)._env(1) == {"DPC_TF_CPU_SHARE": "4"}
  assert LocalEngine(workers=3)._env(0) == {"DPC_TF_CPU_SHARE": "2"}
  assert LocalEngine(workers=16)._env(0) == {"DPC_TF_CPU_SHARE": "1"}
  assert LocalEngine(workers=2, visible_devices=["0", "1"])._env(1) == {
      "CUDA_VISIBLE_DEVICES": "1"}
  monkeypatch.setenv(threads.SHARE_VARIABLE, "3")  # the user's own (inherited by workers)
  assert LocalEngine(workers=2)._env(0) == {}
