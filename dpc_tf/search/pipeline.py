"""The search pipeline, as explicit stages over one search_dir.

    (a) backbone   make sure the backbone checkpoint exists (train one if configured)
    (b) cache      build or reuse the feature cache of the backbone
    (c) search     the proxy search: RandomSearch + Coordinator + an engine, DIR/trials.sqlite;
                   the baselines (ASPP, the released cell) first, outside the budget
    (d) rerank     the top-K proxy cells (diverse) and the baselines trained end to end under
                   rerank_seeds seeds, DIR/rerank.sqlite
    (e) outputs    DIR/results.csv, DIR/best_cells/rank_N.json, DIR/plots/*.png, summary.json
                   (with the baselines and the verdict: the chosen cell against ASPP),
                   DIR/hparams (TensorBoard's HParams dashboard; also written during (c))

Every stage is resumable: (a) and (b) skip what exists, (c) and (d) continue from their
stores, (e) is regenerated from the stores. So a killed search is resumed by running the
same command again. (a) and (b) run together in a one-off subprocess and trials in engine
workers, so the driver never runs TensorFlow nor holds GPU memory the workers need. (It
imports TensorFlow only when the config's `import` lines load dpc_tf.proxy or
dpc_tf.training, whose packages import it, to register the configurables it binds.)

DIR/.driver.lock (flock) keeps a second driver off a search_dir; DIR/config.gin keeps the
config that created it, and its identity (identity.py) is checked on every start.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Callable, Optional, Sequence

import gin
from absl import logging

from dpc_tf.search import fake_trial  # pylint: disable=unused-import  (registers fake_trial)
from dpc_tf.search import checks, identity, plots, rerank, results, stages, subjects, verdict
from dpc_tf.search import hparams, warm_start
from dpc_tf.search.algorithm import make_algorithm
from dpc_tf.search.coordinator import Coordinator
from dpc_tf.search.engines import ENGINES, make_engine
from dpc_tf.search.errors import SearchError
from dpc_tf.search.progress import Progress
from dpc_tf.search.store import Store
from dpc_tf.search.trial import TrialFn, WorkerPayload, apply_gin
from dpc_tf.utils import files, locks, processes
from dpc_tf.utils.files import write_json_atomic, write_text_atomic


@dataclasses.dataclass(frozen=True)
class PipelineSettings:
  engine: str = "local"
  metric: str = "miou"
  max_attempts: int = 2
  max_consecutive_failures: int = 10
  trial_factory: Callable[[Optional[str]], TrialFn] = stages.proxy_task
  rerank_top_k: int = 0
  rerank_factory: Optional[Callable[[Optional[str], str], TrialFn]] = None
  num_best_cells: int = 10
  results_interval_s: float = 0.0
  progress_interval_s: float = 10.0
  plots: bool = True
  baselines: Sequence[str] = ("aspp", "released")
  rerank_seeds: int = 1
  rerank_min_distance: int = 0
  hparams: bool = True


@gin.configurable("search_pipeline")
def pipeline_settings(**kwargs) -> PipelineSettings:
  """Gin surface of the pipeline; see PipelineSettings for the fields and defaults.

  trial_factory(cache_dir) -> the trial function (default: @proxy_task, the real proxy);
  rerank_factory(checkpoint, work_dir) -> the end-to-end one (@rerank_trial), needed when
  rerank_top_k > 0; both are called in the driver, where they check their settings;
  max_attempts: dispatches per trial before it is 'failed' (and counted in the budget);
  results_interval_s: minimum seconds between results.csv rewrites (0: after every trial).
  baselines: scored like the searched cells (proxy, re-rank) but outside the budget and never
  parents: 'aspp' (DeepLab's ASPP head), 'released' (the paper's cell), a cell JSON path or
  compact text (subjects.py); the verdict compares the chosen cell with 'aspp' (verdict.py).
  The cost limits (search_algorithm.max_branch_*) bound the search, not the baselines.
  rerank_seeds: seeds each re-ranked cell and baseline is trained under (mean and stderr).
  rerank_min_distance: no two re-ranked cells closer than this many branch edits
  (objectives.cell_distance).
  hparams: every trial also in TensorBoard's HParams dashboard, DIR/hparams (hparams.py;
  needs the optional tensorboard package).
  """
  known = {f.name for f in dataclasses.fields(PipelineSettings)}
  unknown = sorted(set(kwargs) - known)
  if unknown:
    raise SearchError(f"unknown search_pipeline setting(s) {', '.join(unknown)}")
  settings = PipelineSettings(**kwargs)
  checks.check_fields("search_pipeline", settings)
  if settings.rerank_seeds < 1 or settings.rerank_min_distance < 0:
    raise SearchError(f"search_pipeline.rerank_seeds must be >= 1 and rerank_min_distance >= 0, "
                      f"got {settings.rerank_seeds} and {settings.rerank_min_distance}")
  subjects.resolve_baselines(settings.baselines)  # refuses a bad one here, in the driver
  return settings


@dataclasses.dataclass(frozen=True)
class SearchPaths:
  """Where everything of a search lives, under one folder."""
  root: str

  @property
  def store(self) -> str:
    return os.path.join(self.root, "trials.sqlite")

  @property
  def rerank_store(self) -> str:
    return os.path.join(self.root, "rerank.sqlite")

  @property
  def results_csv(self) -> str:
    return os.path.join(self.root, "results.csv")

  @property
  def best_cells(self) -> str:
    return os.path.join(self.root, "best_cells")

  @property
  def plots(self) -> str:
    return os.path.join(self.root, "plots")

  @property
  def synthetic_examples(self) -> str:
    """Generated dpc_synthetic examples the search's processes share while it runs."""
    return os.path.join(self.root, "synthetic_examples")

  @property
  def config(self) -> str:
    return os.path.join(self.root, "config.gin")

  @property
  def summary(self) -> str:
    return os.path.join(self.root, "summary.json")

  @property
  def lock(self) -> str:
    return os.path.join(self.root, ".driver.lock")


def driver_lock(path: str):
  """Exclusive use of a search_dir by one driver; released by the kernel if it dies. The lock
  file is never followed if it is a link, nor truncated before it is held (utils/locks.py)."""
  return locks.folder_lock(os.path.dirname(path), os.path.basename(path),
                           what="is in use by another search driver", error_class=SearchError)


# dpc_tf.data.synthetic_memo.DIR_VARIABLE, spelt here: importing the data package would load
# TensorFlow into the driver (a test checks they agree).
SYNTHETIC_EXAMPLES_VARIABLE = "DPC_TF_SYNTHETIC_EXAMPLES_DIR"


@contextlib.contextmanager
def shared_synthetic_examples(paths: SearchPaths):
  """Points the stage processes and workers started inside (they inherit the environment)
  at one folder of generated dpc_synthetic examples, so each is made once per search, not
  once per process; a folder the user chose is left to them."""
  if os.environ.get(SYNTHETIC_EXAMPLES_VARIABLE):
    yield
    return
  os.environ[SYNTHETIC_EXAMPLES_VARIABLE] = paths.synthetic_examples
  try:
    yield
  finally:
    os.environ.pop(SYNTHETIC_EXAMPLES_VARIABLE, None)


def _call_with_gin(fn, gin_config: str, *args):
  apply_gin(gin_config)
  return fn(*args)


def run_isolated(fn, gin_config: str, *args, what: str = "a pipeline stage"):
  """fn(*args) in a fresh spawned process with the driver's gin config (TF stays out of here).

  The process dies with the driver (even on kill -9) and is ended when the driver stops
  (Ctrl-C, SIGTERM), so its locks are free for the rerun (dpc_tf.utils.processes). A user's
  error there (a DpcError: a missing checkpoint, a mismatched cache, a full disk) comes back
  as a one-line SearchError; any other exception is a bug and keeps its (remote) traceback.
  """
  return processes.run_in_child(_call_with_gin, fn, gin_config, *args, what=what,
                                error_class=SearchError)


@dataclasses.dataclass(frozen=True)
class _PrepareBackboneAndCache:
  """Stages (a) and (b) in one subprocess (one TensorFlow start instead of two)."""
  checkpoint: Optional[str]
  maker: Optional[Callable[[], Optional[str]]]
  builder: Optional[Callable]
  cache_dir: Optional[str]

  def __call__(self) -> Optional[str]:
    checkpoint = self.maker() if self.maker is not None else self.checkpoint
    if checkpoint is not None and not stages.checkpoint_exists(checkpoint):
      raise SearchError(f"stage (a) returned {checkpoint}, which does not exist")
    if self.builder is not None:
      self.builder(self.cache_dir, checkpoint=checkpoint)
    return checkpoint


def prepare_backbone_and_cache(gin_config: str, checkpoint: Optional[str],
                               maker: Optional[Callable], cache_dir: Optional[str],
                               builder: Optional[Callable]) -> Optional[str]:
  """(a) + (b), as backbone_stage() and cache_stage() planned them: the backbone checkpoint
  (or None), with the feature cache complete (if there is one)."""
  if maker is not None or builder is not None:
    logging.info("stage (a): %s; stage (b): %s",
                 f"the backbone from {getattr(maker, '__name__', maker)}" if maker else f"backbone {checkpoint}",
                 f"building or checking the feature cache {cache_dir}" if builder else
                 f"reusing the feature cache {cache_dir}" if cache_dir else "no feature cache")
    checkpoint = run_isolated(_PrepareBackboneAndCache(checkpoint, maker, builder, cache_dir),
                              gin_config,
                              what="stages (a)/(b), backbone checkpoint and feature cache")
  if builder is not None and not stages.cache_complete(cache_dir):
    raise SearchError(f"stage (b) finished but the cache {cache_dir} is still incomplete")
  logging.info("stages (a)/(b): backbone checkpoint %s, feature cache %s", checkpoint, cache_dir)
  return checkpoint


def run_trials(label: str, store: Store, algorithm, engine, payload: WorkerPayload,
               settings: PipelineSettings, work_dir: str, csv_path: Optional[str] = None,
               retry_failed: bool = False, baselines: Sequence = ()) -> Coordinator:
  """Runs a store's trials to its budget with the engine: stage (c), and (d) with a fixed list.

  baselines: subjects.Subject rows run besides the budget (stage (c)'s search_pipeline.baselines).
  """
  if retry_failed:
    requeued = store.requeue_failed()
    if requeued:
      logging.info("%s: --retry_failed: %d failed trial(s) requeued %s", label, len(requeued),
                   requeued)
  listeners = []
  writer = None
  if csv_path:
    writer = results.ResultsWriter(csv_path, settings.results_interval_s)
    listeners.append(writer)
    if settings.hparams:
      listeners.append(hparams.HParamsWriter(store, work_dir))
  coordinator = Coordinator(store, algorithm, max_attempts=settings.max_attempts,
                            metric=settings.metric,
                            max_consecutive_failures=settings.max_consecutive_failures,
                            listeners=tuple(listeners), baselines=baselines)
  if coordinator.rungs is not None:  # successive halving: the budget is proxy steps
    progress = Progress(coordinator.budget_steps, settings.progress_interval_s,
                        settings.metric, label=label, unit="proxy steps",
                        spent=coordinator.spent_steps)
  else:
    progress = Progress(coordinator.budget, settings.progress_interval_s, settings.metric,
                        label=label)
  coordinator.listeners.insert(0, progress)
  if coordinator.requeued:
    logging.info("%s: resumed; %d interrupted trial(s) requeued %s (a driver stop costs no "
                 "attempt)", label, len(coordinator.requeued), coordinator.requeued)
  counts = coordinator.counts()
  if coordinator.finished():
    logging.info("%s: complete, %d done and %d failed of %d", label, counts["done"],
                 counts["failed"], coordinator.budget)
  else:
    logging.info("%s: %d/%d finished, running the rest on the %s engine", label,
                 counts["done"] + counts["failed"], coordinator.budget, engine.name)
    progress.begin(counts)
    try:
      engine.run(coordinator, payload, work_dir)
    finally:
      if writer is not None:
        writer.write(store)
  coordinator.raise_if_stopped()
  return coordinator


def rerank_trial_fn(settings: PipelineSettings, checkpoint: Optional[str],
                    paths: SearchPaths) -> Optional[TrialFn]:
  """(d)'s trial function, or None without a re-ranking."""
  if settings.rerank_top_k <= 0:
    return None
  if settings.rerank_factory is None:
    raise SearchError("search_pipeline.rerank_top_k > 0 needs search_pipeline.rerank_factory "
                      "(e.g. @rerank_trial)")
  return settings.rerank_factory(checkpoint, os.path.join(paths.root, "rerank_models"))


def stage_rerank(store: Store, trial_fn: Optional[TrialFn], engine, settings: PipelineSettings,
                 paths: SearchPaths, gin_config: str, retry_failed: bool = False,
                 objective: str = "miou") -> int:
  """(d) Re-ranks the top-K proxy cells (diverse, under the objective) and the baselines end
  to end under rerank_seeds seeds; returns how many proxy trials have a re-rank score."""
  if trial_fn is None:
    return 0
  wanted = rerank.rerank_subjects(store, settings.rerank_top_k, objective,
                                  settings.rerank_min_distance, settings.rerank_seeds)
  with Store(paths.rerank_store) as rerank_store:
    entries = rerank.planned_entries(rerank_store, wanted)  # extended, never refused
    payload = WorkerPayload(trial_fn, gin_config, settings.metric)
    run_trials("rerank", rerank_store, rerank.FixedCells(entries), engine, payload,
               settings, paths.root, retry_failed=retry_failed)
    return rerank.copy_rerank_scores(rerank_store, store)


def stage_outputs(store: Store, settings: PipelineSettings, paths: SearchPaths) -> dict:
  """(e) results.csv, best_cells/rank_N.json, plots, summary.json."""
  results.write_results_csv(store, paths.results_csv)
  best = results.write_best_cells(store, paths.best_cells, settings.num_best_cells)
  written = plots.write_plots(store, paths.plots, settings.metric) if settings.plots else {}
  if settings.hparams:
    hparams.sync(store, paths.root)  # the re-rank scores, and anything a kill -9 left out
  ranked = results.ranking(store)
  reranked = [t for t in ranked if t.rerank_score is not None]
  summary = {
      "counts": store.counts(baselines=False),
      "best": None if not ranked else {
          "trial_id": ranked[0].id, "cell": ranked[0].cell_text,
          "cell_json": ranked[0].cell.to_json(), "proxy_score": ranked[0].score,
          "rerank_score": ranked[0].rerank_score},
      "reranked": len(reranked),
      "results_csv": paths.results_csv, "best_cells": best,
      "plots": {k: v for k, v in written.items() if k not in ("spearman_rho", "spearman_n")},
      "spearman_rho": written.get("spearman_rho"), "spearman_n": written.get("spearman_n"),
      "baselines": verdict.baselines_summary(store),
      "verdict": verdict.verdict(store, ranked[0] if ranked else None),
  }
  write_json_atomic(paths.summary, summary)
  return summary


def run_pipeline(search_dir: str, budget: Optional[int] = None, engine: Optional[str] = None,
                 workers: Optional[int] = None, retry_failed: bool = False) -> dict:
  """The whole pipeline under the current (parsed) gin config; returns summary.json's dict.

  retry_failed: give failed trials (of the search and of the re-rank) a fresh set of
  attempts, e.g. after fixing the bug that made them fail.
  """
  if not search_dir:
    raise SearchError("--search_dir is required")
  settings = pipeline_settings()
  engine_name = engine or settings.engine
  if engine_name not in ENGINES:
    raise SearchError(f"unknown engine {engine_name!r}; choose one of: {', '.join(ENGINES)}")
  if workers is not None and workers < 1:
    raise SearchError(f"--workers must be >= 1, got {workers}")
  algorithm = make_algorithm(budget=budget) if budget is not None else make_algorithm()
  gin_config = gin.config_str()
  paths = SearchPaths(os.path.abspath(search_dir))
  # Every factory runs before any process starts: each checks its gin settings here.
  checkpoint, maker = stages.backbone_stage()
  cache_dir, builder = stages.cache_stage(paths.root)
  trial_fn = settings.trial_factory(cache_dir)
  rerank_trial_fn(settings, checkpoint, paths)  # again below, with stage (a)'s checkpoint
  baselines = subjects.resolve_baselines(settings.baselines)
  engine_obj = make_engine(engine_name, workers)
  files.writable_dir(paths.root, "search_dir")
  with driver_lock(paths.lock), Store(paths.store) as store, shared_synthetic_examples(paths):
    if identity.check_identity(store, gin_config, search_dir) or not os.path.exists(paths.config):
      write_text_atomic(paths.config, gin_config)  # the config that made the trials
    checkpoint = prepare_backbone_and_cache(gin_config, checkpoint, maker, cache_dir, builder)
    payload = WorkerPayload(trial_fn, gin_config, settings.metric)
    algorithm.cost_fn = getattr(trial_fn, "branch_costs", None)  # priced after stage (b)
    warm_start.pin(store, algorithm)  # the same warm-start cells on every resume
    try:
      run_trials("search", store, algorithm, engine_obj, payload, settings, paths.root,
                 csv_path=paths.results_csv, retry_failed=retry_failed, baselines=baselines)
      stage_rerank(store, rerank_trial_fn(settings, checkpoint, paths), engine_obj, settings,
                   paths, gin_config, retry_failed, algorithm.objective)
      files.remove_tree(paths.synthetic_examples)  # kept for a resume until every stage ran
    finally:
      engine_obj.close()
    summary = stage_outputs(store, settings, paths)
  best = summary["best"]
  logging.info("search done: best %s", best["cell"] if best else "-")
  return summary
