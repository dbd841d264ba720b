"""The per-process memo of generated dpc_synthetic examples: exact, bounded, switchable; and
the folder that shares them between processes."""

import os
import stat
import subprocess
import sys
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
  monkeypatch.delenv(synthetic_memo.DIR_VARIABLE, raising=False)
  monkeypatch.setattr(synthetic_memo, "_write_failed", [False])
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


def _shared_file(root, config, split, index) -> str:
  return os.path.join(root, f"{config.name}-{synthetic_memo._fingerprint(config)}", split,
                      f"{index:06d}.npy")


def test_a_shared_folder_hands_a_made_example_to_the_next_process_exactly(monkeypatch,
                                                                           tmp_path):
  monkeypatch.setenv(synthetic_memo.DIR_VARIABLE, str(tmp_path))
  made = _counting(monkeypatch)
  image, mask = synthetic_memo.example(TINY, "train", 7)
  path = _shared_file(tmp_path, TINY, "train", 7)
  assert made == [("train", 7)] and os.path.isfile(path)
  assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~_umask()
  assert not [f for f in os.listdir(os.path.dirname(path)) if f.startswith(".tmp")]
  synthetic_memo.clear()  # as a fresh process would start
  again_image, again_mask = synthetic_memo.example(TINY, "train", 7)
  assert made == [("train", 7)]  # read, not made
  np.testing.assert_array_equal(again_image, image)
  np.testing.assert_array_equal(again_mask, mask)
  # another process that cannot generate at all still gets it, bit for bit
  child = subprocess.run([sys.executable, "-c", (
      "import sys, numpy as np\n"
      "from dpc_tf.data import synthetic, synthetic_memo\n"
      "def refuse(*a): raise SystemExit('generated instead of read')\n"
      "synthetic.generate_example = refuse\n"
      "image, mask = synthetic_memo.example(synthetic.get_config('tiny'), 'train', 7)\n"
      "np.save(sys.argv[1], np.concatenate([image, mask], -1))\n"),
      str(tmp_path / "child.npy")], capture_output=True, text=True, check=False,
      env={**os.environ, "PYTHONPATH": os.getcwd(), "CUDA_VISIBLE_DEVICES": ""})
  assert child.returncode == 0, child.stderr[-2000:]
  np.testing.assert_array_equal(np.load(tmp_path / "child.npy"),
                                np.concatenate([image, mask], -1))


def _umask() -> int:
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


@pytest.mark.parametrize("damage", [b"not an array", None])
def test_a_damaged_or_misshapen_shared_file_is_made_and_written_again(monkeypatch, tmp_path,
                                                                       damage):
  monkeypatch.setenv(synthetic_memo.DIR_VARIABLE, str(tmp_path))
  path = _shared_file(tmp_path, TINY, "validation", 2)
  os.makedirs(os.path.dirname(path))
  if damage is None:
    np.save(path, np.zeros((5, 5, 4), np.uint8))
  else:
    with open(path, "wb") as f:
      f.write(damage)
  made = _counting(monkeypatch)
  image, mask = synthetic_memo.example(TINY, "validation", 2)
  expected = synthetic.generate_example(TINY, "validation", 2)
  assert made[0] == ("validation", 2)
  np.testing.assert_array_equal(image, expected[0])
  np.testing.assert_array_equal(mask, expected[1])
  np.testing.assert_array_equal(np.load(path), np.concatenate(expected, -1))


def test_the_shared_files_are_keyed_by_config_and_generator_source(monkeypatch, tmp_path):
  default = synthetic.get_config("default")
  assert synthetic_memo._fingerprint(TINY) != synthetic_memo._fingerprint(default)
  before = synthetic_memo._fingerprint(TINY)
  changed = tmp_path / "synthetic.py"
  with open(synthetic.__file__, "rb") as f:
    changed.write_bytes(f.read() + b"\n# changed\n")
  monkeypatch.setattr(synthetic, "__file__", str(changed))
  synthetic_memo._fingerprint.cache_clear()
  try:
    assert synthetic_memo._fingerprint(TINY) != before
  finally:
    monkeypatch.undo()
    synthetic_memo._fingerprint.cache_clear()


def test_an_unwritable_shared_folder_warns_once_and_changes_nothing_else(monkeypatch,
                                                                         tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a folder")
  monkeypatch.setenv(synthetic_memo.DIR_VARIABLE, str(blocker / "examples"))
  warnings = []
  monkeypatch.setattr(synthetic_memo.logging, "warning", lambda *a: warnings.append(a))
  for index in (0, 1):
    image, _ = synthetic_memo.example(TINY, "train", index)
    np.testing.assert_array_equal(image, synthetic.generate_example(TINY, "train", index)[0])
  assert len(warnings) == 1 and "cannot share generated dpc_synthetic examples" in warnings[0][0]
