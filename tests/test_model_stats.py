"""`python -m dpc_tf.model_stats`: heads (Table 1), whole models (502.07B), one-line refusals."""

import json
import os

import pytest

from dpc_tf.errors import EXIT_USER_ERROR

PARTS = ("backbone", "head", "decoder", "logits")


def _stats(commands, *args):
  result = commands.run("dpc_tf.model_stats", *args, "--json")
  assert result.returncode == 0, result.stderr
  return json.loads(result.stdout.strip().splitlines()[-1])


def test_json_reproduces_table_1_on_320_channels(commands):
  stats = _stats(commands, "--feature_channels=320", "--crop=1025,2049", "--output_stride=16")
  assert stats["head"]["branch_params"] == 356_160
  assert stats["head"]["branch_madds"] == 2_986_401_600
  assert set(stats["head"]) == {"trainable_params", "non_trainable_params", "madds",
                                "branch_params", "branch_madds"}
  assert set(stats["total"]) == {"trainable_params", "non_trainable_params", "madds"}


def test_table_and_aspp(tmp_path, commands):
  cell = tmp_path / "cell.json"
  cell.write_text(open(os.path.join(commands.root, "dpc_tf", "cells",
                                    "dense_prediction_cell_branch5_top1_cityscapes.json")).read())
  result = commands.run("dpc_tf.model_stats", f"--cell={cell}", "--feature_channels=2048")
  assert result.returncode == 0, result.stderr
  assert "814,080" in result.stdout and "6.83B" in result.stdout
  stats = _stats(commands, "--head=aspp", "--feature_channels=2048")
  # Image pooling + 1x1 + three separable convs, branch kernels only.
  assert stats["head"]["branch_params"] == 2048 * 256 * 2 + 3 * (9 * 2048 + 2048 * 256)


def test_released_xception_71_dpc_decoder_is_within_1_percent_of_502_07b(commands):
  stats = _stats(commands, "--backbone=xception_71", "--decoder_output_stride=4",
                 "--num_classes=19", "--crop=1025,2049", "--output_stride=16")
  assert abs(stats["total"]["madds"] / 502.07e9 - 1) < 0.01
  keys = set(stats["head"])
  for part in PARTS:
    assert set(stats[part]) == keys
  for key in ("trainable_params", "non_trainable_params", "madds"):
    assert stats["total"][key] == sum(stats[p][key] for p in PARTS)
  assert stats["backbone"]["trainable_params"] == 40_289_736
  assert stats["head"]["branch_params"] == 814_080
  assert stats["logits"]["trainable_params"] == 256 * 19 + 19


def test_mobilenet_without_decoder(commands):
  stats = _stats(commands, "--backbone=mobilenet_v2", "--decoder_output_stride=none",
                 "--crop=769", "--num_classes=21", "--head=aspp")
  assert stats["decoder"] == dict.fromkeys(stats["head"], 0)
  assert stats["backbone"]["trainable_params"] == 1_811_712
  assert stats["logits"]["trainable_params"] == 256 * 21 + 21


@pytest.mark.parametrize("content, message", [
    ('[{"kernel": 3, "rate": [1, 6], "op": "conv", "input": -1}, '
     '{"kernel": 3, "rate": [5, 15], "op": "conv", "input": 0}]',
     "branch 1: rate r_h=5 is not in {1,3,6,9,12,15,18,21}"),
    ('[{"kernel": 1, "op": "conv", "input": 1}]', "branch 0: input 1 is a forward reference"),
    ("{", "cell is not valid JSON"),
    (b"\xff\xfe[", "is not UTF-8 text"),
])
def test_bad_cell_is_one_line(tmp_path, commands, content, message):
  cell = tmp_path / "bad.json"
  (cell.write_bytes if isinstance(content, bytes) else cell.write_text)(content)
  result = commands.run("dpc_tf.model_stats", f"--cell={cell}")
  assert result.returncode == EXIT_USER_ERROR
  assert message in commands.error_line(result)


@pytest.mark.parametrize("args, message", [
    (["--crop=12,x"], "dpc_tf.model_stats: error: --crop must be integers H,W, got 12,x"),
    (["--feature_channels=0"], "flag --feature_channels=0: 0 is not a positive integer"),
    (["--num_classes=3"], "dpc_tf.model_stats: error: --num_classes need(s) --backbone"),
    (["--backbone=mobilenet_v2", "--decoder_output_stride=two"],
     "--decoder_output_stride must be 4 or none, got two"),
    (["stray"], "unexpected arguments stray"),
])
def test_bad_flags_are_one_line(commands, args, message):
  result = commands.run("dpc_tf.model_stats", *args)
  assert result.returncode == EXIT_USER_ERROR
  assert message in commands.error_line(result)
