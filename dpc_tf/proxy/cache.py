"""The on-disk feature cache: a manifest plus checksummed, atomically written shards.

Layout of a cache folder:

    DIR/manifest.json        identity (what made the features) + one entry per role
    DIR/train-00000.npz ...  shards of the "train" role: features [n,h,w,c], labels [n,H,W,1]
    DIR/eval-00000.npz ...   shards of the "eval" role
    DIR/.lock                held (flock) by the one process writing the cache

A role is what a split is used for by the proxy ("train": the cell trains on it, "eval": its
mIOU is the score). The manifest records, per role, the settings that made it, every
finished shard with its example count and SHA-256, and whether the role is complete. A shard
is written to a temporary file and renamed, and only then added to the manifest (also
rewritten atomically), so a crash at any instant loses at most the shard being written: a
resumed pass starts at the first shard the manifest does not list.

Identity and role settings are compared on every open for writing: a cache made with other
settings (another backbone, checkpoint, crop, ...) is refused with one line naming what
differs, never silently mixed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from typing import Iterator, Optional, Sequence

import numpy as np

from dpc_tf.errors import DpcError
from dpc_tf.utils import differences, locks
from dpc_tf.utils.files import JsonError, read_json, write_bytes_atomic, write_json_atomic

FORMAT = "dpc_tf.feature_cache/1"
MANIFEST = "manifest.json"
ROLES = ("train", "eval")


class CacheError(DpcError):
  """A cache cannot be used as asked; the message is one line naming the cache and why."""


class CacheMismatchError(CacheError):
  """The cache on disk was made with different settings than the ones asked for."""


class CorruptShardError(CacheError):
  """A shard's bytes do not match the checksum the manifest recorded for it."""


class IncompleteCacheError(CacheError):
  """A role was asked for that the cache lacks or has not finished."""


def shard_filename(role: str, index: int) -> str:
  return f"{role}-{index:05d}.npz"


def sha256(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def encode_shard(features: np.ndarray, labels: np.ndarray) -> bytes:
  """Uncompressed npz: features compress poorly and decompression would sit on the step path."""
  buffer = io.BytesIO()
  np.savez(buffer, features=features, labels=labels)
  return buffer.getvalue()


def decode_shard(data: bytes) -> tuple[np.ndarray, np.ndarray]:
  with np.load(io.BytesIO(data), allow_pickle=False) as npz:
    return npz["features"], npz["labels"]


def describe_differences(found: dict, wanted: dict, prefix: str = "") -> list[str]:
  """Human-readable 'key: cache has X, asked for Y' for every differing (nested) key."""
  return differences.describe_differences(
      found, wanted, lambda key, a, b: f"{key}: cache has {a!r}, asked for {b!r}",
      missing="<unset>", prefix=prefix)


class Manifest:
  """manifest.json as a dict, with atomic saves. `identity` is shared by every role."""

  def __init__(self, cache_dir: str, data: dict):
    self.cache_dir = cache_dir
    self.data = data

  @property
  def path(self) -> str:
    return os.path.join(self.cache_dir, MANIFEST)

  @classmethod
  def load(cls, cache_dir: str) -> Optional["Manifest"]:
    path = os.path.join(cache_dir, MANIFEST)
    if not os.path.exists(path):
      return None
    try:
      data = read_json(path, "cache manifest")
    except JsonError as e:
      raise CacheError(f"{e}; delete the cache folder and re-run caching") from None
    if not isinstance(data, dict) or not isinstance(data.get("roles"), dict) \
        or not isinstance(data.get("identity"), dict):
      raise CacheError(f"{path}: not a feature-cache manifest (an object with 'format', "
                       "'identity' and 'roles'); delete the cache folder and re-run caching")
    if data.get("format") != FORMAT:
      raise CacheError(f"{path}: format {data.get('format')!r} is not {FORMAT!r}")
    return cls(cache_dir, data)

  @classmethod
  def create(cls, cache_dir: str, identity: dict) -> "Manifest":
    return cls(cache_dir, {"format": FORMAT, "identity": differences.as_json(identity),
                           "roles": {}})

  @property
  def identity(self) -> dict:
    return self.data["identity"]

  def role(self, role: str) -> Optional[dict]:
    return self.data["roles"].get(role)

  def save(self) -> None:
    write_json_atomic(self.path, self.data)

  def check_identity(self, identity: dict, ignore: Sequence[str] = ()) -> None:
    """CacheMismatchError naming every differing key (keys in `ignore` are not compared)."""
    found = {k: v for k, v in self.identity.items() if k not in ignore}
    wanted = {k: v for k, v in identity.items() if k not in ignore}
    _refuse(self.cache_dir, describe_differences(found, wanted))

  def check_role(self, role: str, settings: dict) -> None:
    """CacheMismatchError if the role exists with other settings (absent roles pass)."""
    entry = self.role(role)
    if entry is not None:
      _refuse(self.cache_dir, describe_differences(entry["settings"], settings, f"{role}."))


def _refuse(cache_dir: str, diffs: list[str]) -> None:
  if diffs:
    raise CacheMismatchError(f"cache {cache_dir} was made with different settings: "
                             f"{'; '.join(diffs)} (use another --cache_dir or delete it)")


@contextlib.contextmanager
def writer_lock(cache_dir: str):
  """One writer per cache folder; a second one fails at once instead of interleaving shards."""
  os.makedirs(cache_dir, exist_ok=True)
  with locks.folder_lock(cache_dir, ".lock", what="is being written by another process",
                         error_class=CacheError):
    for name in os.listdir(cache_dir):  # half-written files of a writer that was killed
      if name.startswith(".tmp-"):
        os.unlink(os.path.join(cache_dir, name))
    yield


class RoleWriter:
  """Appends shards to one role of a cache. Use inside writer_lock.

  Opening checks the identity and the role's settings against the manifest; a finished role
  with the same settings is reported `complete` and must not be rewritten.
  """

  def __init__(self, cache_dir: str, identity: dict, role: str, settings: dict):
    if role not in ROLES:
      raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    self.cache_dir = cache_dir
    self.role_name = role
    manifest = Manifest.load(cache_dir)
    if manifest is None:
      manifest = Manifest.create(cache_dir, identity)
    else:
      manifest.check_identity(identity)
    self.manifest = manifest
    manifest.check_role(role, settings)
    entry = manifest.role(role)
    if entry is None:
      entry = {"settings": differences.as_json(settings), "complete": False, "count": 0,
               "shards": []}
      manifest.data["roles"][role] = entry
      manifest.save()
    self.entry = entry

  @property
  def complete(self) -> bool:
    return bool(self.entry["complete"])

  @property
  def done_examples(self) -> int:
    return int(sum(s["count"] for s in self.entry["shards"]))

  @property
  def done_shards(self) -> int:
    return len(self.entry["shards"])

  def write_shard(self, features: np.ndarray, labels: np.ndarray) -> str:
    """Writes the next shard atomically, then records it in the manifest (atomically)."""
    if self.complete:
      raise CacheError(f"cache {self.cache_dir}: role {self.role_name} is already complete")
    if len(features) != len(labels) or not len(features):
      raise ValueError(f"a shard needs as many labels as features (>0), got "
                       f"{len(features)} and {len(labels)}")
    shapes = {"feature_shape": list(features.shape[1:]), "label_shape": list(labels.shape[1:]),
              "feature_dtype": str(features.dtype), "label_dtype": str(labels.dtype)}
    for key, value in shapes.items():
      if self.entry.setdefault(key, value) != value:
        raise CacheError(f"cache {self.cache_dir}: role {self.role_name} shard "
                         f"{self.done_shards} has {key} {value}, earlier shards "
                         f"{self.entry[key]}")
    name = shard_filename(self.role_name, self.done_shards)
    data = encode_shard(features, labels)
    write_bytes_atomic(os.path.join(self.cache_dir, name), data)
    self.entry["shards"].append({"file": name, "count": int(len(features)),
                                 "bytes": len(data), "sha256": sha256(data)})
    self.entry["count"] = self.done_examples
    self.manifest.save()
    return name

  def finish(self, extra: Optional[dict] = None) -> None:
    if not self.entry["shards"]:
      raise CacheError(f"cache {self.cache_dir}: role {self.role_name} got no examples "
                       f"(is the dataset split empty?)")
    self.entry.update(differences.as_json(extra or {}))
    self.entry["complete"] = True
    self.manifest.save()


class CachedRole:
  """Read side of one finished role: shapes, counts, verified shard reads."""

  def __init__(self, cache_dir: str, role: str, entry: dict, identity: dict):
    self.cache_dir = cache_dir
    self.role = role
    self.entry = entry
    self.identity = identity

  @property
  def count(self) -> int:
    return int(self.entry["count"])

  @property
  def feature_shape(self) -> tuple[int, ...]:
    return tuple(self.entry["feature_shape"])

  @property
  def label_shape(self) -> tuple[int, ...]:
    return tuple(self.entry["label_shape"])

  @property
  def feature_dtype(self) -> np.dtype:
    return np.dtype(self.entry["feature_dtype"])

  @property
  def settings(self) -> dict:
    return self.entry["settings"]

  @property
  def nbytes(self) -> int:
    """Bytes of the decoded arrays (what holding the role in memory costs)."""
    per_example = (np.prod(self.feature_shape) * self.feature_dtype.itemsize
                   + np.prod(self.label_shape) * np.dtype(self.entry["label_dtype"]).itemsize)
    return int(per_example * self.count)

  @property
  def shards(self) -> list[dict]:
    return self.entry["shards"]

  def read_shard(self, index: int) -> tuple[np.ndarray, np.ndarray]:
    shard = self.shards[index]
    path = os.path.join(self.cache_dir, shard["file"])
    try:
      with open(path, "rb") as f:
        data = f.read()
    except OSError as e:
      raise CorruptShardError(f"shard {path}: unreadable ({e.strerror}); re-run caching "
                              f"into a fresh --cache_dir") from None
    if sha256(data) != shard["sha256"]:
      raise CorruptShardError(f"shard {path}: checksum mismatch (sha256 {sha256(data)[:12]}..., "
                              f"manifest says {shard['sha256'][:12]}...); the cache is "
                              f"corrupted, delete it and re-run caching")
    features, labels = decode_shard(data)
    if len(features) != shard["count"]:
      raise CorruptShardError(f"shard {path}: holds {len(features)} examples, manifest says "
                              f"{shard['count']}")
    return features, labels

  def iter_range(self, start: int = 0,
                 stop: Optional[int] = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Examples [start, stop) in order, one overlapping shard's slice at a time."""
    stop = self.count if stop is None else min(stop, self.count)
    offset = 0
    for index, shard in enumerate(self.shards):
      lo, hi = offset, offset + shard["count"]
      offset = hi
      if hi <= start or lo >= stop:
        continue
      features, labels = self.read_shard(index)
      a, b = max(lo, start) - lo, min(hi, stop) - lo
      yield features[a:b], labels[a:b]

  def load(self, start: int = 0, stop: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """Examples [start, stop) as two arrays, preallocated so peak memory is one copy."""
    stop = self.count if stop is None else min(stop, self.count)
    n = max(stop - start, 0)
    features = np.empty((n,) + self.feature_shape, self.feature_dtype)
    labels = np.empty((n,) + self.label_shape, np.dtype(self.entry["label_dtype"]))
    filled = 0
    for f, l in self.iter_range(start, stop):
      features[filled:filled + len(f)] = f
      labels[filled:filled + len(l)] = l
      filled += len(f)
    return features, labels


class FeatureCache:
  """A finished (or partly finished) cache folder, opened for reading."""

  def __init__(self, cache_dir: str):
    manifest = Manifest.load(cache_dir)
    if manifest is None:
      raise IncompleteCacheError(f"{cache_dir} holds no {MANIFEST}: run "
                                 f"`python -m dpc_tf.cache_features --cache_dir={cache_dir}` first")
    self.cache_dir = cache_dir
    self.manifest = manifest

  @property
  def identity(self) -> dict:
    return self.manifest.identity

  def role(self, role: str) -> CachedRole:
    entry = self.manifest.role(role)
    if entry is None or not entry.get("complete"):
      state = "missing" if entry is None else f"unfinished ({entry['count']} examples so far)"
      raise IncompleteCacheError(f"cache {self.cache_dir}: role {role!r} is {state}; run (or "
                                 f"resume) `python -m dpc_tf.cache_features` for it")
    check_role_entry(self.cache_dir, role, entry, self.identity)
    return CachedRole(self.cache_dir, role, entry, self.identity)


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def check_role_entry(cache_dir: str, role: str, entry: dict, identity: dict) -> None:
  """CacheError naming the field when a finished role's manifest entry is inconsistent
  (hand-edited or damaged): counts that do not add up, shapes that do not fit the crop and
  output stride, class settings that are not integers."""
  where = f"cache {cache_dir}: manifest role {role!r}"

  def refuse(field: str, why: str):
    raise CacheError(f"{where}: {field} {why}; the manifest was edited or damaged, delete "
                     "the cache and re-run caching")

  for key in ("num_classes", "ignore_label", "output_stride"):
    if key in identity and not _is_int(identity[key]):
      refuse(f"identity.{key}", f"is {identity[key]!r}, not an integer")
  shards = entry.get("shards")
  if not isinstance(shards, list) or not shards:
    refuse("shards", "is not a non-empty list")
  for i, shard in enumerate(shards):
    if not isinstance(shard, dict) or not isinstance(shard.get("file"), str) \
        or not _is_int(shard.get("count")) or shard["count"] < 1 \
        or not isinstance(shard.get("sha256"), str) or os.sep in shard["file"]:
      refuse(f"shards[{i}]", "is not {file, count >= 1, sha256} of a file in the cache")
  total = sum(shard["count"] for shard in shards)
  if not _is_int(entry.get("count")) or entry["count"] != total:
    refuse("count", f"is {entry.get('count')!r} but its shards hold {total} examples")
  for key in ("feature_shape", "label_shape"):
    shape = entry.get(key)
    if not isinstance(shape, list) or len(shape) != 3 or not all(
        _is_int(v) and v > 0 for v in shape):
      refuse(key, f"is {shape!r}, not [h, w, c] of positive integers")
  settings = entry.get("settings")
  crop, stride = (settings or {}).get("crop"), identity.get("output_stride")
  if isinstance(crop, list) and len(crop) == 2 and all(_is_int(c) for c in crop) and stride:
    expected = [(c - 1) // stride + 1 for c in crop]
    if entry["feature_shape"][:2] != expected:
      refuse("feature_shape", f"{entry['feature_shape'][:2]} does not fit crop {crop} at "
             f"output stride {stride} (expected {expected})")
    if settings.get("label_resolution", "crop") == "crop" and entry["label_shape"][:2] != crop:
      refuse("label_shape", f"{entry['label_shape'][:2]} is not the crop {crop}")
