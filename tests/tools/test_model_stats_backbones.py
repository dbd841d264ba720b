"""tools/model_stats.py on whole models (--backbone): parts, totals, the released 502.07B."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(ROOT, "tools", "model_stats.py")
PARTS = ("backbone", "head", "decoder", "logits")


def run(*args):
  return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True,
                        timeout=300, cwd=ROOT)


def stats_of(result):
  assert result.returncode == 0, result.stderr
  return json.loads(result.stdout.strip().splitlines()[-1])


def test_released_xception_71_dpc_decoder_is_within_1_percent_of_502_07b():
  stats = stats_of(run("--backbone=xception_71", "--decoder_output_stride=4", "--num_classes=19",
                       "--crop=1025,2049", "--output_stride=16", "--json"))
  assert abs(stats["total"]["madds"] / 502.07e9 - 1) < 0.01
  keys = set(stats["head"])
  assert keys == {"trainable_params", "non_trainable_params", "madds", "branch_params",
                  "branch_madds"}
  for part in PARTS:
    assert set(stats[part]) == keys
  for key in ("trainable_params", "non_trainable_params", "madds"):
    assert stats["total"][key] == sum(stats[p][key] for p in PARTS)
  assert stats["backbone"]["trainable_params"] == 40_289_736
  assert stats["head"]["branch_params"] == 814_080
  assert stats["logits"]["trainable_params"] == 256 * 19 + 19


def test_mobilenet_without_decoder_and_misuse():
  stats = stats_of(run("--backbone=mobilenet_v2", "--decoder_output_stride=none", "--crop=769",
                       "--num_classes=21", "--head=aspp", "--json"))
  assert stats["decoder"] == dict.fromkeys(stats["head"], 0)
  assert stats["backbone"]["trainable_params"] == 1_811_712
  assert stats["logits"]["trainable_params"] == 256 * 21 + 21
  result = run("--num_classes=3")
  assert result.returncode != 0 and "Traceback" not in result.stderr
  assert "model_stats: error: --num_classes need(s) --backbone" in result.stderr
