"""The per-process memo of generated dpc_synthetic examples: exact, bounded, switchable."""

import threading

import numpy as np
import pytest

from dpc_tf import data
from dpc_tf.data import synthetic, synthetic_memo
from dpc_tf.errors import DpcError
from dpc_tf.training import inputs

TINY = synthetic.get_config("tiny")
TINY_BYTES = 129 * 129 * 4  # image (3 channels) + mask (1), uint8


@pytest.fixture(autouse=True)
def _fresh_memo(monkeypatch):
  monkeypatch.delenv(synthetic_memo.ENV_VARIABLE, raising=False)
  synthetic_memo.clear()
  yield
  synthetic_memo.clear()


def _counting(monkeypatch) -> list:
  made = []
  generate = synthetic.generate_example

  def counted(config, split, index):
    made.append((split, index))
    return generate(config, split, index)
  monkeypatch.setattr(synthetic, "generate_example", counted)
  return made


def test_examples_are_exact_made_once_and_read_only(monkeypatch):
  made = _counting(monkeypatch)
  image, mask = synthetic_memo.example(TINY, "train", 3)
  again_image, again_mask = synthetic_memo.example(TINY, "train", 3)
  assert made == [("train", 3)]
  assert again_image is image and again_mask is mask
  expected_image, expected_mask = synthetic.generate_example(TINY, "train", 3)
  np.testing.assert_array_equal(image, expected_image)
  np.testing.assert_array_equal(mask, expected_mask)
  with pytest.raises(ValueError):
    image[0, 0, 0] = 1
  synthetic_memo.example(TINY, "validation", 3)  # another split is another example
  assert synthetic_memo.held() == (2, 2 * TINY_BYTES)


def test_threads_asking_at_once_wait_for_one_maker(monkeypatch):
  made = _counting(monkeypatch)
  start = threading.Barrier(8)

  def ask(out):
    start.wait()
    out.append(synthetic_memo.example(TINY, "train", 5)[0])
  got = []
  workers = [threading.Thread(target=ask, args=(got,)) for _ in range(8)]
  for worker in workers:
    worker.start()
  for worker in workers:
    worker.join()
  assert made == [("train", 5)]
  assert len(got) == 8 and all(image is got[0] for image in got)


def test_a_failed_maker_leaves_the_example_to_the_next_caller():
  with pytest.raises(IndexError):
    synthetic_memo.example(TINY, "train", TINY.train_examples)
  with pytest.raises(IndexError):  # not left waiting for the first attempt
    synthetic_memo.example(TINY, "train", TINY.train_examples)
  assert synthetic_memo.held() == (0, 0)


def test_budget_evicts_least_recently_used_first(monkeypatch):
  monkeypatch.setenv(synthetic_memo.ENV_VARIABLE, str(2.5 * TINY_BYTES / 2**20))
  made = _counting(monkeypatch)
  for index in (0, 1):
    synthetic_memo.example(TINY, "train", index)
  synthetic_memo.example(TINY, "train", 0)  # 0 is now the most recently used
  synthetic_memo.example(TINY, "train", 2)  # evicts 1
  assert synthetic_memo.held() == (2, 2 * TINY_BYTES)
  synthetic_memo.example(TINY, "train", 0)
  synthetic_memo.example(TINY, "train", 1)
  assert made == [("train", 0), ("train", 1), ("train", 2), ("train", 1)]


def test_zero_turns_it_off(monkeypatch):
  monkeypatch.setenv(synthetic_memo.ENV_VARIABLE, "0")
  made = _counting(monkeypatch)
  first = synthetic_memo.example(TINY, "train", 4)[0]
  second = synthetic_memo.example(TINY, "train", 4)[0]
  np.testing.assert_array_equal(first, second)
  assert len(made) == 2 and synthetic_memo.held() == (0, 0)


@pytest.mark.parametrize("value", ["lots", "-1"])
def test_a_bad_budget_is_one_line_before_the_pipeline_runs(monkeypatch, value):
  monkeypatch.setenv(synthetic_memo.ENV_VARIABLE, value)
  with pytest.raises(DpcError, match=f"{synthetic_memo.ENV_VARIABLE}='{value}'") as caught:
    inputs.eval_dataset(inputs.TrainConfig(dataset="dpc_synthetic/tiny"),
                        inputs.EvalConfig())
  assert "\n" not in str(caught.value)


def test_a_pipeline_reads_the_same_batches_through_the_memo(monkeypatch):
  def batches():
    ds = data.build_input_pipeline("dpc_synthetic/tiny", "train", 4, crop_size=(65, 65),
                                   is_training=True, seed=3, deterministic=True)
    return [tuple(t.numpy() for t in batch) for batch in ds.take(10)]  # 40 > 32: a repeat
  monkeypatch.setenv(synthetic_memo.ENV_VARIABLE, "0")
  without = batches()
  monkeypatch.setenv(synthetic_memo.ENV_VARIABLE, "64")
  made = _counting(monkeypatch)
  with_memo = batches()
  assert len(made) == 32  # the second epoch's 8 examples came from the memo
  for (a_images, a_labels), (b_images, b_labels) in zip(without, with_memo):
    np.testing.assert_array_equal(a_images, b_images)
    np.testing.assert_array_equal(a_labels, b_labels)
