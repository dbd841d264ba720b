"""The folder dataset: classes.txt, label formats, specs from the folder, splits, the
start-up check, and one run through train / evaluate / export / predict / search."""

import concurrent.futures
import json
import os
import time

import gin
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import dpc_tf.data as data
from dpc_tf.data import folder, metrics
from dpc_tf.errors import DpcError
from dpc_tf.training import predict


def _by_size(dataset):
  return {ex["image"].shape[:2]: ex for ex in dataset.as_numpy_iterator()}


def _spec(root):
  return data.get_spec(f"folder:{root}")


def test_classes_txt(tmp_path):
  root = tmp_path / "c"
  root.mkdir()

  def table(text):
    (root / "classes.txt").write_text(text)
    return folder.read_classes(str(root))

  t = table("# comment\nbackground\ntraffic light\n\n\n")
  assert t.names == ("background", "traffic light") and t.colours is None
  t = table("road 128 64 128\ntraffic light 250 170 30\n")
  assert t.names == ("road", "traffic light") and t.colours == ((128, 64, 128), (250, 170, 30))
  for text, message in (("a\n\nb\n", "line 2: empty line"),
                        ("a 1 2 3\nb\n", "some classes have a colour"),
                        ("a\na\n", "'a' appears twice"),
                        ("a 1 2 300\n", "not r g b in 0..255"),
                        ("a 1 2 3\nb 1 2 3\n", "share colour"), ("", "no classes")):
    with pytest.raises(DpcError, match=message):
      table(text)


def test_spec_comes_from_the_folder(tmp_path, folder_writer):
  root = folder_writer.write(tmp_path / "mine", kind="rgb")
  spec = _spec(root)
  assert spec.num_classes == 3 and spec.class_names == folder_writer.classes
  assert spec.palette == folder_writer.colours and spec.ignore_label == 255
  # largest image 48 x 65 -> the next 16k+1 sizes; training crop the same (under 513)
  assert spec.eval_crop == (49, 65) and spec.train_crop == (49, 65)
  assert spec.num_examples == {"train": 3, "val": 2}
  # "folder" reads the root from gin; crops are bindable; an edit changes the version
  gin.clear_config()
  try:
    gin.parse_config(f"folder_dataset.root = '{root}'\nfolder_dataset.train_crop = 33")
    bound = data.get_spec("folder")
    assert bound.train_crop == (33, 33) and bound.version == spec.version
    assert bound.name == "folder"
  finally:
    gin.clear_config()
  with pytest.raises(DpcError, match="folder_dataset.root"):
    data.get_spec("folder")
  time.sleep(0.01)
  (tmp_path / "mine" / "images" / "train" / "img_000.png").touch()
  assert _spec(root).version != spec.version
  assert _spec(root).tfds_name != spec.tfds_name
  # no classes.txt: one line naming it
  os.remove(os.path.join(root, "classes.txt"))
  with pytest.raises(DpcError, match="classes.txt: missing"):
    _spec(root)


@pytest.mark.parametrize("kind,nested,ext", [
    ("index", False, ".png"), ("palette", True, ".jpg"), ("rgb", False, ".png"),
    ("grey_rgb", False, ".jpeg"), ("index16", True, ".png")])
def test_label_formats_load_as_class_ids(tmp_path, folder_writer, kind, nested, ext):
  root = folder_writer.write(tmp_path / kind, kind=kind, nested=nested, image_ext=ext)
  for split, sizes in (("train", [(33, 33), (40, 48), (33, 65)]),
                       ("validation", [(33, 33), (48, 40)])):  # validation finds val/
    got = _by_size(data.load_split(f"folder:{root}", split, data_dir=str(tmp_path / "tfds")))
    assert sorted(got) == sorted(sizes)
    for (h, w), example in got.items():
      assert example["image"].dtype == np.uint8 and example["image"].shape == (h, w, 3)
      np.testing.assert_array_equal(example["segmentation_mask"][..., 0],
                                    folder_writer.mask(h, w, 3))


def test_ignore_value_is_configurable_and_splits_are_named_by_folder(tmp_path, folder_writer):
  root = folder_writer.write(tmp_path / "ign", ignore=100,
                             splits={"train": [(33, 33)], "holdout": [(40, 40)]})
  gin.clear_config()
  try:
    gin.parse_config(f"folder_dataset.root = '{root}'\nfolder_dataset.ignore_label = 100")
    got = _by_size(data.load_split("folder", "holdout", data_dir=str(tmp_path / "tfds")))
    mask = got[(40, 40)]["segmentation_mask"][..., 0]
    np.testing.assert_array_equal(mask, folder_writer.mask(40, 40, 3))  # 100 -> 255
    with pytest.raises(DpcError, match=r"has no split 'validation' \(its splits: holdout, "):
      data.load_split("folder", "validation", data_dir=str(tmp_path / "tfds"))
  finally:
    gin.clear_config()


def test_mixed_sizes_through_the_pipeline(tmp_path, folder_writer):
  root = folder_writer.write(tmp_path / "mixed")
  name, data_dir = f"folder:{root}", str(tmp_path / "tfds")
  train = data.build_input_pipeline(name, "train", 2, crop_size=33, is_training=True,
                                    data_dir=data_dir, seed=0)
  for images, labels in train.take(3):
    assert images.shape == (2, 33, 33, 3) and labels.shape == (2, 33, 33, 1)
    assert set(np.unique(labels.numpy())) <= {0, 1, 2, 255}
  evaluation = data.build_input_pipeline(name, "val", 2, data_dir=data_dir)
  (images, labels), = list(evaluation)
  assert images.shape == (2, 49, 65, 3)   # padded to the eval crop from the data
  confusion = metrics.confusion_counts(labels, labels, 3)
  assert float(metrics.iou_from_confusion(confusion).miou) == pytest.approx(1.0)


def test_startup_check_refuses_in_one_line(tmp_path, folder_writer):
  root = folder_writer.write(tmp_path / "bad")
  Image.fromarray(np.full((33, 33), 7, np.uint8)).save(
      os.path.join(root, "labels", "train", "img_000.png"))
  with pytest.raises(DpcError) as raised:
    data.build_input_pipeline(f"folder:{root}", "train", 2, is_training=True,
                              data_dir=str(tmp_path / "tfds"))
  message = str(raised.value)
  assert "\n" not in message and "python -m dpc_tf.data.inspect --root=" in message
  assert "label_values: label " + os.path.join(root, "labels", "train", "img_000.png") + \
      " holds values 7 outside [0, 3)" in message
  assert not os.path.exists(tmp_path / "tfds" / "folder_dataset")  # refused before preparing


TINY_TRAIN = ["train.num_steps = 2", "train.batch_size = 2", "train.log_every = 1",
              "deeplab_model.depth_multiplier = 0.25", "evaluate.batch_size = 2"]
TINY_SEARCH = [
    "feature_cache.depth_multiplier = 0.25", "feature_cache.shard_size = 16",
    "feature_cache.batch_size = 4", "pretrain_backbone.steps = 2",
    "pretrain_backbone.batch_size = 2", "proxy_trial.steps = 4", "proxy_trial.filters = 16",
    "proxy_trial.batch_size = 2", "search_pipeline.rerank_top_k = 0",
    "search_pipeline.plots = False"]


def _bindings(values):
  return [f"--gin_bindings={b}" for b in values]


def test_train_evaluate_export_predict_and_search(tmp_path, folder_writer, commands):
  """The documented commands (docs/CUSTOM_DATA.md) on a tiny folder, the search in parallel
  with the rest: the real proxy on a backbone pretrained for 2 steps on the folder (no
  re-rank: that is the trainer, tested here already)."""
  root = folder_writer.write(tmp_path / "mine", kind="rgb", nested=True)
  common = [f"folder_dataset.root = '{root}'", f"train.data_dir = '{tmp_path}/tfds'"]
  search_dir, run, saved = tmp_path / "search", tmp_path / "run", tmp_path / "sm"
  with concurrent.futures.ThreadPoolExecutor(1) as pool:
    search = pool.submit(
        commands.run, "dpc_tf.search", "--gin_file=gin/search/folder.gin",
        f"--search_dir={search_dir}", "--budget=2", *_bindings(
            common + TINY_SEARCH + [f"feature_cache.data_dir = '{tmp_path}/tfds_proxy'",
                                    f"pretrain_backbone.output_root = '{tmp_path}/pre'"]))
    result = commands.run("dpc_tf.train", "--gin_file=gin/train/folder.gin",
                          f"--model_dir={run}", *_bindings(common + TINY_TRAIN))
    assert result.returncode == 0, result.stderr[-3000:]
    result = commands.run("dpc_tf.evaluate", f"--model_dir={run}")  # the operative config
    assert result.returncode == 0, result.stderr[-3000:]
    with open(run / "eval_val.json") as f:
      scored = json.load(f)
    assert scored["num_images"] == 2 and scored["split"] == "val"
    assert set(scored["per_class_iou"]) == set(folder_writer.classes), scored
    result = commands.run("dpc_tf.export", f"--model_dir={run}", f"--export_dir={saved}")
    assert result.returncode == 0, result.stderr[-3000:]
    predict.predict_images(str(saved), f"{root}/images/val/sub0/*.png",
                           str(tmp_path / "pred"))  # in process: one TF start-up less
    overlay = np.asarray(Image.open(tmp_path / "pred" / "img_000_overlay.png"))
    assert overlay.shape == (33, 33, 3)
    loaded = tf.saved_model.load(str(saved))
    assert [n.decode() for n in loaded.class_names.numpy()] == list(folder_writer.classes)
    assert loaded.palette.numpy().tolist() == [list(c) for c in folder_writer.colours]
    assert loaded.dataset.numpy().decode() == "folder"
    result = search.result()
  assert result.returncode == 0, result.stderr[-3000:]
  assert "search finished: 2 done, 0 failed" in result.stdout
  assert os.path.isfile(search_dir / "best_cells" / "rank_1.json")
  with open(search_dir / "feature_cache" / "manifest.json") as f:
    manifest = json.load(f)
  assert manifest["identity"]["dataset"] == "folder"
  assert manifest["identity"]["dataset_version"] == _spec(root).version


def test_training_refuses_a_broken_folder(tmp_path, folder_writer, commands):
  root = folder_writer.write(tmp_path / "broken")
  os.remove(os.path.join(root, "labels", "val", "img_001.png"))
  result = commands.run("dpc_tf.train", "--gin_file=gin/train/folder.gin",
                        f"--model_dir={tmp_path / 'run'}",
                        *_bindings([f"folder_dataset.root = '{root}'"] + TINY_TRAIN))
  assert result.returncode == 2
  assert commands.error_line(result) == (
      f"dpc_tf.train: error: dataset folder {root} has 1 problem(s) (python -m "
      f"dpc_tf.data.inspect --root={root} lists them all): unpaired_image: image "
      f"{root}/images/val/img_001.png has no label (expected labels/<split>/<same relative "
      f"name>.png)")


def test_grey_rgba_and_palette_images(tmp_path, folder_writer):
  root = folder_writer.write(tmp_path / "modes", splits={"train": [(33, 33)] * 3})
  rng = np.random.default_rng(0)
  pixels = rng.integers(0, 256, (33, 33, 4), dtype=np.uint8)
  for index, (mode, array) in enumerate((("L", pixels[..., 0]), ("RGBA", pixels),
                                         ("P", pixels[..., 0]))):
    Image.fromarray(array, mode=mode).save(os.path.join(root, "images", "train",
                                                        f"img_{index:03d}.png"))
  got = list(data.load_split(f"folder:{root}", "train",
                             data_dir=str(tmp_path / "tfds")).as_numpy_iterator())
  assert len(got) == 3
  for example in got:
    assert example["image"].shape == (33, 33, 3)
  grey = [e["image"] for e in got if np.array_equal(e["image"][..., 0], pixels[..., 0])
          and np.array_equal(e["image"][..., 1], pixels[..., 0])]
  rgba = [e["image"] for e in got if np.array_equal(e["image"], pixels[..., :3])]
  assert grey and rgba
