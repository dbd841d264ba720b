"""dpc_synthetic: a procedural segmentation dataset in which multi-scale context decides the class.

It is the project's embedded default dataset (tests, the demo search and CI use it): no
download, deterministic by seed, each example generated independently from
(seed, split, index) so that any example can be produced alone, in any order, in parallel.

Why context matters. Every object is filled with the *same kind* of texture (sinusoidal
stripes, random period, angle and colours), so the few pixels around a point never tell its
class; only context at several scales does:

  1 small disc       radius  8..14 u   } the same fill; a pixel inside a large disc must see
  2 large disc       radius 30..46 u   } an edge 30+ px away to know the disc is large.
  3 red-framed square  half side 32..56 u, a 6 u solid red frame   } interior pixels are up
  4 blue-framed square the same with a blue frame                  } to ~50 px from the only
                                                                    } pixels that decide.
  5 day diamond      (L1 ball, radius 28..44 u) in an image whose background is sprinkled
                      with *dark* 4u x 4u spots (one per (16 u)^2 on average)
  6 night diamond    the same shape in an image sprinkled with *bright* spots. No spot
                      lies within 40 u of a diamond's edge (its "halo", in both scenes), so
                      the cue is 40..84 u from any diamond pixel: beyond the object and its
                      immediate surroundings, only far context (large rates, pooling) sees
                      it. At most two diamonds per 257x257 u-area keep the cue visible.
  0 background       smooth low-frequency grey noise (plus the spots).

where u = min(height, width) / 257. Large discs and diamonds overlap in size: telling them
apart needs the shape at object scale (corners). The three pairs need context at three
ranges: discs up to ~46 u (the object), framed squares up to ~56 u (the object's border),
diamonds 40..84 u (beyond the object). A head that only looks at a feature cell and its
neighbours (1x1 convs, small rates) has to rely on what the backbone's features already
carry, while large rates and pyramid pooling reach the far cues: cells score differently.
Boundaries (pixels with a 4-neighbour of another class) are labelled 255 (ignore), as in
PASCAL VOC, so that the score measures recognition rather than boundary precision at output
stride 16.

Object sizes are a class cue, so the spec's training scale set is narrowed to 0.75..1.25
(small discs stay under 18 u, large ones over 22 u).

Configs: default 257x257 with 1,536 train / 256 validation examples (about 8 ms per example
on one core: ~14 s for all of it); tiny 129x129, 32 / 16 (tests); wide 257x513, 1,024 / 256.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from dpc_tf.data.specs import IGNORE_LABEL

SPLITS = ("train", "validation")
_RED = np.array([225.0, 35.0, 35.0], np.float32)
_BLUE = np.array([35.0, 35.0, 225.0], np.float32)
_DARK_SPOT = np.array([25.0, 25.0, 25.0], np.float32)
_BRIGHT_SPOT = np.array([245.0, 245.0, 230.0], np.float32)
# Object types: (class id or None for the colour/scene-decided ones, sampling weight).
_SMALL_DISC, _LARGE_DISC, _FRAMED, _DIAMOND = range(4)
_TYPE_WEIGHTS = np.array([0.25, 0.2, 0.25, 0.3])
# Spot-free margin around diamonds (in u): the day/night cue starts this far from the edge.
_HALO = 40


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
  """Size and count of one synthetic configuration.

  `objects_per_unit_area` is the (min, max) number of objects for a 257x257 area at u = 1;
  it scales with the image area in units of u so that every config has the same density.
  """
  name: str
  height: int
  width: int
  train_examples: int
  validation_examples: int
  seed: int = 0
  objects_per_unit_area: tuple[int, int] = (3, 6)

  def num_examples(self, split: str) -> int:
    if split not in SPLITS:
      raise ValueError(f"dpc_synthetic has splits {SPLITS}, not {split!r}")
    return self.train_examples if split == "train" else self.validation_examples


SYNTHETIC_CONFIGS = (
    SyntheticConfig("default", 257, 257, train_examples=1536, validation_examples=256),
    SyntheticConfig("tiny", 129, 129, train_examples=32, validation_examples=16),
    SyntheticConfig("wide", 257, 513, train_examples=1024, validation_examples=256),
)


def get_config(name: str = "default") -> SyntheticConfig:
  for config in SYNTHETIC_CONFIGS:
    if config.name == name:
      return config
  raise ValueError(f"unknown dpc_synthetic config {name!r}; known: "
                   f"{', '.join(c.name for c in SYNTHETIC_CONFIGS)}")


def _smooth_field(rng: np.random.Generator, height: int, width: int, cell: float,
                  channels: int) -> np.ndarray:
  """Low-frequency noise [H, W, C]: a coarse normal grid, linearly interpolated along the
  columns and then the rows (separable, vectorised). Not matrix products: multithreaded BLAS
  on such small matrices is 100x slower on a loaded machine."""
  gh, gw = int(np.ceil(height / cell)) + 2, int(np.ceil(width / cell)) + 2
  coarse = rng.standard_normal(size=(gh, gw, channels), dtype=np.float32)
  x = np.arange(width, dtype=np.float32) / cell
  x0 = x.astype(int)
  wx = (x - x0)[None, :, None]
  columns = coarse[:, x0] * (1 - wx) + coarse[:, x0 + 1] * wx  # [gh, W, C]
  y = np.arange(height, dtype=np.float32) / cell
  y0 = y.astype(int)
  wy = (y - y0)[:, None, None]
  return columns[y0] * (1 - wy) + columns[y0 + 1] * wy


def _stripes(rng: np.random.Generator, ys: np.ndarray, xs: np.ndarray, u: float) -> np.ndarray:
  """The shared object fill: stripes of random period, angle, phase and two colours."""
  period = rng.uniform(5.0, 9.0) * max(u, 0.6)
  angle = rng.uniform(0.0, np.pi)
  phase = rng.uniform(0.0, 2 * np.pi)
  c1, c2 = rng.uniform(50.0, 210.0, size=(2, 3))
  wave = 0.5 + 0.5 * np.sin(2 * np.pi * (xs * np.cos(angle) + ys * np.sin(angle)) / period
                            + phase)
  return c1 + (c2 - c1) * wave[..., None]


def _place(rng: np.random.Generator, half: int, height: int, width: int,
           boxes: list[tuple[int, int, int, int]], gap: int) -> tuple[int, int] | None:
  """A centre whose (2 half + 1)^2 box fits the image and keeps `gap` from placed boxes."""
  if 2 * half + 3 > min(height, width):
    return None
  for _ in range(30):
    cy = int(rng.integers(half + 1, height - half - 1))
    cx = int(rng.integers(half + 1, width - half - 1))
    if all(cy + half + gap < y0 or cy - half - gap > y1 or cx + half + gap < x0
           or cx - half - gap > x1 for y0, y1, x0, x1 in boxes):
      return cy, cx
  return None


def generate_example(config: SyntheticConfig, split: str,
                     index: int) -> tuple[np.ndarray, np.ndarray]:
  """Example `index` of `split`: (image uint8 [H, W, 3], mask uint8 [H, W, 1])."""
  if not 0 <= index < config.num_examples(split):
    raise IndexError(f"dpc_synthetic/{config.name} {split} has {config.num_examples(split)} "
                     f"examples; index {index} is out of range")
  height, width = config.height, config.width
  rng = np.random.default_rng([config.seed, SPLITS.index(split), index])
  u = min(height, width) / 257.0
  night = bool(rng.random() < 0.5)

  # Background: the same distribution in day and night images; only the spots differ.
  grey = 120.0 + 28.0 * _smooth_field(rng, height, width, 40.0 * u, 1)
  tint = 10.0 * _smooth_field(rng, height, width, 64.0 * u, 3)
  image = grey + tint
  label = np.zeros((height, width), np.uint8)
  spot = max(2, int(round(4 * u)))
  num_spots = int(height * width / (16.0 * u) ** 2)
  sy = rng.integers(0, height - spot + 1, num_spots)
  sx = rng.integers(0, width - spot + 1, num_spots)

  area_units = height * width / (257.0 * u) ** 2
  low, high = config.objects_per_unit_area
  num_objects = int(rng.integers(max(1, round(low * area_units)),
                                 max(1, round(high * area_units)) + 1))
  types = rng.choice(4, size=num_objects, p=_TYPE_WEIGHTS)
  boxes: list[tuple[int, int, int, int]] = []
  diamonds: list[tuple[int, int, int]] = []
  # At most two diamonds per 257x257 u-area: their halos must leave the scene cue visible.
  max_diamonds = max(1, round(2 * area_units))
  gap = max(3, int(round(6 * u)))
  for kind in types:
    if kind == _DIAMOND and len(diamonds) == max_diamonds:
      continue
    if kind == _SMALL_DISC:
      half = int(round(rng.uniform(8, 14) * u))
    elif kind == _LARGE_DISC:
      half = int(round(rng.uniform(30, 46) * u))
    elif kind == _FRAMED:
      half = int(round(rng.uniform(32, 56) * u))
    else:
      half = int(round(rng.uniform(28, 44) * u))
    centre = _place(rng, half, height, width, boxes, gap)
    if centre is None:
      continue
    cy, cx = centre
    y0, y1, x0, x1 = cy - half, cy + half, cx - half, cx + half
    boxes.append((y0, y1, x0, x1))
    ys, xs = np.mgrid[y0:y1 + 1, x0:x1 + 1].astype(np.float32)
    dy, dx = ys - cy, xs - cx
    fill = _stripes(rng, ys, xs, u)
    if kind in (_SMALL_DISC, _LARGE_DISC):
      inside = dy * dy + dx * dx <= half * half
      cls = 1 if kind == _SMALL_DISC else 2
    elif kind == _FRAMED:
      inside = np.ones_like(dy, dtype=bool)
      red = bool(rng.random() < 0.5)
      frame = np.maximum(np.abs(dy), np.abs(dx)) > half - max(3, int(round(6 * u)))
      fill[frame] = _RED if red else _BLUE
      cls = 3 if red else 4
    else:
      inside = np.abs(dy) + np.abs(dx) <= half
      cls = 6 if night else 5
      diamonds.append((cy, cx, half))
    window = image[y0:y1 + 1, x0:x1 + 1]
    window[inside] = fill[inside]
    label[y0:y1 + 1, x0:x1 + 1][inside] = cls

  # Spots go on the background only, and never within the halo of a diamond: its scene cue
  # is at least _HALO u from its edge, beyond what the features around it show.
  centre_y, centre_x = sy + spot // 2, sx + spot // 2
  keep = np.ones(num_spots, dtype=bool)
  for cy, cx, half in diamonds:
    keep &= np.abs(centre_y - cy) + np.abs(centre_x - cx) > half + _HALO * u
  offsets = np.arange(spot)
  rows = (sy[keep, None, None] + offsets[None, :, None]).repeat(spot, axis=2)
  cols = (sx[keep, None, None] + offsets[None, None, :]).repeat(spot, axis=1)
  on_background = label[rows, cols] == 0
  image[rows[on_background], cols[on_background]] = _BRIGHT_SPOT if night else _DARK_SPOT

  image += 4.0 * rng.standard_normal(size=image.shape, dtype=np.float32)
  # Ignore a 2-pixel band on class boundaries, as PASCAL VOC does.
  edge = np.zeros_like(label, dtype=bool)
  vertical = label[1:] != label[:-1]
  horizontal = label[:, 1:] != label[:, :-1]
  edge[1:] |= vertical
  edge[:-1] |= vertical
  edge[:, 1:] |= horizontal
  edge[:, :-1] |= horizontal
  label[edge] = IGNORE_LABEL
  return np.clip(np.rint(image), 0, 255).astype(np.uint8), label[..., None]
