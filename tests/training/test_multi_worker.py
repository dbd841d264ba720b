"""MultiWorkerMirroredStrategy: two local worker processes on loopback train together."""

import json
import os
import re
import subprocess
import sys

from dpc_tf.training import checkpointing


def test_two_workers_train_and_only_the_chief_keeps_files(tmp_path, helpers):
  model_dir = str(tmp_path / "model")
  cluster = {"worker": [f"127.0.0.1:{helpers.free_port()}", f"127.0.0.1:{helpers.free_port()}"]}
  args = helpers.gin_args(helpers.TINY_BINDINGS + [
      "train.strategy = 'multi_worker_mirrored'", "train.batch_size = 4", "train.num_steps = 4",
      "train.checkpoint_every = 2", "train.image_summary_every = 2"]) + [f"--model_dir={model_dir}"]
  workers, logs = [], []
  for index in range(2):
    tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
    log = open(tmp_path / f"worker{index}.log", "w")
    logs.append(log)
    workers.append(subprocess.Popen(
        [sys.executable, "-m", "dpc_tf.train", *args], cwd=helpers.ROOT, stdout=log,
        stderr=subprocess.STDOUT, env=helpers.subprocess_env({"TF_CONFIG": tf_config})))
  try:
    for worker in workers:
      worker.wait(timeout=400)
  finally:
    for worker in workers:
      if worker.poll() is None:
        worker.kill()
    for log in logs:
      log.close()
  outputs = [open(tmp_path / f"worker{i}.log").read() for i in range(2)]
  losses = []
  for worker, output in zip(workers, outputs):
    assert worker.returncode == 0, output[-3000:]
    # MultiWorkerMirroredStrategy's class is CollectiveAllReduceStrategy.
    assert "CollectiveAllReduceStrategy on 2 replica(s), global batch 4" in output
    assert "Finished at step 4" in output
    losses.append(re.findall(r"step \d/4 loss (\S+)", output))
  assert len(losses[0]) == 4 and losses[0] == losses[1]  # one model, all-reduced
  assert checkpointing.checkpoint_step(checkpointing.latest_checkpoint(model_dir)) == 4
  assert os.path.isfile(os.path.join(model_dir, "operative_config.gin"))
  assert os.listdir(os.path.join(model_dir, "train"))  # the chief's summaries
  assert not os.path.exists(os.path.join(model_dir, ".workers", "worker_1"))  # scratch gone
