"""Children die with their parent (dpc_tf/utils/processes.py); the search's stages and
workers are tested end to end in tests/search/test_child_processes.py."""

import os
import subprocess
import sys
import time

from dpc_tf.utils import processes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_an_exec_child_dies_with_its_parent(tmp_path):
  """subprocess children (benchmarks) get PR_SET_PDEATHSIG too: kill -9 the parent."""
  pid_file = tmp_path / "child.pid"
  parent = subprocess.Popen(
      [sys.executable, "-c", "import subprocess, sys, time\n"
       "from dpc_tf.utils import processes\n"
       f"child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], "
       "preexec_fn=processes.exec_dies_with_parent())\n"
       f"open({str(pid_file)!r}, 'w').write(str(child.pid)); time.sleep(120)"],
      cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
  deadline = time.time() + 30
  while not (pid_file.exists() and pid_file.read_text()) and time.time() < deadline:
    time.sleep(0.05)
  child = int(pid_file.read_text())
  assert processes.is_alive(child)
  parent.kill()
  parent.wait()
  deadline = time.time() + 10
  while processes.is_alive(child) and time.time() < deadline:
    time.sleep(0.05)
  assert not processes.is_alive(child)
