"""python -m dpc_tf.data.inspect and the checks behind it: one folder per problem."""

import concurrent.futures
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from dpc_tf.data import folder, folder_check


def _label(root, split="train", name="img_000"):
  return os.path.join(root, "labels", split, name + ".png")


def _image(root, split="train", name="img_000"):
  return os.path.join(root, "images", split, name + ".png")


def _save(path, array):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(np.asarray(array, np.uint8)).save(path)


def _rgb_without_colours(root, w):
  _save(_label(root), np.stack([np.zeros((33, 33)), np.ones((33, 33)), np.zeros((33, 33))], -1))


def _unknown_colours(root, w):
  shutil.rmtree(root)
  w.write(root, kind="rgb")
  mask = np.zeros((33, 33, 3), np.uint8)
  mask[:4] = (1, 2, 3)
  _save(_label(root), mask)


def _garbage_image(root, w):
  os.remove(_image(root))
  with open(os.path.join(root, "images", "train", "img_000.jpg"), "wb") as f:
    f.write(b"\xff\xd8 not a jpeg")


def _truncated_label(root, w):
  with open(_label(root), "rb") as f:
    head = f.read(60)
  with open(_label(root), "wb") as f:
    f.write(head)


def _extra_class(root, w):
  with open(os.path.join(root, "classes.txt"), "a") as f:
    f.write("bird\n")


def _move_split(src, dst):
  def mutate(root, w):
    for top in ("images", "labels"):
      os.rename(os.path.join(root, top, src), os.path.join(root, top, dst))
  return mutate


PROBLEMS = {
    # kind: (mutation, fragment of the message, training may start)
    "unpaired_image": (lambda r, w: os.remove(_label(r, "val", "img_001")),
                       "images/val/img_001.png has no label", False),
    "unpaired_label": (lambda r, w: os.remove(_image(r, "val", "img_001")),
                       "labels/val/img_001.png has no image", False),
    "size_mismatch": (lambda r, w: _save(_label(r), np.zeros((33, 40))),
                      "labels/train/img_000.png is 33x40 but its image", False),
    "unreadable": (_garbage_image, "images/train/img_000.jpg cannot be read", False),
    "unreadable_label": (_truncated_label, "labels/train/img_000.png cannot be read", False),
    "label_values": (lambda r, w: _save(_label(r), np.full((33, 33), 9)),
                     "labels/train/img_000.png holds values 9 outside [0, 3)", False),
    "rgb_without_colours": (_rgb_without_colours, "is an RGB image but classes.txt gives no "
                            "colours", False),
    "unknown_colours": (_unknown_colours, "has colours (1,2,3) that are not in classes.txt",
                        False),
    "class_never_occurs": (_extra_class, "class 3 'bird' occurs in no label", True),
    "duplicate_name": (lambda r, w: shutil.copy(_image(r), _image(r)[:-4] + ".jpg"),
                       "img_000.png: has the same name as", False),
    "ignored_file": (lambda r, w: open(os.path.join(r, "images", "train", "notes.txt"),
                                       "w").close(), "notes.txt: not a .jpg", True),
    "mostly_ignored": (lambda r, w: _save(_label(r), np.full((33, 33), 255)) or _save(
        _label(r, "val"), np.full((33, 33), 255)) or _save(_label(r, "train", "img_002"),
                                                           np.full((33, 65), 255)),
                       "of the label pixels read are the ignore value (255)", True),
    "classes": (lambda r, w: os.remove(os.path.join(r, "classes.txt")),
                "classes.txt: missing", False),
    "missing_split": (_move_split("train", "training_set"), "has no images/train/ split",
                      False),
    "no_validation": (_move_split("val", "test"), "has no images/val/ split", True),
    "split_name": (_move_split("val", "val-2"), "split folder 'val-2' must be named", False),
}


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_each_problem_is_named(tmp_path, folder_writer, name):
  mutate, fragment, may_start = PROBLEMS[name]
  root = folder_writer.write(tmp_path / "ds")
  mutate(root, folder_writer)
  report = folder_check.inspect_folder(folder.folder_dataset(root=root))
  kind = "unreadable" if name == "unreadable_label" else name
  problems = [p for p in report.problems if p.kind == kind]
  assert problems and any(fragment in p.message for p in problems), report.text()
  assert report.ok == may_start, report.text()
  assert fragment in report.text()


def test_clean_folders_have_no_problem(tmp_path, folder_writer):
  for kind in ("index", "palette", "rgb", "grey_rgb"):
    root = folder_writer.write(tmp_path / kind, kind=kind, nested=True)
    report = folder_check.inspect_folder(folder.folder_dataset(root=root))
    assert report.problems == [], report.text()
    assert report.histogram.tolist() == [2690, 2643, 2611]  # the bands of 5 labels
    assert report.ignored_pixels == 33 + 48 + 65 + 33 + 40  # their top rows


def test_the_command(tmp_path, folder_writer, commands):
  clean = folder_writer.write(tmp_path / "clean")
  bad = folder_writer.write(tmp_path / "bad", kind="rgb")
  os.remove(_label(bad, "val", "img_001"))
  _save(_label(bad), np.zeros((40, 33, 3)))
  with concurrent.futures.ThreadPoolExecutor(4) as pool:
    ok, broken, as_json, no_root = pool.map(
        lambda args: commands.run("dpc_tf.data.inspect", *args),
        [[f"--root={clean}"], [f"--root={bad}"], [f"--root={bad}", "--json"], []])
  assert ok.returncode == 0, ok.stderr[-2000:]
  assert ok.stdout.splitlines() == [
      f"dataset folder {clean}: 3 classes, labels are class indices",
      "split train: 3 pairs, images 33x33 .. 40x65 (h x w)",
      "split val: 2 pairs, images 33x33 .. 48x40 (h x w)",
      "class pixels over 5 labels:",
      "    0 background        2,690  32.95%",
      "    1 cat               2,643  32.38%",
      "    2 dog               2,611  31.99%",
      "      ignored             219   2.68%",
      "problems: 0 error(s), 0 warning(s)",
      "verdict: training may start"]
  assert broken.returncode == 1, broken.stderr[-2000:]
  lines = broken.stdout.splitlines()
  assert lines[0] == f"dataset folder {bad}: 3 classes, labels are RGB colour-coded"
  assert lines[-4:] == [
      "problems: 2 error(s), 0 warning(s)",
      f"  error   unpaired_image: image {bad}/images/val/img_001.png has no label (expected "
      f"labels/<split>/<same relative name>.png)",
      f"  error   size_mismatch: label {bad}/labels/train/img_000.png is 40x33 but its image "
      f"{bad}/images/train/img_000.png is 33x33",
      "verdict: training may NOT start: fix the errors above"]
  assert as_json.returncode == 1
  report = json.loads(as_json.stdout)
  assert report["ok"] is False and report["errors"] == 2 and report["num_classes"] == 3
  assert report["class_names"] == list(folder_writer.classes)
  assert report["splits"]["val"] == {"pairs": 1, "min_size": [33, 33], "max_size": [33, 33]}
  assert [p["kind"] for p in report["problems"]] == ["unpaired_image", "size_mismatch"]
  assert no_root.returncode == 2
  assert commands.error_line(no_root) == ("dpc_tf.data.inspect: error: --root is required (or "
                                         "folder_dataset.root in --gin_file / --gin_bindings)")
