"""Kill -9 a training process after a checkpoint; the restarted run resumes from it."""

import os
import re
import signal
import subprocess
import sys
import time

from dpc_tf.training import checkpointing


def test_sigkill_then_resume_loses_no_checkpoint(tmp_path, helpers):
  model_dir = str(tmp_path / "model")
  args = helpers.gin_args(helpers.TINY_BINDINGS + [
      "train.num_steps = 60", "train.checkpoint_every = 2", "train.keep_checkpoints = 3",
      "train.image_summary_every = 0"]) + [f"--model_dir={model_dir}"]
  log = open(tmp_path / "first.log", "w")
  first = subprocess.Popen([sys.executable, "-m", "dpc_tf.train", *args], cwd=helpers.ROOT,
                           env=helpers.subprocess_env(), stdout=log, stderr=subprocess.STDOUT)
  deadline = time.monotonic() + 240
  try:
    while True:
      path = checkpointing.latest_checkpoint(model_dir)
      if path and checkpointing.checkpoint_step(path) >= 4:
        break
      assert first.poll() is None, open(tmp_path / "first.log").read()[-3000:]
      assert time.monotonic() < deadline, "no checkpoint within 240 s"
      time.sleep(0.1)
  finally:
    first.send_signal(signal.SIGKILL)
    first.wait()
    log.close()
  assert first.returncode == -signal.SIGKILL
  kept = checkpointing.latest_checkpoint(model_dir)
  killed_at = checkpointing.checkpoint_step(kept)
  assert 4 <= killed_at < 60

  second = helpers.run_module("dpc_tf.train", *args, timeout=300)
  assert second.returncode == 0, second.stderr[-3000:]
  output = second.stdout + second.stderr
  assert f"Resuming from step {killed_at} ({kept})" in output
  steps = [int(s) for s in re.findall(r"step (\d+)/60 loss", output)]
  assert steps[0] == killed_at + 1 and steps[-1] == 60
  assert "Finished at step 60" in output
  final = checkpointing.latest_checkpoint(model_dir)
  assert checkpointing.checkpoint_step(final) == 60
  # Retention keeps the newest three; all are complete and readable.
  indexes = sorted(f for f in os.listdir(model_dir) if f.endswith(".index"))
  assert indexes == ["ckpt-56.index", "ckpt-58.index", "ckpt-60.index"]
