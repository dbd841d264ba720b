"""What the benchmarks that measure in child processes share.

Each such benchmark runs itself as `python -m dpc_tf.benchmarks.NAME SPEC` with one JSON
spec argument and prints one JSON result line, so that every measurement starts from a fresh process (clean memory figures,
no traces or XLA caches left by the one before). Not a benchmark itself: the leading
underscore keeps it out of `python -m dpc_tf.benchmark`'s list.
"""

import json
import os
import resource
import subprocess
import sys

from dpc_tf.utils import processes


def _status_mb(field: str) -> float:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1]) / 1024.0
  return float("nan")


def rss_mb() -> float:
  """The current resident set size in MB."""
  return _status_mb("VmRSS")


def peak_rss_mb() -> float:
  """This process's own peak resident set size in MB: /proc/self/status VmHWM, the high-water
  mark of the address space exec gave it.

  Not getrusage's ru_maxrss: Linux carries it across fork and exec, so a child of a large
  parent reports at least the parent's size (every training configuration read 8476 MB,
  the benchmark parent's peak; a 300 MB parent makes an empty `python -c` child read 317 MB
  against a VmHWM of 11 MB).
  """
  peak = _status_mb("VmHWM")
  if peak != peak:  # no /proc (not Linux): the best figure there is
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
  return peak


def run_child(module: str, spec: dict, timeout_s: int) -> dict:
  """Runs `python -m module spec` in a fresh interpreter (the same dpc_tf: the parent's
  import path is passed on); its last stdout line is the JSON result."""
  package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
         "PYTHONPATH": package_parent + os.pathsep + os.environ.get("PYTHONPATH", "")}
  try:
    result = subprocess.run([sys.executable, "-m", module, json.dumps(spec)],
                            capture_output=True, text=True, timeout=timeout_s, env=env,
                            preexec_fn=processes.exec_dies_with_parent())
  except subprocess.TimeoutExpired:
    return {"error": f"timed out after {timeout_s} s"}
  if result.returncode != 0:
    last = (result.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"exit {result.returncode}: {last}"}
  return json.loads(result.stdout.strip().splitlines()[-1])
