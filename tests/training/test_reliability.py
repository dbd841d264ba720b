"""Expected failures of the training commands are one line: output folders that are files,
a model_dir another live process is training in, a corrupt SavedModel."""

import subprocess
import sys


def test_expected_failures_are_one_line(tmp_path, helpers, commands):
  a_file = tmp_path / "a_file"
  a_file.write_text("")
  busy = tmp_path / "busy"
  busy.mkdir()
  corrupt = tmp_path / "corrupt_saved_model"
  corrupt.mkdir()
  (corrupt / "saved_model.pb").write_bytes(b"\x08garbage" * 10)
  (tmp_path / "x.png").write_bytes(b"")
  holder = subprocess.Popen(
      [sys.executable, "-c", "import time; from dpc_tf.utils import locks\n"
       f"with locks.folder_lock({str(busy)!r}, '.train.lock'):\n"
       "  print('held', flush=True); time.sleep(300)"],
      cwd=helpers.ROOT, env=helpers.subprocess_env(), stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    cases = {
        "model_dir is a file": (
            "dpc_tf.train", helpers.gin_args() + [f"--model_dir={a_file}"],
            f"dpc_tf.train: error: --model_dir={a_file} is a file, not a folder"),
        "model_dir in use": (
            "dpc_tf.train", helpers.gin_args() + [f"--model_dir={busy}"],
            f"dpc_tf.train: error: {busy} is being trained by another process (pid "
            f"{holder.pid} on "),
        "export_dir is a file": (
            "dpc_tf.export", helpers.gin_args() + [f"--model_dir={tmp_path}",
                                                   f"--export_dir={a_file}"],
            f"dpc_tf.export: error: --export_dir={a_file} is a file, not a folder"),
        "corrupt SavedModel": (
            "dpc_tf.predict", [f"--saved_model={corrupt}", f"--images={tmp_path}/*.png",
                               f"--output_dir={tmp_path}/out"],
            f"dpc_tf.predict: error: SavedModel {corrupt} cannot be loaded"),
        "output_dir is a file": (
            "dpc_tf.predict", [f"--saved_model={corrupt}", f"--images={tmp_path}/*.png",
                               f"--output_dir={a_file}"],
            f"dpc_tf.predict: error: --output_dir={a_file} is a file, not a folder"),
    }
    commands.expect_one_line_errors(cases)
  finally:
    holder.kill()
    holder.wait()
