"""run_proxy_trial: the score record, costs, determinism, feeding modes, stopping, errors."""

import concurrent.futures
import functools
import multiprocessing
import shutil

import numpy as np
import pytest

from dpc_tf.data import metrics
from dpc_tf.errors import DpcError
from dpc_tf.proxy import CorruptShardError, FeatureCache, head_state, run_proxy_trial
from dpc_tf.proxy.caching import cache_role
from dpc_tf.training.errors import BadLabelError, NonFiniteLossError

FAST = dict(steps=6, batch_size=4, filters=16, bn_momentum=0.9)
def test_record_has_the_contract_keys_and_the_paper_cost_convention(tiny_cache):
  record = run_proxy_trial("F:conv1x1 0:sep3x3@1x6", tiny_cache, **FAST)
  for key in ("miou", "branch_params", "branch_madds", "steps", "seconds", "final_loss",
              "head_params", "head_madds", "params", "madds", "class_iou", "cell"):
    assert key in record, key
  # Branch kernels only, at the 9x9 eval feature map: 1x1 conv 80->16, then depthwise 3x3
  # on 16 channels + pointwise 16->16.
  assert record["branch_params"] == 80 * 16 + (9 * 16 + 16 * 16)
  assert record["branch_madds"] == record["branch_params"] * 9 * 9
  assert record["steps"] == 6 and record["in_memory"] and not record["stopped_early"]
  assert 0.0 <= record["miou"] <= 1.0 and len(record["class_iou"]) == 7
  assert record["cell_text"] == "F:conv1x1 0:sep3x3@1x6" and record["eval_examples"] == 16


def test_same_seed_gives_the_same_record(tiny_cache):
  first = run_proxy_trial("F:sep3x3@3x3 F:pool@2x2", tiny_cache, seed=3, **FAST)
  again = run_proxy_trial("F:sep3x3@3x3 F:pool@2x2", tiny_cache, seed=3, **FAST)
  other = run_proxy_trial("F:sep3x3@3x3 F:pool@2x2", tiny_cache, seed=4, **FAST)
  for key in ("miou", "final_loss", "initial_loss", "class_iou"):
    assert first[key] == again[key], key
  assert first["final_loss"] != other["final_loss"]


def test_streamed_features_train_like_in_memory_ones(tiny_cache):
  streamed = run_proxy_trial("F:conv1x1", tiny_cache, memory_limit_bytes=0, shuffle_buffer=8,
                             **{**FAST, "steps": 20, "learning_rate": 0.05})
  assert not streamed["in_memory"] and streamed["steps"] == 20
  assert streamed["final_loss"] < streamed["initial_loss"]


def test_patience_on_held_out_examples_stops_early(tiny_cache):
  # lr 0 and frozen BN statistics: the held-out score never improves after the first one.
  record = run_proxy_trial("F:conv1x1", tiny_cache, holdout_examples=8, eval_every=2,
                           patience=1, **{**FAST, "steps": 50, "learning_rate": 0.0,
                                          "bn_momentum": 1.0})
  assert record["stopped_early"] and record["steps"] == 4
  assert [step for step, _ in record["holdout_miou"]] == [2, 4]
  assert record["train_examples"] == 24


def test_bad_settings_are_refused_with_one_line(tiny_cache):
  with pytest.raises(DpcError, match="unknown proxy trial setting.*stepz"):
    run_proxy_trial("F:conv1x1", tiny_cache, stepz=3)
  with pytest.raises(DpcError, match="patience needs eval_every > 0 and holdout_examples"):
    run_proxy_trial("F:conv1x1", tiny_cache, patience=2)
  with pytest.raises(DpcError, match="fewer than a batch"):
    run_proxy_trial("F:conv1x1", tiny_cache, holdout_examples=30, batch_size=4)


def test_diverging_trial_is_stopped_by_the_guard(tiny_cache):
  with pytest.raises(NonFiniteLossError) as info:
    run_proxy_trial("F:conv1x1", tiny_cache, **{**FAST, "steps": 20, "learning_rate": 1e30})
  message = str(info.value)
  assert message.startswith("proxy trial of cell F:conv1x1: loss is ")
  assert "at step" in message and "proxy_trial.learning_rate" in message and "\n" not in message


def test_labels_outside_the_classes_are_refused(tmp_path, backbone, examples, identity):
  # The cache says 3 classes; dpc_synthetic/tiny labels go up to 6: a data bug, not ignored.
  path = str(tmp_path)
  for role, split in (("train", "train[:8]"), ("eval", "validation[:4]")):
    cache_role(path, identity(backbone, num_classes=3), role,
               {"split": split, "crop": [129, 129], "augment": False}, backbone,
               examples(split), shard_size=8)
  with pytest.raises(BadLabelError, match=r"proxy trial .*, step 1: \d+ pixel\(s\) have "
                                          r"labels that are neither a class id 0..2"):
    run_proxy_trial("F:conv1x1", path, **FAST)


@pytest.mark.parametrize("memory_limit_bytes", [1 << 30, 0], ids=["in_memory", "streamed"])
def test_corrupted_train_shard_stops_the_trial_naming_it(tiny_cache, tmp_path,
                                                         memory_limit_bytes):
  copy = tmp_path / "cache"
  shutil.copytree(tiny_cache, copy)
  shard = copy / "train-00002.npz"
  shard.write_bytes(shard.read_bytes()[:-10] + b"0123456789")
  with pytest.raises(CorruptShardError, match=r"train-00002\.npz: checksum mismatch") as error:
    run_proxy_trial("F:conv1x1", str(copy), memory_limit_bytes=memory_limit_bytes,
                    shuffle_buffer=4, **{**FAST, "steps": 40})
  assert "\n" not in str(error.value)


def test_trial_runs_as_a_picklable_function_in_a_fresh_process(tiny_cache):
  trial = functools.partial(run_proxy_trial, cache_dir=tiny_cache, **FAST)
  with concurrent.futures.ProcessPoolExecutor(
      1, mp_context=multiprocessing.get_context("spawn")) as pool:
    record = pool.submit(trial, "F:conv1x1").result(timeout=120)
  assert record["steps"] == 6
  assert record["final_loss"] == run_proxy_trial("F:conv1x1", tiny_cache, **FAST)["final_loss"]


@pytest.fixture(scope="session")
def blocks_cache(tmp_path_factory, examples, pixel_blocks):
  """128 train / 32 eval dpc_synthetic (257x257) images through the PixelBlocks stand-in."""
  path = str(tmp_path_factory.mktemp("blocks_cache"))
  identity = {"backbone": "pixel_blocks", "checkpoint_fingerprint": "-", "output_stride": 16,
              "dataset": "dpc_synthetic", "num_classes": 7, "ignore_label": 255}
  for role, split, training in (("train", "train[:128]", True),
                                ("eval", "validation[:32]", False)):
    settings = {"split": split, "crop": [257, 257], "augment": training}
    cache_role(path, identity, role, settings, pixel_blocks,
               examples(split, training, dataset="dpc_synthetic"), shard_size=64,
               batch_size=16)
  return path


def _chance_miou(cache_dir: str) -> float:
  """mIOU of predicting the most frequent class everywhere (what a constant head scores)."""
  _, labels = FeatureCache(cache_dir).role("eval").load()
  counts = np.bincount(labels.ravel(), minlength=256)[:7]
  matrix = np.zeros((7, 7), np.int64)
  matrix[:, counts.argmax()] = counts
  return metrics.iou_from_confusion(matrix).miou


def test_proxy_beats_chance_and_ranks_a_reasonable_cell_over_a_degenerate_one(blocks_cache):
  settings = dict(steps=150, batch_size=8, filters=32, bn_momentum=0.9, learning_rate=0.1)
  chance = _chance_miou(blocks_cache)
  # Global pooling alone gives every pixel of an image the same logits: no segmentation.
  degenerate = run_proxy_trial("F:pool@1x1", blocks_cache, **settings)
  reasonable = run_proxy_trial("F:sep3x3@1x1 F:pool@1x1", blocks_cache, **settings)
  assert 0.10 < chance < 0.13  # background is ~80% of the valid pixels, 7 classes
  assert degenerate["miou"] < chance + 0.02
  assert reasonable["miou"] > 1.4 * chance and reasonable["miou"] > degenerate["miou"] + 0.05
  assert reasonable["final_loss"] < 0.8 * degenerate["final_loss"]


def test_a_continued_run_equals_an_uninterrupted_one(tiny_cache, tmp_path):
  """Rungs 3 -> 9 steps (schedule over 9) end with the weights, optimizer slots, step
  counter and dropout draws of one straight 9-step run: continuation really resumes."""
  settings = dict(FAST, schedule_steps=9, learning_rate=0.05, dropout=0.5)
  cell = "F:sep3x3@3x3 0:conv1x1"
  straight = run_proxy_trial(cell, tiny_cache, save_to=str(tmp_path / "straight"),
                             **dict(settings, steps=9))
  first = run_proxy_trial(cell, tiny_cache, save_to=str(tmp_path / "rung0"),
                          **dict(settings, steps=3))
  second = run_proxy_trial(cell, tiny_cache, start_from=str(tmp_path / "rung0"),
                           save_to=str(tmp_path / "rung1"), **dict(settings, steps=9))
  assert (first["steps"], second["steps"], second["resumed_from_steps"]) == (3, 9, 3)
  assert second["schedule_steps"] == 9 and first["resumed_from_steps"] is None
  expected = head_state.saved_values(str(tmp_path / "straight"))
  got = head_state.saved_values(str(tmp_path / "rung1"))
  assert set(expected) == set(got) and any("iter" in name for name in got)
  for name, value in expected.items():
    np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
  assert second["miou"] == pytest.approx(straight["miou"], abs=1e-6)
  assert second["final_loss"] == pytest.approx(straight["final_loss"], rel=1e-5)


def test_continuing_from_another_cell_or_a_later_state_is_refused(tiny_cache, tmp_path):
  run_proxy_trial("F:conv1x1", tiny_cache, save_to=str(tmp_path / "s"),
                  **dict(FAST, steps=2, schedule_steps=6))
  with pytest.raises(DpcError, match="cell_fingerprint"):
    run_proxy_trial("F:sep3x3@1x1", tiny_cache, start_from=str(tmp_path / "s"),
                    **dict(FAST, schedule_steps=6))
  with pytest.raises(DpcError, match="reached 2 steps, this trial trains to 2"):
    run_proxy_trial("F:conv1x1", tiny_cache, start_from=str(tmp_path / "s"),
                    **dict(FAST, steps=2, schedule_steps=6))
  with pytest.raises(DpcError, match="no state.json"):
    run_proxy_trial("F:conv1x1", tiny_cache, start_from=str(tmp_path / "none"), **FAST)
