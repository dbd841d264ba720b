"""Checking a folder dataset: what `python -m dpc_tf.data.inspect` prints and training refuses.

`inspect_folder` reads every file (or a sample of each split) and returns a Report: counts
per split, the image size range, pixels per class, and every problem naming its file. A
problem is an error (training must not start) or a warning (training may start). The
kinds, with what they mean, are PROBLEM_KINDS (docs/CUSTOM_DATA.md explains each).

`require_trainable` is the start-up check of training, caching and the search: the full
listing (pairing, names) plus a decoded sample of each split, memoised per folder content,
refusing with the first problems in one DpcError line.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import random
from typing import Optional

import numpy as np

from dpc_tf.data import folder, folder_files
from dpc_tf.errors import DpcError

PROBLEM_KINDS = {
    "classes": "classes.txt is missing or malformed",
    "no_pairs": "no image/label pair at all",
    "missing_split": "no train split (training reads images/train/)",
    "split_name": "a split folder name that is not letters, digits and _",
    "unpaired_image": "an image without a label of the same relative name",
    "unpaired_label": "a label without an image of the same relative name",
    "duplicate_name": "two files whose names differ only in extension",
    "unreadable": "a file that cannot be decoded",
    "size_mismatch": "a label whose size differs from its image's",
    "label_values": "label values outside [0, num_classes) other than the ignore value",
    "rgb_without_colours": "an RGB label while classes.txt gives no colours",
    "unknown_colours": "an RGB label with colours that are not in classes.txt",
    "ignored_file": "a file that is not used (warning)",
    "no_validation": "no val/validation split: evaluation needs one (warning)",
    "class_never_occurs": "a class with no pixel in any label (warning)",
    "mostly_ignored": "over half of the label pixels are the ignore value (warning)",
}
WARNINGS = frozenset({"ignored_file", "no_validation", "class_never_occurs", "mostly_ignored"})
STARTUP_SAMPLE = 16   # labels decoded per split by the start-up check


@dataclasses.dataclass(frozen=True)
class Problem:
  kind: str
  path: str
  message: str

  @property
  def severity(self) -> str:
    return "warning" if self.kind in WARNINGS else "error"


@dataclasses.dataclass
class Report:
  root: str
  class_names: tuple[str, ...] = ()
  colour_coded: bool = False
  splits: dict = dataclasses.field(default_factory=dict)
  histogram: Optional[np.ndarray] = None
  ignored_pixels: int = 0
  labels_read: int = 0
  sampled: bool = False
  problems: list = dataclasses.field(default_factory=list)

  @property
  def errors(self) -> list[Problem]:
    return [p for p in self.problems if p.severity == "error"]

  @property
  def warnings(self) -> list[Problem]:
    return [p for p in self.problems if p.severity == "warning"]

  @property
  def ok(self) -> bool:
    """True when training may start (no errors; warnings allowed)."""
    return not self.errors

  def add(self, kind: str, path: str, message: str) -> None:
    self.problems.append(Problem(kind, path, message))

  def as_dict(self) -> dict:
    total = int(self.histogram.sum()) if self.histogram is not None else 0
    return {
        "root": self.root, "ok": self.ok, "sampled": self.sampled,
        "num_classes": len(self.class_names), "class_names": list(self.class_names),
        "colour_coded": self.colour_coded, "splits": self.splits,
        "labels_read": self.labels_read,
        "class_pixels": {name: int(n) for name, n in zip(
            self.class_names, self.histogram if self.histogram is not None else [])},
        "labelled_pixels": total, "ignored_pixels": self.ignored_pixels,
        "errors": len(self.errors), "warnings": len(self.warnings),
        "problems": [dict(dataclasses.asdict(p), severity=p.severity) for p in self.problems],
    }

  def text(self, max_problems: int = 50) -> str:
    lines = [f"dataset folder {self.root}: {len(self.class_names)} classes, labels are "
             f"{'RGB colour-coded' if self.colour_coded else 'class indices'}"
             + (" (sampled)" if self.sampled else "")]
    for split, info in self.splits.items():
      size = "no readable image" if not info.get("min_size") else (
          "images {}x{} .. {}x{} (h x w)".format(*info["min_size"], *info["max_size"]))
      lines.append(f"split {split}: {info['pairs']} pairs, {size}")
    if self.histogram is not None:
      total = int(self.histogram.sum()) + self.ignored_pixels
      lines.append(f"class pixels over {self.labels_read} labels:")
      width = max([len(n) for n in self.class_names] + [7])
      for index, (name, count) in enumerate(zip(self.class_names, self.histogram)):
        lines.append(f"  {index:3d} {name:<{width}} {int(count):>12,d} "
                     f"{100.0 * count / max(total, 1):6.2f}%")
      lines.append(f"      {'ignored':<{width}} {self.ignored_pixels:>12,d} "
                   f"{100.0 * self.ignored_pixels / max(total, 1):6.2f}%")
    lines.append(f"problems: {len(self.errors)} error(s), {len(self.warnings)} warning(s)")
    ordered = self.errors + self.warnings  # errors first, each in discovery order
    for problem in ordered[:max_problems]:
      lines.append(f"  {problem.severity:<7} {problem.kind}: {problem.message}")
    if len(self.problems) > max_problems:
      lines.append(f"  ... {len(self.problems) - max_problems} more (--max_problems, --json)")
    lines.append("verdict: " + ("training may start" if self.ok else
                                "training may NOT start: fix the errors above"))
    return "\n".join(lines)

  def first_errors(self, n: int = 3) -> str:
    errors = self.errors
    more = f" (and {len(errors) - n} more)" if len(errors) > n else ""
    return "; ".join(f"{p.kind}: {p.message}" for p in errors[:n]) + more


def _structure(report: Report, listing: folder.Listing) -> None:
  for path in listing.unpaired_images:
    report.add("unpaired_image", path, f"image {path} has no label (expected "
               f"labels/<split>/<same relative name>.png)")
  for path in listing.unpaired_labels:
    report.add("unpaired_label", path, f"label {path} has no image (expected "
               f"images/<split>/<same relative name>.jpg/.jpeg/.png)")
  for path, why in listing.stray:
    kind = "duplicate_name" if why.startswith("has the same name") else "ignored_file"
    report.add(kind, path, f"{path}: {why}")
  for split in listing.splits:
    if not folder.valid_split_name(split):
      report.add("split_name", split, f"split folder {split!r} must be named with letters, "
                 f"digits and _ only")
  if not any(listing.splits.values()):
    report.add("no_pairs", listing.root, f"{listing.root} holds no image/label pair; "
               f"expected layout: {folder.LAYOUT}")
  elif "train" not in listing.splits:
    report.add("missing_split", listing.root, f"{listing.root} has no images/train/ split "
               f"(its splits: {', '.join(listing.splits)})")
  if listing.splits and not any(s in listing.splits for s in ("val", "validation", "valid")):
    report.add("no_validation", listing.root, f"{listing.root} has no images/val/ split; "
               f"evaluation and the proxy need one (or bind evaluate.split)")


def _check_pair(pair: folder.Pair, table: Optional[folder.ClassTable],
                settings: folder.FolderSettings):
  """(image (h, w) or None, LabelResult or None, [(kind, path, message)])."""
  problems = []
  try:
    size = folder_files.decode_image(pair.image)
  except (OSError, ValueError, SyntaxError) as e:
    size = None
    problems.append(("unreadable", pair.image, f"image {pair.image} cannot be read: "
                     f"{' '.join(str(e).split())}"))
  if table is None:
    return size, None, problems
  label = folder_files.read_label(pair.label, table, settings)
  if label.problem is not None:
    problems.append((label.problem[0], pair.label, label.problem[1]))
  if size is not None and label.ids is not None and label.ids.shape[:2] != size:
    problems.append(("size_mismatch", pair.label,
                     f"label {pair.label} is {label.ids.shape[0]}x{label.ids.shape[1]} but "
                     f"its image {pair.image} is {size[0]}x{size[1]}"))
  return size, label, problems


def inspect_folder(settings: folder.FolderSettings, sample: Optional[int] = None,
                   seed: int = 0, workers: int = 4) -> Report:
  """Checks the folder; sample=N decodes only N random pairs per split (the rest of the
  checks always cover every file). Raises DpcError only if the root or its images/ or
  labels/ folder is missing (nothing to report on)."""
  report = Report(settings.root, sampled=sample is not None)
  listing = folder.list_folder(settings.root)
  table = None
  try:
    table = folder.read_classes(settings.root)
    report.class_names = table.names
    report.colour_coded = table.colours is not None
    report.histogram = np.zeros(len(table.names), np.int64)
  except DpcError as e:
    report.add("classes", f"{settings.root}/classes.txt", str(e))
  _structure(report, listing)
  rng = random.Random(seed)
  jobs = []
  for split, pairs in listing.splits.items():
    chosen = pairs if sample is None or len(pairs) <= sample else rng.sample(pairs, sample)
    jobs += [(split, pair) for pair in chosen]
  sizes = {split: [] for split in listing.splits}
  with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
    results = pool.map(lambda job: _check_pair(job[1], table, settings), jobs)
    for (split, _), (size, label, problems) in zip(jobs, results):
      if size is not None:
        sizes[split].append(size)
      if label is not None and label.counts is not None:
        report.histogram += label.counts
        report.ignored_pixels += label.ignored
        report.labels_read += 1
      for problem in problems:
        report.add(*problem)
  for split, pairs in listing.splits.items():
    info = {"pairs": len(pairs)}
    if sizes[split]:
      heights, widths = zip(*sizes[split])
      info.update(min_size=[min(heights), min(widths)], max_size=[max(heights), max(widths)])
    report.splits[split] = info
  if report.histogram is not None and report.labels_read:
    labelled = int(report.histogram.sum())
    if report.ignored_pixels > labelled:
      share = 100.0 * report.ignored_pixels / (report.ignored_pixels + labelled)
      report.add("mostly_ignored", settings.root, f"{share:.0f}% of the label pixels read are "
                 f"the ignore value ({settings.ignore_label}); binary masks saved as 0/255 "
                 f"must be 0/1 (or bind folder_dataset.ignore_label)")
  if report.histogram is not None and sample is None and report.labels_read:
    for index, name in enumerate(report.class_names):
      if report.histogram[index] == 0:
        report.add("class_never_occurs", name, f"class {index} {name!r} occurs in no label "
                   f"(its IOU will be missing or 0; is classes.txt in the right order?)")
  return report


_CHECKED: set[str] = set()


def require_trainable(name: str) -> None:
  """The start-up check: raises one DpcError line naming the first problems, once per
  process and folder content."""
  settings = folder.settings_for(name)
  listing = folder.list_folder(settings.root)
  key = f"{listing.fingerprint}/{folder.settings_digest(settings)}"
  if key in _CHECKED:
    return
  report = inspect_folder(settings, sample=STARTUP_SAMPLE)
  if not report.ok:
    raise DpcError(f"dataset folder {settings.root} has {len(report.errors)} problem(s) "
                   f"(python -m dpc_tf.data.inspect --root={settings.root} lists them all): "
                   f"{report.first_errors()}")
  _CHECKED.add(key)
