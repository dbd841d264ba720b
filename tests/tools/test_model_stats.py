import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(ROOT, "tools", "model_stats.py")


def run(*args):
  return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True,
                        timeout=300, cwd=ROOT)


def test_json_reproduces_table_1_on_320_channels():
  result = run("--feature_channels=320", "--crop=1025,2049", "--output_stride=16", "--json")
  assert result.returncode == 0, result.stderr
  stats = json.loads(result.stdout.strip().splitlines()[-1])
  assert stats["head"]["branch_params"] == 356_160
  assert stats["head"]["branch_madds"] == 2_986_401_600
  assert set(stats["head"]) == {"trainable_params", "non_trainable_params", "madds",
                                "branch_params", "branch_madds"}
  assert set(stats["total"]) == {"trainable_params", "non_trainable_params", "madds"}


def test_table_and_aspp(tmp_path):
  cell = tmp_path / "cell.json"
  cell.write_text(open(os.path.join(ROOT, "dpc_tf", "cells",
                                    "dense_prediction_cell_branch5_top1_cityscapes.json")).read())
  result = run(f"--cell={cell}", "--feature_channels=2048")
  assert result.returncode == 0, result.stderr
  assert "814,080" in result.stdout and "6.83B" in result.stdout
  aspp = run("--head=aspp", "--json", "--feature_channels=2048")
  stats = json.loads(aspp.stdout.strip().splitlines()[-1])
  # Image pooling + 1x1 + three separable convs, branch kernels only.
  assert stats["head"]["branch_params"] == 2048 * 256 * 2 + 3 * (9 * 2048 + 2048 * 256)


@pytest.mark.parametrize("content, message", [
    ('[{"kernel": 3, "rate": [1, 6], "op": "conv", "input": -1}, '
     '{"kernel": 3, "rate": [5, 15], "op": "conv", "input": 0}]',
     "branch 1: rate r_h=5 is not in {1,3,6,9,12,15,18,21}"),
    ('[{"kernel": 1, "op": "conv", "input": 1}]', "branch 0: input 1 is a forward reference"),
    ("{", "cell is not valid JSON"),
])
def test_bad_cell_exits_non_zero_with_one_line(tmp_path, content, message):
  cell = tmp_path / "bad.json"
  cell.write_text(content)
  result = run(f"--cell={cell}")
  assert result.returncode != 0
  errors = [l for l in result.stderr.splitlines() if l.startswith("model_stats: error:")]
  assert len(errors) == 1 and message in errors[0]
  assert "Traceback" not in result.stderr


def test_bad_flags_are_reported():
  result = run("--crop=12,x")
  assert result.returncode != 0 and "--crop must be integers" in result.stderr
  assert "Traceback" not in result.stderr
