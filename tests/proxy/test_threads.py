"""Packed proxy workers run one thread per op unless the user or the runtime decided."""

import json
import os
import subprocess
import sys

from dpc_tf.proxy import threads

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_PROBE = """
import json, sys
import tensorflow as tf
from dpc_tf.proxy import threads
if sys.argv[1] == "started":
  tf.constant(1.0) + 1.0  # the runtime starts with the first op
print(json.dumps({"set": threads.configure_for_packs(),
                  "now": [tf.config.threading.get_intra_op_parallelism_threads(),
                          tf.config.threading.get_inter_op_parallelism_threads()]}))
"""


def _probe(case: str, **env) -> dict:
  clean = {k: v for k, v in os.environ.items() if k not in threads.ENV_VARIABLES}
  out = subprocess.run([sys.executable, "-c", _PROBE, case], capture_output=True, text=True,
                       check=True, env={**clean, "PYTHONPATH": ROOT, "CUDA_VISIBLE_DEVICES": "",
                                        **env})
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_fresh_process_gets_one_thread_per_op_and_twice_the_cores_in_flight():
  result = _probe("fresh")
  assert result["set"] == [1, 2 * threads.cpu_cores()] == result["now"]


def test_the_users_variables_and_a_started_runtime_are_left_alone():
  assert _probe("fresh", TF_NUM_INTEROP_THREADS="3") == {"set": None, "now": [0, 0]}
  assert _probe("started") == {"set": None, "now": [0, 0]}
