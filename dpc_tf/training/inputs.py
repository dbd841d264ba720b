"""Training and evaluation data for the trainer, distributed and with one-line errors.

Each input pipeline (one per worker) builds the dataset with the *per-replica* batch size
and keeps every N-th batch (N = number of pipelines): with a seed every worker draws the
same shuffled stream, so the workers' batches are disjoint; without one they are
independent random streams. A resumed run re-seeds with `seed + start_step` so that it does
not replay the first batches of the interrupted run (tf.data iterators over generated data
cannot be checkpointed).
"""

from __future__ import annotations

import tensorflow as tf

from dpc_tf import data
from dpc_tf.training.config import EvalConfig, TrainConfig
from dpc_tf.errors import DpcError

# What the data package and tfds raise for a dataset that is not there (manual downloads).
# ManualDirError is a DpcError since 02dc657 (no longer a FileNotFoundError): listed itself.
_MISSING_DATA = (data.ManualDirError, FileNotFoundError, AssertionError, OSError)


def get_spec(name: str) -> data.DatasetSpec:
  try:
    return data.get_spec(name)
  except ValueError as e:
    raise DpcError(str(e)) from None


def _one_line(error: BaseException) -> str:
  return " ".join(str(error).split())[:500] or type(error).__name__


def _pipeline(name: str, split: str, **kwargs) -> tf.data.Dataset:
  try:
    return data.build_input_pipeline(name, split, **kwargs)
  except _MISSING_DATA as e:
    raise DpcError(f"dataset {name!r} split {split!r} is not available: {_one_line(e)}") \
        from None
  except ValueError as e:
    raise DpcError(f"dataset {name!r} split {split!r}: {_one_line(e)}") from None


def train_crop(config: TrainConfig) -> tuple[int, int]:
  return tuple(config.crop_size or get_spec(config.dataset).train_crop)


def check_train_data(config: TrainConfig) -> None:
  """Opens the training split once on the host: a missing dataset becomes a one-line
  DpcError before the model is built, not an error inside a distributed dataset function."""
  _pipeline(config.dataset, config.split, batch_size=1, crop_size=train_crop(config),
            is_training=True, data_dir=config.data_dir, manual_dir=config.manual_dir,
            scales=config.scales, seed=config.seed)


def distributed_train_dataset(config: TrainConfig, strategy: tf.distribute.Strategy,
                              start_step: int = 0):
  """The training batches as a distributed dataset (global batch config.batch_size)."""
  replicas = strategy.num_replicas_in_sync
  if config.batch_size % replicas:
    raise DpcError(f"train.batch_size={config.batch_size} is not divisible by the "
                    f"{replicas} replicas of strategy {config.strategy!r}")
  seed = None if config.seed is None else config.seed + start_step
  crop = train_crop(config)

  def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
    ds = data.build_input_pipeline(
        config.dataset, config.split, context.get_per_replica_batch_size(config.batch_size),
        crop_size=crop, is_training=True, data_dir=config.data_dir,
        manual_dir=config.manual_dir, scales=config.scales, seed=seed,
        deterministic=config.deterministic)
    if context.num_input_pipelines > 1:
      ds = ds.shard(context.num_input_pipelines, context.input_pipeline_id)
    return ds

  return strategy.distribute_datasets_from_function(dataset_fn)


def eval_dataset(train: TrainConfig, config: EvalConfig) -> tf.data.Dataset:
  """Evaluation batches (padded to the eval crop, every image once, labels 255 = ignore)."""
  split = config.split
  if config.max_examples is not None and "[" not in split:
    split = f"{split}[:{config.max_examples}]"
  return _pipeline(train.dataset, split, batch_size=config.batch_size,
                   crop_size=config.crop_size, is_training=False, data_dir=train.data_dir,
                   manual_dir=train.manual_dir, deterministic=True)


def eval_crop(train: TrainConfig, config: EvalConfig) -> tuple[int, int]:
  return tuple(config.crop_size or get_spec(train.dataset).eval_crop)

