"""What a training, evaluation or export run is told: three frozen dataclasses and their gin names.

The dataclasses carry the defaults (so code can build them without gin); the gin names
`train`, `evaluate` and `export` are `gin.external_configurable` factories that build the
same classes with the parsed bindings applied (`train.num_steps = 90000`). The model itself
is configured separately through `deeplab_model.*` (dpc_tf.models). Explicit arguments
always win over bindings, which is how `train_and_evaluate` forces a per-trial cell and
step budget while keeping the rest of a gin recipe.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import gin

from dpc_tf import gin_config
from dpc_tf.errors import DpcError
from dpc_tf.utils import typecheck
from dpc_tf.utils.sizes import size_pair as _pair

STRATEGIES = ("default", "one_device", "mirrored", "multi_worker_mirrored", "tpu")
MIXED_PRECISION = (None, "float16", "bfloat16")

MODULES = ("dpc_tf.data", "dpc_tf.models", "dpc_tf.training.config")
"""The modules whose configurables training configs bind (registered before parsing)."""


def parse_gin(gin_files: Sequence[str] = (), bindings: Sequence[str] = ()) -> list[str]:
  """dpc_tf.gin_config.parse with every training configurable registered."""
  return gin_config.parse(gin_files, bindings, modules=MODULES)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Settings of one training run (TF1 DeepLab's defaults, REFERENCE.md section 5).

  Attributes:
    dataset, split, data_dir, manual_dir: the data (dpc_tf.data names).
    batch_size: global batch, split evenly over the replicas.
    crop_size: training crop (h, w); the dataset spec's train_crop when None. It also fixes
      the pyramid-pooling kernels of the model.
    scales: random-scale augmentation set; the spec's when None.
    num_steps: N of the poly schedule and the number of steps to train.
    base_learning_rate, learning_rate_power, end_learning_rate: poly schedule
      `(base - end) * (1 - step / N) ^ power + end`.
    warmup_steps, warmup_learning_rate: optional linear warm-up from warmup_learning_rate to
      the poly value at step warmup_steps.
    momentum: momentum SGD.
    last_layers: substrings of variable paths that get last_layer_gradient_multiplier
      (TF1: "logits", or also the head and decoder when fine-tuning on new classes).
    bias_gradient_multiplier: TF1 doubles the gradient of conv biases (only the logits have
      one); a last-layer bias gets both multipliers.
    init_weights: a converted-weights folder (dpc_tf.checkpoints) or a backbone-only Keras
      `.weights.h5` file to start from; not used when model_dir already holds a
      checkpoint (resume wins).
    initialize_last_layer: load the logits too (False for a different class set).
    init_parts: which parts to load (backbone/head/decoder/logits); every stored one if None.
    fine_tune_batch_norm: update batch-norm statistics and offsets (TF1 fine_tune_batch_norm);
      False freezes every BN layer (inference mode), for small per-replica batches.
    bn_momentum: overrides the momentum of every BN layer for this run (the release's
      0.9997 suits 90K steps from pretrained statistics; a few hundred steps from scratch
      need ~0.99, or the moving averages stay near their initial values).
    strategy: one of STRATEGIES; multi_worker_mirrored reads TF_CONFIG; tpu reads `tpu`.
    mixed_precision: None, "float16" (with dynamic loss scaling) or "bfloat16".
    jit_compile: XLA for the train step (off by default: it fails with sync BN inside
      strategy.run on CPU; benchmark before turning it on).
    steps_per_call: optimizer steps per call of the step function (1: one call per step,
      the batch fetched on the host). K > 1 runs up to K steps in one tf.function, reading
      the input iterator inside it, and reads the losses, guard values and confusion counts
      back once per call: fewer host round trips (they matter on accelerators). Calls are
      shortened so that checkpoints and summaries land on exactly their configured steps;
      progress lines are written at the first call end at or after each log_every multiple.
    checkpoint_every, keep_checkpoints: CheckpointManager cadence and retention.
    log_every, summary_every, image_summary_every, num_summary_images: logging cadence.
    seed, deterministic: reproducibility: seed sets the model's initialisation and dropout
      (keras.utils.set_random_seed) and the input pipeline's order (re-seeded with the
      resume step so that a resumed run does not replay the first batches).
  """
  dataset: str = "dpc_synthetic"
  split: str = "train"
  data_dir: Optional[str] = None
  manual_dir: Optional[str] = None
  batch_size: int = 16
  crop_size: Optional[Sequence[int]] = None
  scales: Optional[Sequence[float]] = None
  num_steps: int = 30000
  base_learning_rate: float = 0.01
  learning_rate_power: float = 0.9
  end_learning_rate: float = 0.0
  warmup_steps: int = 0
  warmup_learning_rate: float = 0.0
  momentum: float = 0.9
  last_layers: Sequence[str] = ("logits",)
  last_layer_gradient_multiplier: float = 1.0
  bias_gradient_multiplier: float = 2.0
  init_weights: Optional[str] = None
  initialize_last_layer: bool = True
  init_parts: Optional[Sequence[str]] = None
  fine_tune_batch_norm: bool = True
  bn_momentum: Optional[float] = None
  strategy: str = "default"
  tpu: Optional[str] = None
  mixed_precision: Optional[str] = None
  jit_compile: bool = False
  steps_per_call: int = 1
  checkpoint_every: int = 1000
  keep_checkpoints: int = 5
  log_every: int = 10
  summary_every: int = 100
  image_summary_every: int = 1000
  num_summary_images: int = 2
  seed: Optional[int] = None
  deterministic: bool = False

  def __post_init__(self):
    typecheck.check_fields("train", self, skip=("crop_size",))  # crop: an int or [h, w]
    if self.strategy not in STRATEGIES:
      raise DpcError(f"train.strategy={self.strategy!r}: choose from {', '.join(STRATEGIES)}")
    if self.mixed_precision not in MIXED_PRECISION:
      raise DpcError(f"train.mixed_precision={self.mixed_precision!r}: choose None, "
                      f"'float16' or 'bfloat16'")
    for name in ("batch_size", "num_steps", "checkpoint_every", "keep_checkpoints",
                 "log_every", "steps_per_call"):
      value = getattr(self, name)
      if not isinstance(value, int) or value < 1:
        raise DpcError(f"train.{name} must be a positive int, got {value!r}")
    if not 0 <= self.warmup_steps < self.num_steps:
      raise DpcError(f"train.warmup_steps={self.warmup_steps} must be in [0, num_steps="
                      f"{self.num_steps})")
    if self.bn_momentum is not None and not 0.0 <= self.bn_momentum < 1.0:
      raise DpcError(f"train.bn_momentum must be in [0, 1), got {self.bn_momentum}")
    if self.base_learning_rate <= 0:
      raise DpcError(f"train.base_learning_rate must be > 0, got {self.base_learning_rate}")
    object.__setattr__(self, "crop_size", _pair(self.crop_size, "train.crop_size"))
    object.__setattr__(self, "last_layers", tuple(self.last_layers))


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """Settings of evaluation (and the defaults of export).

  Attributes:
    split: the split scored.
    batch_size: images per step (1 for datasets of mixed sizes padded to the eval crop).
    crop_size: every image is padded bottom/right to it; the spec's eval_crop when None.
    scales, flip: multi-scale inference: probabilities averaged over every scale (and its
      left-right flip), REFERENCE.md section 5. (1.0,) without flip is single scale.
    max_examples: score only the first N examples (quick checks).
    continuous: evaluate every new checkpoint as it appears, until `timeout_s` passes with
      no new one, or the checkpoint of the last training step has been scored.
    timeout_s: seconds to wait for a new checkpoint in continuous mode.
  """
  split: str = "validation"
  batch_size: int = 1
  crop_size: Optional[Sequence[int]] = None
  scales: Sequence[float] = (1.0,)
  flip: bool = False
  max_examples: Optional[int] = None
  continuous: bool = False
  timeout_s: float = 600.0

  def __post_init__(self):
    typecheck.check_fields("evaluate", self, skip=("crop_size",))
    if not isinstance(self.batch_size, int) or self.batch_size < 1:
      raise DpcError(f"evaluate.batch_size must be a positive int, got {self.batch_size!r}")
    scales = tuple(float(s) for s in self.scales)
    if not scales or min(scales) <= 0:
      raise DpcError(f"evaluate.scales must be positive numbers, got {self.scales!r}")
    object.__setattr__(self, "scales", scales)
    object.__setattr__(self, "crop_size", _pair(self.crop_size, "evaluate.crop_size"))
    if self.max_examples is not None and self.max_examples < 1:
      raise DpcError(f"evaluate.max_examples must be >= 1, got {self.max_examples}")


@dataclasses.dataclass(frozen=True)
class ExportConfig:
  """Settings of the SavedModel; None means "as evaluation does", so that the exported model
  predicts exactly what `evaluate` scored.

  Attributes:
    scales, flip: inference scales and flipping baked into the serving function.
    pad_to: images smaller than (h, w) are padded bottom/right with the mean pixel before
      inference and the prediction is cropped back, as evaluation pads to its eval crop.
      None: the evaluation crop; [] or False: never pad.
  """
  scales: Optional[Sequence[float]] = None
  flip: Optional[bool] = None
  pad_to: Optional[Sequence[int]] = None


train_config = gin.external_configurable(TrainConfig, "train")
eval_config = gin.external_configurable(EvalConfig, "evaluate")
export_config = gin.external_configurable(ExportConfig, "export")
