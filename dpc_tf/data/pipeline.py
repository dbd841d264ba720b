"""The batched input pipeline every trainer and evaluator uses, and its gin-configurable form.

Order: (shuffle raw elements) -> repeat -> zip per-example seeds -> parallel decode +
preprocess -> batch -> prefetch. Shuffling happens before decoding so that the buffer holds
encoded bytes (or synthetic indices), not decoded 1024x2048 images.
"""

from __future__ import annotations

import numbers
from typing import Optional, Sequence

import gin
import tensorflow as tf

from dpc_tf.data import preprocessing
from dpc_tf.data.loading import Source, open_source
from dpc_tf.data.specs import DatasetSpec, get_spec

# Shuffle buffers count raw elements; Cityscapes' encoded PNG pairs are ~2.5 MB each.
_SHUFFLE_BUFFER = {"cityscapes": 128}
_DEFAULT_SHUFFLE_BUFFER = 1024


def _crop(crop_size, default: tuple[int, int]) -> tuple[int, int]:
  if crop_size is None:
    return default
  crop = (crop_size, crop_size) if isinstance(crop_size, numbers.Integral) else tuple(crop_size)
  if len(crop) != 2 or not all(isinstance(c, numbers.Integral) and c > 0 for c in crop):
    raise ValueError(f"crop_size must be a positive int or (h, w), got {crop_size!r}")
  return int(crop[0]), int(crop[1])


def _check_arguments(batch_size: int, crop_size) -> None:
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  _crop(crop_size, (1, 1))


def build_input_pipeline(name: str, split: str, batch_size: int, crop_size=None,
                         is_training: bool = False, data_dir: Optional[str] = None,
                         manual_dir: Optional[str] = None,
                         scales: Optional[Sequence[float]] = None, seed: Optional[int] = None,
                         deterministic: bool = False, repeat: Optional[bool] = None,
                         drop_remainder: Optional[bool] = None,
                         shuffle_buffer: Optional[int] = None) -> tf.data.Dataset:
  """Batches of (images float32 [B, h, w, 3] in 0..255, labels int32 [B, h, w, 1], 255 = ignore).

  Args:
    name, split, data_dir, manual_dir: as for `load_split`.
    batch_size: examples per batch (global batch under tf.distribute, which splits it).
    crop_size: int or (h, w); the spec's train_crop (training) or eval_crop (eval) if None.
    is_training: DeepLab's augmentation and shuffling; otherwise pad to the eval crop.
    scales: random-scale set; the spec's train_scales (DeepLab: 0.5..2.0 step 0.25) if None.
    seed: makes shuffling and augmentation reproducible.
    deterministic: reproducible output order and content; implies seed 0 when seed is None.
      When False, tf.data may reorder elements for throughput.
    repeat: repeat forever; default True for training, False for evaluation.
    drop_remainder: drop the last partial batch; default True for training (static batch
      shape for the step function), False for evaluation (every image scored).
    shuffle_buffer: raw elements in the shuffle buffer (training only).
  """
  spec = get_spec(name)
  _check_arguments(batch_size, crop_size)  # before open_source, which may prepare data
  if deterministic and seed is None:
    seed = 0
  source = open_source(name, split, data_dir, manual_dir, shuffle_files=is_training, seed=seed)
  return pipeline_from_source(source, spec, batch_size, crop_size, is_training, scales, seed,
                              deterministic, repeat, drop_remainder, shuffle_buffer)


def pipeline_from_source(source: Source, spec: DatasetSpec, batch_size: int, crop_size=None,
                         is_training: bool = False, scales: Optional[Sequence[float]] = None,
                         seed: Optional[int] = None, deterministic: bool = False,
                         repeat: Optional[bool] = None, drop_remainder: Optional[bool] = None,
                         shuffle_buffer: Optional[int] = None) -> tf.data.Dataset:
  """The pipeline of `build_input_pipeline` over any Source (benchmarks feed their own)."""
  _check_arguments(batch_size, crop_size)
  crop = _crop(crop_size, spec.train_crop if is_training else spec.eval_crop)
  scales = tuple(spec.train_scales if scales is None else scales)
  if deterministic and seed is None:
    seed = 0
  repeat = is_training if repeat is None else repeat
  drop_remainder = is_training if drop_remainder is None else drop_remainder

  ds = source.dataset
  if is_training:
    buffer = shuffle_buffer or _SHUFFLE_BUFFER.get(spec.name, _DEFAULT_SHUFFLE_BUFFER)
    if source.num_examples:
      buffer = min(buffer, source.num_examples)
    ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
  if repeat:
    ds = ds.repeat()

  if is_training:
    # One stateless seed pair per example, drawn from a seeded stream: the augmentation of
    # example k is fixed by (seed, k) and not by which map thread runs it.
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(
        2, drop_remainder=True)
    ds = tf.data.Dataset.zip((ds, seeds))

    def transform(raw, example_seed):
      return preprocessing.preprocess_train(source.decode(raw), crop, scales, example_seed,
                                            spec.ignore_label)
  else:
    def transform(raw):
      return preprocessing.preprocess_eval(source.decode(raw), crop, spec.ignore_label,
                                           name=spec.name)

  ds = ds.map(transform, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
  ds = ds.batch(batch_size, drop_remainder=drop_remainder)
  options = tf.data.Options()
  options.deterministic = deterministic
  # tf.data's model-based autotuning off (AUTOTUNE then means the cores for the parallel map
  # and a buffer that grows when found empty for prefetch). With it on, dropping an iterator
  # after a compute-bound consumer stalled 13-51 s in 3 of 5 tries (generated and tfds-record
  # data alike, 2 cores; WORKSPACE_NOTES), i.e. at the end of every training or pretraining,
  # and 0 of 8 with it off; the pipeline gave 5-10% fewer images/s (input_pipeline benchmark),
  # with 25-50x headroom over the trainer on this CPU.
  options.autotune.enabled = False
  ds = ds.with_options(options)
  return ds.prefetch(tf.data.AUTOTUNE)


@gin.configurable("input_pipeline", module="dpc_tf.data")
def input_pipeline(name: str = gin.REQUIRED, split: str = gin.REQUIRED,
                   batch_size: int = gin.REQUIRED, crop_size=None, is_training: bool = False,
                   data_dir: Optional[str] = None, manual_dir: Optional[str] = None,
                   scales: Optional[Sequence[float]] = None, seed: Optional[int] = None,
                   deterministic: bool = False, repeat: Optional[bool] = None,
                   drop_remainder: Optional[bool] = None,
                   shuffle_buffer: Optional[int] = None) -> tf.data.Dataset:
  """`build_input_pipeline` for gin: bind e.g. `train/dpc_tf.data.input_pipeline.split`.

  A separate wrapper so that the plain function stays free of gin's global state (gin
  bindings are locked after parsing; callers that build per-trial pipelines call
  `build_input_pipeline` with explicit arguments).
  """
  return build_input_pipeline(name, split, batch_size, crop_size, is_training, data_dir,
                              manual_dir, scales, seed, deterministic, repeat, drop_remainder,
                              shuffle_buffer)
