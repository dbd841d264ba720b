"""Shared fixtures for tests/training: tiny configs, stand-in models (commands and clean_gin
come from tests/conftest.py)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import keras
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SYNTHETIC_GIN = os.path.join(ROOT, "gin", "train", "synthetic.gin")

# gin/train/synthetic.gin shrunk to test size: 65x65 crops of the 129x129 "tiny" synthetic
# config, batch 2, MobileNet-v2 x0.25 without the decoder.
TINY_BINDINGS = [
    "train.dataset = 'dpc_synthetic/tiny'",
    "train.batch_size = 2",
    "train.crop_size = [65, 65]",
    "train.num_steps = 12",
    "train.log_every = 1",
    "train.checkpoint_every = 4",
    "train.summary_every = 4",
    "train.image_summary_every = 4",
    "train.seed = 0",
    "deeplab_model.depth_multiplier = 0.25",
    "deeplab_model.decoder_output_stride = None",
    "evaluate.max_examples = 4",
    "evaluate.batch_size = 2",
]


def gin_args(bindings=TINY_BINDINGS, gin_file: str = SYNTHETIC_GIN) -> list[str]:
  return [f"--gin_file={gin_file}"] + [f"--gin_bindings={b}" for b in bindings]


def free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def tiny_model(num_classes: int = 7) -> keras.Model:
  """A two-conv stand-in for DeepLab (same contract: 0..255 images -> logits at input
  size) with an L2-regularised kernel and a biased "logits" layer, traced in a second."""
  images = keras.Input((None, None, 3), name="images")
  x = keras.layers.Rescaling(1.0 / 255.0)(images)
  x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv",
                          kernel_regularizer=keras.regularizers.L2(1e-3))(x)
  logits = keras.layers.Conv2D(num_classes, 1, name="logits")(x)
  return keras.Model(images, logits, name="tiny")


def run_script(tmp_path, source: str, *args: str, env=None) -> dict:
  """Runs `source` as a fresh Python process (its own TF, e.g. logical devices set before TF
  starts) and returns the JSON it prints on its `RESULT ` line."""
  script = tmp_path / "script.py"
  script.write_text(source)
  proc = subprocess.run([sys.executable, str(script), *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300, check=False)
  lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
  assert proc.returncode == 0 and lines, proc.stderr[-3000:]
  return json.loads(lines[0][len("RESULT "):])


@pytest.fixture(scope="session")
def helpers(commands):
  """The module's helpers as a fixture (test files cannot import conftest by name under
  --import-mode=importlib)."""
  import types  # pylint: disable=import-outside-toplevel
  return types.SimpleNamespace(
      ROOT=ROOT, SYNTHETIC_GIN=SYNTHETIC_GIN, TINY_BINDINGS=list(TINY_BINDINGS),
      subprocess_env=commands.env, run_module=commands.run, gin_args=gin_args,
      free_port=free_port, tiny_model=tiny_model,
      run_script=lambda tmp_path, source, *args: run_script(tmp_path, source, *args,
                                                            env=commands.env()))
