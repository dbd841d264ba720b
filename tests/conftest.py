"""What every test folder shares: running a command the way a user does."""

from __future__ import annotations

import os
import subprocess
import sys

import gin
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Commands:
  """Runs `python -m dpc_tf.<name> ARGS` in a fresh process, as a user would."""
  root = ROOT

  @staticmethod
  def env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env["CUDA_VISIBLE_DEVICES"] = ""
    env.pop("TF_CONFIG", None)
    env.update(extra or {})
    return env

  def run(self, module: str, *args: str, cwd: str = ROOT, timeout: float = 300,
          env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=self.env(env),
                          capture_output=True, text=True, timeout=timeout, check=False)

  def start(self, module: str, *args: str, env: dict | None = None) -> subprocess.Popen:
    """The same, not waited for (several at once; kill tests): stdout/stderr are pipes."""
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=self.env(env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

  def expect_one_line_errors(self, cases: dict) -> None:
    """cases: name -> (module, args, expected start of the error line). Runs them all at
    once; each must exit 2 with exactly that one error line and no traceback."""
    running = {name: self.start(module, *args) for name, (module, args, _) in cases.items()}
    for name, proc in running.items():
      _, stderr = proc.communicate(timeout=300)
      assert proc.returncode == 2, (name, stderr[-2000:])
      assert "Traceback" not in stderr, (name, stderr[-2000:])
      error_lines = [l for l in stderr.splitlines() if ": error: " in l]
      assert len(error_lines) == 1 and error_lines[0].startswith(cases[name][2]), (
          name, error_lines)

  @staticmethod
  def error_line(result: subprocess.CompletedProcess) -> str:
    """The one `PROG: error: ...` line of a refused command (asserting there is exactly one,
    that it is the last line, and that no traceback was printed)."""
    lines = result.stderr.strip().splitlines()
    errors = [l for l in lines if ": error: " in l]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return errors[0]


@pytest.fixture(scope="session")
def commands() -> Commands:
  return Commands()


@pytest.fixture
def clean_gin():
  """Gin state is global: a test that parses starts and ends with a clean config."""
  gin.clear_config()
  yield
  gin.clear_config()
