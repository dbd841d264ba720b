"""What the pipeline's stages call, and where they meet dpc_tf.proxy and dpc_tf.training.

    (a) backbone_stage()            search_backbone.*  -> (checkpoint, maker: proxy_backbone)
    (b) cache_stage(search_dir)     search_cache.*     -> (cache_dir, builder or None)
    (c) proxy_task(cache_dir)       proxy_trial.*      -> ProxyTrial, the proxy's trial function
    (d) rerank_trial(ckpt, dir)     rerank_trial.*     -> RerankTrial, end-to-end training

Configs name these with gin references (`search_pipeline.trial_factory = @proxy_task`,
`search_backbone.maker = @proxy_backbone`). This module imports neither TensorFlow nor the
proxy or training packages at import: the bodies that run TensorFlow (proxy_backbone,
build_proxy_cache, ProxyTrial, RerankTrial) import it when they run, which is in a stage
subprocess or an engine worker, never in the driver. The factories run in the driver and
check their settings there (checks.py), so a wrong `proxy_trial.*` or `rerank_trial.*` is one
line before any process starts.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Callable, Optional, Sequence, Union

from dpc_tf.search import checks, head_costs
from dpc_tf.search.errors import SearchError
from dpc_tf.search.subjects import ASPP
from dpc_tf.search_space import Cell
from dpc_tf.utils.files import JsonError, read_json


# --- (a) the backbone checkpoint ------------------------------------------------------------
@checks.configurable("search_backbone")
def backbone_stage(checkpoint: Optional[str] = None, maker: Optional[Callable] = None
                   ) -> tuple[Optional[str], Optional[Callable]]:
  """(checkpoint, what returns it, making it if needed, or None).

  checkpoint: an existing checkpoint (refused if missing). maker: a function of no argument
  returning the checkpoint path, run in a stage subprocess, e.g. @proxy_backbone. Neither:
  no backbone stage.
  """
  if checkpoint is not None:
    if not checkpoint_exists(checkpoint):
      raise SearchError(f"the backbone checkpoint {checkpoint} does not exist; train or "
                        "convert one, or set search_backbone.maker to make it")
    return checkpoint, None
  return None, maker


@checks.configurable("proxy_backbone")
def proxy_backbone() -> Optional[str]:
  """The backbone checkpoint the proxy config names (feature_cache.checkpoint), or the one
  pretrain_backbone.* makes (once; reused while its settings match)."""
  from dpc_tf.proxy import config as proxy_config  # pylint: disable=import-outside-toplevel
  cache, pretrain = proxy_config.feature_cache(), proxy_config.pretrain_backbone()
  if cache.checkpoint:
    if not os.path.exists(cache.checkpoint):
      raise SearchError(f"feature_cache.checkpoint {cache.checkpoint} does not exist")
    return cache.checkpoint
  if cache.pretrain:
    from dpc_tf.proxy import pretrain as pretrain_lib  # pylint: disable=import-outside-toplevel
    return pretrain_lib.pretrained_checkpoint(cache, pretrain)
  return None  # a random backbone, if feature_cache.allow_random_init says so


def checkpoint_exists(path: str) -> bool:
  """A file, a SavedModel/Keras folder, or a tf.train.Checkpoint prefix (PREFIX.index)."""
  return os.path.exists(path) or os.path.exists(path + ".index")


# --- (b) the feature cache ------------------------------------------------------------------
def build_proxy_cache(cache_dir: str, checkpoint: Optional[str] = None) -> None:
  """The proxy's caching pass with the feature_cache.* / pretrain_backbone.* settings."""
  from dpc_tf.proxy import build_feature_cache  # pylint: disable=import-outside-toplevel
  build_feature_cache(cache_dir, checkpoint=checkpoint)


@checks.configurable("search_cache")
def cache_stage(search_dir: str = "", cache_dir: Optional[str] = None, build: bool = True,
                builder: Callable = build_proxy_cache
                ) -> tuple[Optional[str], Optional[Callable]]:
  """(cache_dir, what builds or checks it, or None). No cache_dir: no cache stage.

  build=True: the builder runs in stage (b) even for a complete cache, to check that the
  cache was made with these settings (reused if so, refused if not). build=False: a complete
  cache is trusted as it is (nothing checks it without TensorFlow in the driver).

  The builder is called as builder(cache_dir, checkpoint=<stage (a)'s>) in the stage
  subprocess. A relative cache_dir is inside the search_dir (a self-contained demo); an
  absolute one can be shared by several searches (one backbone, one cache). With the Ray
  engine on several machines it must be on a filesystem every node mounts at the same path.
  """
  if cache_dir is None:
    return None, None
  cache_dir = os.path.join(search_dir, cache_dir) if search_dir else cache_dir
  if build:
    # Even a complete cache goes through the builder: it compares the cache's identity
    # (backbone, depth multiplier, checkpoint fingerprint, crops, ...) with these settings
    # and reuses it only if they match; a cache made otherwise is refused in one line.
    return cache_dir, builder
  if not cache_complete(cache_dir):
    raise SearchError(f"the feature cache {cache_dir} is missing or unfinished and "
                      "search_cache.build is False; build it first (python -m "
                      "dpc_tf.cache_features) or set search_cache.build = True")
  return cache_dir, None


def cache_complete(cache_dir: str, roles: tuple[str, ...] = ("train", "eval")) -> bool:
  """Every role of the cache's manifest is complete (reads JSON only: no TensorFlow)."""
  path = os.path.join(cache_dir, "manifest.json")
  if not os.path.isfile(path):
    return False
  try:
    manifest = read_json(path, "cache manifest")
  except JsonError:
    return False  # the builder's stage reports it in one line
  entries = manifest.get("roles") if isinstance(manifest, dict) else None
  if not isinstance(entries, dict):
    return False
  return all(isinstance(entries.get(r), dict) and entries[r].get("complete") is True
             for r in roles)


# --- (c) the proxy trial --------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ProxyTrial:
  """The trial function of the search: run_proxy_trial(cell, cache_dir, **settings).

  Called with "aspp" it trains the ASPP head (the baseline); seed=K adds K to the seed.
  A rung's work order (successive halving, subjects.Fidelity) replaces proxy_trial.steps
  and continues / saves the head through run_proxy_trial's start_from / save_to; in a pack
  (run_pack) each member keeps its own seed and work order.
  """
  cache_dir: str
  settings: dict  # the proxy_trial.* (TrialConfig) fields, checked in the driver

  def __call__(self, cell: Union[Cell, str], seed: Optional[int] = None,
               steps: Optional[int] = None, schedule_steps: Optional[int] = None,
               start_from: Optional[str] = None, save_to: Optional[str] = None) -> dict:
    from dpc_tf.proxy.trial import run_proxy_trial  # pylint: disable=import-outside-toplevel
    self._set_threads()
    settings = dict(self.settings, **self._overrides(seed, steps, schedule_steps))
    continuation = dict(start_from=start_from, save_to=save_to)
    if cell == ASPP:
      return run_proxy_trial(None, self.cache_dir, head=ASPP, **continuation, **settings)
    return run_proxy_trial(cell, self.cache_dir, **continuation, **settings)

  def _overrides(self, seed: Optional[int], steps: Optional[int],
                 schedule_steps: Optional[int]) -> dict:
    """The proxy_trial.* settings a subject's seed and work order replace."""
    overrides = {}
    if seed:
      overrides["seed"] = self.settings.get("seed", 0) + seed
    if steps is not None:
      overrides.update(steps=steps, schedule_steps=schedule_steps or steps)
    return overrides

  def _set_threads(self) -> None:
    """A worker that trains packs runs one thread per op without grappler
    (packed.configure_worker), a lone-trial worker its share of the cores
    (utils/threads.py); set before its first trial, whichever of run_pack or a lone trial
    comes first."""
    if self.cells_per_program > 1:
      from dpc_tf.proxy import packed  # pylint: disable=import-outside-toplevel
      packed.configure_worker()
    else:
      from dpc_tf.utils import threads  # pylint: disable=import-outside-toplevel
      threads.configure_for_share()

  @property
  def cells_per_program(self) -> int:
    """Cells one worker call trains side by side (proxy_trial.cells_per_program)."""
    return int(self.settings.get("cells_per_program", 1))

  def run_pack(self, pack: Sequence) -> list:
    """Trains the subjects (subjects.Subject) side by side in one program, each with its own
    seed and work order (a rung's steps, the head to continue from and to save to: fresh and
    continued heads mix, proxy/packed.py); returns a record or the exception that failed
    it, per subject, in order."""
    # pylint: disable-next=import-outside-toplevel
    from dpc_tf.proxy.packed import Member, run_packed_trials
    self._set_threads()
    members = []
    for subject in pack:
      order = subject.fidelity
      work = {} if order is None else dict(start_from=order.start_from, save_to=order.save_to)
      overrides = self._overrides(subject.seed, order and order.steps,
                                  order and order.schedule_steps)
      members.append(Member(None if subject.is_aspp else subject.cell,
                            ASPP if subject.is_aspp else "dpc", **overrides, **work))
    try:
      return run_packed_trials(members, self.cache_dir, **self.settings)
    except Exception as e:  # pylint: disable=broad-except  (fails every member, as alone)
      return [e] * len(pack)

  def branch_costs(self, cell: Cell) -> tuple[int, int]:
    """Analytic (params, MAdds) at the cache's eval feature map (read from its manifest, so
    after stage (b)); the driver's cost limits use it (head_costs.py)."""
    try:
      manifest = read_json(os.path.join(self.cache_dir, "manifest.json"), "cache manifest")
      height, width, channels = manifest["roles"]["eval"]["feature_shape"]
    except (JsonError, KeyError, TypeError, ValueError) as e:
      raise SearchError(f"cannot price cells: the feature cache {self.cache_dir} has no eval "
                        f"feature shape ({e})") from None
    return head_costs.branch_costs(cell, channels, self.settings.get("filters", 256),
                                   height * width)


def proxy_trial_settings() -> dict:
  """The proxy_trial.* bindings, type-checked, as run_proxy_trial keyword arguments.

  `proxy_trial` (dpc_tf.proxy.config) is registered only where dpc_tf.proxy.config is
  imported; where it is not, nothing can bind it and the proxy's defaults apply. Not
  importing it here keeps the driver free of TensorFlow for configs that bind nothing.
  """
  proxy_config = sys.modules.get("dpc_tf.proxy.config")
  if proxy_config is None:
    return {}
  config = proxy_config.proxy_trial()
  checks.check_fields("proxy_trial", config)
  return dataclasses.asdict(config)


@checks.configurable("proxy_task")
def proxy_task(cache_dir: Optional[str]) -> ProxyTrial:
  """Trial factory of the real proxy (search_pipeline.trial_factory's default)."""
  if cache_dir is None:
    raise SearchError("the proxy trial needs a feature cache: set search_cache.cache_dir")
  return ProxyTrial(cache_dir, proxy_trial_settings())


# --- (d) the end-to-end re-rank trial -------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RerankTrial:
  """Whole-model training of a cell in model_root/<fingerprint> (so a retry resumes it),
  initialised from the stage (a) checkpoint; the record's 'miou' is the score."""
  model_root: str
  checkpoint: Optional[str] = None
  init_from_checkpoint: bool = True
  train_overrides: Optional[dict] = None
  settings: Optional[dict] = None  # other train_and_evaluate keyword arguments

  def __call__(self, cell: Union[Cell, str], seed: Optional[int] = None) -> dict:
    """cell "aspp": the ASPP head; seed=K: train.seed + K, in its own model_dir."""
    from dpc_tf.training import train_and_evaluate  # pylint: disable=import-outside-toplevel
    from dpc_tf.training.config import train_config  # pylint: disable=import-outside-toplevel
    from dpc_tf.utils import threads  # pylint: disable=import-outside-toplevel
    threads.configure_for_share()  # a worker beside others keeps to its share of the cores
    overrides = dict(self.train_overrides or {})
    if self.checkpoint and self.init_from_checkpoint:
      overrides.setdefault("init_weights", self.checkpoint)
    settings = dict(self.settings or {})
    name = ASPP if cell == ASPP else cell.fingerprint()
    if cell == ASPP:
      settings["model_overrides"] = dict(settings.get("model_overrides") or {}, head=ASPP)
      cell = None
    if seed:
      overrides["seed"] = (overrides.get("seed", train_config().seed) or 0) + seed
      name += f"-seed{seed}"
    model_dir = os.path.join(self.model_root, name)
    record = train_and_evaluate(cell, model_dir, train_overrides=overrides, **settings)
    return dict(record, model_dir=model_dir)


@checks.configurable("rerank_trial")
def rerank_trial(checkpoint: Optional[str], work_dir: str, num_steps: Optional[int] = None,
                 init_from_checkpoint: bool = True, train_overrides: Optional[dict] = None,
                 dataset: Optional[str] = None, batch_size: Optional[int] = None,
                 crop_size: Optional[Sequence[int]] = None, eval_split: Optional[str] = None,
                 eval_scales: Optional[Sequence[float]] = None,
                 eval_flip: Optional[bool] = None, max_eval_examples: Optional[int] = None,
                 model_overrides: Optional[dict] = None) -> RerankTrial:
  """Trial factory of the re-ranking (search_pipeline.rerank_factory = @rerank_trial).

  The settings after init_from_checkpoint are dpc_tf.training.train_and_evaluate's (None:
  the gin-bound train.* / evaluate.* value); they are spelt out here, not forwarded as
  **kwargs, so that gin refuses a misspelt one in the driver.
  """
  settings = dict(num_steps=num_steps, dataset=dataset, batch_size=batch_size,
                  crop_size=crop_size, eval_split=eval_split, eval_scales=eval_scales,
                  eval_flip=eval_flip, max_eval_examples=max_eval_examples,
                  model_overrides=model_overrides)
  return RerankTrial(work_dir, checkpoint, init_from_checkpoint, train_overrides,
                     {k: v for k, v in settings.items() if v is not None})
