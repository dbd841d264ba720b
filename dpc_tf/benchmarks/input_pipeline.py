"""Input-pipeline throughput at Cityscapes size (1024x2048), on this machine's CPU.

Cityscapes itself needs a manual download, so the benchmark feeds the real pipeline
(`dpc_tf.data.pipeline_from_source`, the code behind `build_input_pipeline`) with
Cityscapes-shaped data held in memory: smooth random images and blocky labelId masks,
PNG-encoded as tfds stores them. Three variants separate the costs:

  decode       PNG decode + labelId -> trainId lookup + eval padding to 1025x2049
  augment      DeepLab training preprocessing (scale 0.5..2.0, pad, crop 769, flip) on
               already decoded images
  full         decode + augment: what a Cityscapes training run reads
  synthetic    the default dpc_synthetic training pipeline (257x257, generated on the fly),
               what the demo search and CI read

File reading is left out (tfds records on local disk cost little next to PNG decoding).
The trainer's step rate is measured beside these figures at the same crop and batch, so that
one can see whether input or compute bounds training: one SGD step of MobileNet-v2 + the
released DPC + decoder (the cheapest full model, so the hardest case for the pipeline) on
random data already in memory.
"""

from __future__ import annotations

import os
import time

import numpy as np
import tensorflow as tf
from absl import flags

from dpc_tf import data
from dpc_tf.data import cityscapes

flags.DEFINE_integer("input_pipeline_batches", 40, "Timed batches per variant (after warm-up).")
flags.DEFINE_integer("input_pipeline_batch_size", 4, "Images per batch.")
flags.DEFINE_integer("input_pipeline_trainer_steps", 3, "Timed trainer steps (after a warm-up).")
flags.DEFINE_integer("input_pipeline_distinct", 4, "Distinct in-memory images, cycled.")
flags.DEFINE_integer("input_pipeline_crop", 769, "Training crop (Cityscapes: 769).")
FLAGS = flags.FLAGS

_HEIGHT, _WIDTH = 1024, 2048


def _fake_cityscapes(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """(PNG images, PNG labelId masks) as bytes arrays: smooth content compresses like photos
  more than noise would, so the decode cost is realistic."""
  rng = np.random.default_rng(seed)
  images, masks = [], []
  for _ in range(count):
    coarse = rng.uniform(0, 255, (1, 32, 64, 3)).astype(np.float32)
    image = tf.image.resize(coarse, (_HEIGHT, _WIDTH), method="bilinear")[0]
    image += rng.normal(0, 6, image.shape)
    image = tf.cast(tf.clip_by_value(image, 0, 255), tf.uint8)
    ids = rng.integers(0, 34, (1, 16, 32, 1)).astype(np.float32)
    mask = tf.cast(tf.image.resize(ids, (_HEIGHT, _WIDTH), method="nearest")[0], tf.uint8)
    images.append(tf.io.encode_png(image).numpy())
    masks.append(tf.io.encode_png(mask).numpy())
  return np.array(images, dtype=object), np.array(masks, dtype=object)


def _png_source(images, masks) -> data.Source:
  raw = tf.data.Dataset.from_tensor_slices({"image": images, "mask": masks})

  def decode(example):
    image = tf.io.decode_png(example["image"], channels=3)
    image.set_shape((_HEIGHT, _WIDTH, 3))
    mask = tf.io.decode_png(example["mask"], channels=1)
    mask.set_shape((_HEIGHT, _WIDTH, 1))
    return {"image": image, "segmentation_mask": cityscapes.labelids_to_trainids(mask)}

  return data.Source(raw, decode, len(images))


def _decoded_source(source: data.Source) -> data.Source:
  decoded = source.dataset.map(source.decode).cache()
  return data.Source(decoded, lambda example: example, source.num_examples)


def _time(ds: tf.data.Dataset, batches: int, batch_size: int) -> dict:
  iterator = iter(ds)
  for _ in range(2):  # warm-up: tracing, thread pools, autotuning, the cache
    next(iterator)
  start = time.perf_counter()
  for _ in range(batches):
    images, _ = next(iterator)
  images.numpy()
  seconds = time.perf_counter() - start
  count = batches * batch_size
  return {"images": count, "seconds": round(seconds, 2),
          "images_per_second": round(count / seconds, 2)}


def run() -> dict:
  spec = data.get_spec("cityscapes")
  batch, crop = FLAGS.input_pipeline_batch_size, FLAGS.input_pipeline_crop
  load_before = os.getloadavg()[0]
  images, masks = _fake_cityscapes(FLAGS.input_pipeline_distinct)
  png_mb = round(float(np.mean([len(x) for x in images])) / 1e6, 2)
  png = _png_source(images, masks)
  decoded = _decoded_source(png)
  variants = {}
  pipelines = {
      "decode": data.pipeline_from_source(png, spec, batch, is_training=False, repeat=True),
      "augment": data.pipeline_from_source(decoded, spec, batch, crop_size=crop,
                                           is_training=True, seed=0),
      "full": data.pipeline_from_source(png, spec, batch, crop_size=crop, is_training=True,
                                        seed=0),
  }
  for name, pipeline in pipelines.items():
    variants[name] = _time(pipeline, FLAGS.input_pipeline_batches, batch)
  synthetic_batch = 16
  variants["synthetic"] = _time(
      data.build_input_pipeline("dpc_synthetic", "train", synthetic_batch, is_training=True,
                                seed=0), FLAGS.input_pipeline_batches, synthetic_batch)
  return {
      "image_size": [_HEIGHT, _WIDTH], "crop": [crop, crop], "batch_size": batch,
      "scales": list(spec.train_scales), "eval_crop": list(spec.eval_crop),
      "load_average_before": round(load_before, 2), "image_png_mb": png_mb,
      "variants": variants,
      "trainer": _trainer_rate(crop, batch, spec.num_classes),
  }


def _trainer_rate(crop: int, batch: int, num_classes: int) -> dict:
  """images/s of a training step (forward, loss, backward, SGD update) at this crop."""
  from dpc_tf import models  # pylint: disable=import-outside-toplevel
  import keras  # pylint: disable=import-outside-toplevel
  model = models.build_deeplab(num_classes, backbone="mobilenet_v2", crop_size=(crop, crop))
  optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
  loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255)
  rng = np.random.default_rng(0)
  images = tf.constant(rng.uniform(0, 255, (batch, crop, crop, 3)), tf.float32)
  labels = tf.constant(rng.integers(0, num_classes, (batch, crop, crop, 1)), tf.int32)

  @tf.function
  def step():
    with tf.GradientTape() as tape:
      loss = loss_fn(labels, model(images, training=True)) + tf.add_n(model.losses)
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return loss

  step()  # trace and warm up
  steps = FLAGS.input_pipeline_trainer_steps
  start = time.perf_counter()
  for _ in range(steps):
    step()
  seconds = time.perf_counter() - start
  return {"model": "mobilenet_v2 + released DPC + decoder", "steps": steps,
          "seconds": round(seconds, 2), "images_per_second": round(steps * batch / seconds, 2)}


_DESCRIPTIONS = {
    "decode": "PNG decode + trainId lookup + pad to eval crop",
    "augment": "training preprocessing only (scale, pad, crop, flip)",
    "full": "decode + training preprocessing",
    "synthetic": "dpc_synthetic 257x257: generation + training preprocessing (batch 16)",
}


def to_markdown(result: dict) -> str:
  h, w = result["image_size"]
  lines = [
      f"Cityscapes-sized {h}x{w} PNGs ({result.get('image_png_mb', '?')} MB each; real "
      f"Cityscapes images are about 2 MB) through `dpc_tf.data`'s pipeline, batch "
      f"{result['batch_size']}, training crop {result['crop'][0]}x{result['crop'][1]}, "
      f"scales {result['scales'][0]}..{result['scales'][-1]}; CPU load average before the "
      f"run: {result['load_average_before']} (the machine is shared, so figures are lower "
      f"bounds).",
      "",
      "| variant | what runs | images/s | images | seconds |",
      "|---|---|---|---|---|",
  ]
  for name, v in result["variants"].items():
    lines.append(f"| {name} | {_DESCRIPTIONS.get(name, '')} | {v['images_per_second']} | "
                 f"{v['images']} | {v['seconds']} |")
  trainer = result.get("trainer")
  lines.append("")
  if trainer:
    full = result["variants"]["full"]["images_per_second"]
    verdict = ("the pipeline is not the bottleneck" if full > trainer["images_per_second"]
               else "the pipeline IS the bottleneck")
    lines.append(f"Trainer at the same crop and batch ({trainer['model']}, one SGD step on "
                 f"data in memory): {trainer['images_per_second']} images/s over "
                 f"{trainer['steps']} steps, against {full} images/s from the full pipeline: "
                 f"{verdict} ({full / trainer['images_per_second']:.1f}x headroom).")
  else:
    lines.append("Trainer step rate at this crop: not measured in this result.")
  return "\n".join(lines)
