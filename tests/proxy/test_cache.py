"""The feature cache: round trip, resume, reuse, refusal, corruption, single writer."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from dpc_tf.proxy import cache as cache_lib
from dpc_tf.proxy.caching import cache_role

TRAIN = {"split": "train", "crop": [129, 129], "views": 1, "seed": 0, "augment": True}
EVAL = {"split": "validation", "crop": [129, 129], "augment": False}


@pytest.fixture
def make(examples, identity, backbone):
  """make(path, role="eval", settings=EVAL, stream=None, **cache_role kwargs) -> entry."""
  def cache(path, role="eval", settings=EVAL, stream=None, **kwargs):
    kwargs.setdefault("shard_size", 6)
    if stream is None:
      stream = examples(settings["split"], settings["augment"])
    return cache_role(str(path), identity(backbone), role, settings, backbone, stream, **kwargs)
  return cache


class _Crash(Exception):
  pass


def test_round_trip_equals_backbone_output_within_float16(tmp_path, backbone, make,
                                                         examples, identity):
  entry = make(tmp_path)
  role = cache_lib.FeatureCache(str(tmp_path)).role("eval")
  features, labels = role.load()
  images = np.stack([x for x, _ in examples("validation").as_numpy_iterator()])
  expected_labels = np.stack([y for _, y in examples("validation").as_numpy_iterator()])
  expected = backbone(tf.constant(images), training=False)["features"].numpy()
  assert entry["count"] == role.count == 16 and len(role.shards) == 3  # 6 + 6 + 4
  assert features.dtype == np.float16 and features.shape == (16, 9, 9, 80)
  np.testing.assert_allclose(features.astype(np.float32), expected, rtol=2e-3, atol=2e-3)
  assert labels.dtype == np.uint8 and labels.shape == (16, 129, 129, 1)
  np.testing.assert_array_equal(labels, expected_labels)
  manifest = json.loads((tmp_path / "manifest.json").read_text())
  assert manifest["identity"]["checkpoint_fingerprint"] == identity(backbone)[
      "checkpoint_fingerprint"]
  assert manifest["roles"]["eval"]["settings"]["dtype"] == "float16"


def test_labels_at_feature_resolution_are_nearest_downsampled(tmp_path, make, examples):
  make(tmp_path, label_resolution="features", shard_size=16)
  _, labels = cache_lib.FeatureCache(str(tmp_path)).role("eval").load()
  full = np.stack([y for _, y in examples("validation").as_numpy_iterator()])
  assert labels.shape == (16, 9, 9, 1)
  # align_corners nearest: feature cell i sits on pixel 16 i of the 129-pixel crop.
  np.testing.assert_array_equal(labels, full[:, ::16, ::16])


def test_resume_after_crash_finishes_without_losing_or_repeating_work(tmp_path, make, examples):
  reference = tmp_path / "reference"
  make(reference, "train", TRAIN, examples("train", True), shard_size=5)
  crashed = tmp_path / "crashed"

  def crash_after_two(done_shards):
    if done_shards == 2:
      raise _Crash()
  with pytest.raises(_Crash):
    make(crashed, "train", TRAIN, examples("train", True), shard_size=5,
           on_shard=crash_after_two)
  partial = json.loads((crashed / "manifest.json").read_text())["roles"]["train"]
  assert not partial["complete"] and partial["count"] == 10
  first = {n: os.stat(crashed / n).st_mtime_ns for n in ("train-00000.npz", "train-00001.npz")}
  # A writer killed mid-write leaves a temporary file; one killed between the shard's rename
  # and the manifest's update leaves a shard the manifest does not list.
  (crashed / ".tmp-x-train-00002.npz").write_bytes(b"half a shard")
  (crashed / "train-00002.npz").write_bytes(b"unrecorded shard")

  written = []
  entry = make(crashed, "train", TRAIN, examples("train", True), shard_size=5,
                 on_shard=written.append)
  assert written == [3, 4, 5, 6, 7]  # shards 0-1 kept; 2..6 written once each
  assert {n: os.stat(crashed / n).st_mtime_ns for n in first} == first
  expected = json.loads((reference / "manifest.json").read_text())["roles"]["train"]
  assert entry["complete"] and entry["count"] == 32
  assert [s["sha256"] for s in entry["shards"]] == [s["sha256"] for s in expected["shards"]]
  assert not (crashed / ".tmp-x-train-00002.npz").exists()
  cache_lib.FeatureCache(str(crashed)).role("train").load()  # every shard verifies


def test_complete_role_is_reused_without_running_the_backbone(tmp_path, make):
  make(tmp_path)
  before = (tmp_path / "manifest.json").read_text()
  entry = make(tmp_path, stream=tf.data.Dataset.range(0).map(
      lambda _: (tf.zeros([129, 129, 3]), tf.zeros([129, 129, 1], tf.int32))),
                 on_shard=lambda _: pytest.fail("a complete role was rewritten"))
  assert entry["complete"] and (tmp_path / "manifest.json").read_text() == before


def test_cache_with_other_settings_is_refused_with_one_line(tmp_path, backbone, make,
                                                         examples, identity):
  make(tmp_path)
  with pytest.raises(cache_lib.CacheMismatchError) as error:
    make(tmp_path, settings={**EVAL, "crop": [257, 257]})
  message = str(error.value)
  assert "\n" not in message and "eval.crop: cache has [129, 129], asked for [257, 257]" in message
  with pytest.raises(cache_lib.CacheMismatchError, match="shard_size: cache has 6, asked for 4"):
    make(tmp_path, shard_size=4)
  other = identity(backbone, checkpoint_fingerprint="0123456789abcdef")
  with pytest.raises(cache_lib.CacheMismatchError,
                     match="checkpoint_fingerprint: cache has '[0-9a-f]+', asked for "
                           "'0123456789abcdef'"):
    cache_role(str(tmp_path), other, "eval", EVAL, backbone, examples("validation"))


def test_corrupted_shard_is_named(tmp_path, make):
  make(tmp_path)
  shard = tmp_path / "eval-00001.npz"
  data = bytearray(shard.read_bytes())
  data[len(data) // 2] ^= 0xFF
  shard.write_bytes(bytes(data))
  role = cache_lib.FeatureCache(str(tmp_path)).role("eval")
  role.read_shard(0)  # intact shards still read
  with pytest.raises(cache_lib.CorruptShardError, match=r"shard .*eval-00001\.npz: checksum "
                                                       r"mismatch") as error:
    role.load()
  assert "\n" not in str(error.value)


def test_unfinished_or_missing_role_is_refused_for_reading(tmp_path, make):
  with pytest.raises(cache_lib.IncompleteCacheError, match="holds no manifest.json"):
    cache_lib.FeatureCache(str(tmp_path))
  make(tmp_path)
  with pytest.raises(cache_lib.IncompleteCacheError, match="role 'train' is missing"):
    cache_lib.FeatureCache(str(tmp_path)).role("train")


def test_second_writer_is_refused(tmp_path):
  with cache_lib.writer_lock(str(tmp_path)):
    with pytest.raises(cache_lib.CacheError, match="being written by another process"):
      with cache_lib.writer_lock(str(tmp_path)):
        pass


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["roles"]["eval"].update(count=999), "count is 999 but its shards hold"),
    (lambda m: m["roles"]["eval"]["settings"].update(crop=[33, 33]),
     "feature_shape .* does not fit crop \\[33, 33\\] at output stride"),
    (lambda m: m["identity"].update(output_stride=8), "feature_shape .* does not fit crop"),
    (lambda m: m["identity"].update(num_classes="7"),
     "identity.num_classes is '7', not an integer"),
    (lambda m: m["roles"]["eval"]["shards"][0].update(count=0), "shards\\[0\\] is not"),
])
def test_hand_edited_manifest_is_refused_naming_the_field(tmp_path, make, edit, message):
  make(tmp_path)
  path = tmp_path / "manifest.json"
  manifest = json.loads(path.read_text())
  edit(manifest)
  path.write_text(json.dumps(manifest))
  with pytest.raises(cache_lib.CacheError, match=message) as error:
    cache_lib.FeatureCache(str(tmp_path)).role("eval")
  assert "\n" not in str(error.value)


@pytest.mark.parametrize("text", [b"\xff\xfe", b"[" * 100000, b"[1, 2]"])
def test_unreadable_manifest_is_one_line(tmp_path, text):
  (tmp_path / "manifest.json").write_bytes(text)
  with pytest.raises(cache_lib.CacheError, match="manifest"):
    cache_lib.FeatureCache(str(tmp_path))
