"""A cheap, deterministic stand-in for the proxy task, for tests, benchmarks and dry runs.

The score is a fixed function of the cell's structure (each operator has a hidden quality,
and reading the backbone features directly helps a little), so sampling near the best cells
really does find better cells, as with the real proxy. Costs are counted analytically with
the paper's convention (branch convolution weights only, 256 filters, a 33x33 map from
320 MobileNet-v2 channels). Failure injection: `crash_once_fraction` of the cells kill their
worker process (os._exit) on their first attempt, `fail_fraction` raise on every attempt;
which cells is a function of the fingerprint, so a test can predict them.

Baselines and seeds (subjects.py): `FakeTrial()("aspp")` scores the ASPP head (a fixed
score; costs of its 1x1 conv, three separable 3x3 convs and image pooling, counted the same
way), and `seed=K` adds `seed_noise * (h - 0.5)`, h a hash of (K, cell): deterministic noise
per seed, so re-ranking under several seeds has a spread to report.

Fidelity (successive halving, subjects.Fidelity): called with `steps=N` the score is the
cell's quality plus noise that shrinks with training, `step_noise * sqrt(noise_steps / N) *
(2h - 1)`, h a hash of (N, cell): a short rung ranks cells worse than a long one, as with
the real proxy. `save_to` gets a small state file (the steps reached) and `start_from` must
hold one of the same cell at fewer steps: the record's `resumed_from_steps` says where it
continued from, so tests see continuations exactly as with the real proxy's checkpoints.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from typing import Optional, Union

from dpc_tf.search import checks, head_costs
from dpc_tf.search.errors import SearchError
from dpc_tf.search.subjects import ASPP, ASPP_FINGERPRINT
from dpc_tf.search_space import FEATURES, Cell
from dpc_tf.utils.files import read_json, write_json_atomic

CRASH_EXIT_CODE = 17
_FILTERS = 256
_BACKBONE_CHANNELS = 320
_MAP = 33 * 33


def unit_hash(text: str) -> float:
  """A deterministic number in [0, 1) for `text`."""
  return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2.0 ** 64


def branch_costs(cell: Cell) -> tuple[int, int]:
  """(params, multiply-adds) of the branch convolutions, as in the paper's Table 1."""
  return head_costs.branch_costs(cell, _BACKBONE_CHANNELS, _FILTERS, _MAP)


def aspp_costs() -> tuple[int, int]:
  return head_costs.aspp_costs(_BACKBONE_CHANNELS, _FILTERS, _MAP)


ASPP_MIOU = 0.55  # the fake ASPP's score: mid-range, so a good cell beats it and a bad one not


def fingerprint_of(cell: Union[Cell, str]) -> str:
  return ASPP_FINGERPRINT if cell == ASPP else cell.fingerprint()


def fake_miou(cell: Cell) -> float:
  """The made-up score: in [0.3, 0.8], identical for cells with the same canonical form."""
  canonical = cell.canonical()
  quality = [unit_hash(f"op{b.op.index}") + (0.15 if b.input == FEATURES else 0.0)
             for b in canonical]
  return 0.3 + 0.5 * sum(quality) / (1.15 * len(quality))


@dataclasses.dataclass(frozen=True)
class FakeTrial:
  """Picklable trial function: `FakeTrial()(cell) -> score record`."""
  sleep_s: float = 0.0
  crash_once_fraction: float = 0.0
  fail_fraction: float = 0.0
  marker_dir: str = ""  # where first-attempt crash markers go; needed with crash_once_fraction
  rerank_noise: float = 0.0  # > 0: play the end-to-end re-rank, a noisy copy of the proxy score
  crash_once_cells: tuple[str, ...] = ()  # fingerprints that also crash once (with marker_dir)
  fail_cells: tuple[str, ...] = ()  # fingerprints that also raise on every attempt
  log_path: str = ""  # appends 'start|end FP PID PPID [STEPS]' per call (O_APPEND): who ran what, where
  # (PPID tells a simulated Ray node: it is that node's raylet), how often
  seed_noise: float = 0.0  # noise amplitude per seed (calls with seed=K)
  step_noise: float = 0.0  # noise amplitude at noise_steps proxy steps (calls with steps=N)
  noise_steps: int = 100
  cells_per_program: int = 1  # cells the local engine hands to one worker call (packs)

  def crashes_once(self, cell: Cell) -> bool:
    fingerprint = fingerprint_of(cell)
    return (fingerprint in self.crash_once_cells
            or unit_hash("crash:" + fingerprint) < self.crash_once_fraction)

  def _log(self, event: str, cell: Cell, steps: Optional[int] = None) -> None:
    if self.log_path:
      with open(self.log_path, "a") as f:
        f.write(f"{event} {fingerprint_of(cell)} {os.getpid()} {os.getppid()}"
                f"{'' if steps is None else f' {steps}'}\n")

  def always_fails(self, cell: Cell) -> bool:
    fingerprint = fingerprint_of(cell)
    return fingerprint in self.fail_cells or unit_hash("fail:" + fingerprint) < self.fail_fraction

  def branch_costs(self, cell: Cell) -> tuple[int, int]:
    """The analytic costs the algorithm's limits use (the same the record reports)."""
    return branch_costs(cell)

  def score(self, cell: Union[Cell, str], seed: Optional[int] = None,
            steps: Optional[int] = None) -> float:
    fingerprint = fingerprint_of(cell)
    miou = ASPP_MIOU if cell == ASPP else fake_miou(cell)
    if self.rerank_noise:
      miou += self.rerank_noise * (unit_hash("rerank:" + fingerprint) - 0.5)
    if seed is not None and self.seed_noise:
      miou += self.seed_noise * (unit_hash(f"seed{seed}:{fingerprint}") - 0.5)
    if steps is not None and self.step_noise:
      amplitude = self.step_noise * math.sqrt(self.noise_steps / steps)
      miou += amplitude * (2.0 * unit_hash(f"steps{steps}:{fingerprint}") - 1.0)
    return miou

  def _continue(self, cell, steps: int, start_from: Optional[str]) -> Optional[int]:
    """The steps reached in `start_from` (None: from scratch); refuses a wrong state."""
    if start_from is None:
      return None
    state = read_json(os.path.join(start_from, "state.json"), "fake trial state")
    if state.get("fingerprint") != fingerprint_of(cell) or not state.get("steps", 0) < steps:
      raise SearchError(f"{start_from} holds {state}, not an earlier state of "
                        f"{fingerprint_of(cell)} below {steps} steps")
    return state["steps"]

  def __call__(self, cell: Union[Cell, str], seed: Optional[int] = None,
               steps: Optional[int] = None, schedule_steps: Optional[int] = None,
               start_from: Optional[str] = None, save_to: Optional[str] = None) -> dict:
    start = time.perf_counter()
    self._log("start", cell, steps)
    if self.crashes_once(cell):
      if not self.marker_dir:
        raise ValueError("FakeTrial.crash_once_fraction needs marker_dir")
      marker = os.path.join(self.marker_dir, fingerprint_of(cell) + ".crashed")
      try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        os._exit(CRASH_EXIT_CODE)  # pylint: disable=protected-access
      except FileExistsError:
        pass  # crashed before: this is the retry, run normally
    if self.always_fails(cell):
      raise RuntimeError(f"injected failure for {fingerprint_of(cell)}")
    resumed = self._continue(cell, steps, start_from) if steps is not None else None
    if self.sleep_s:
      time.sleep(self.sleep_s)
    params, madds = aspp_costs() if cell == ASPP else branch_costs(cell)
    if save_to is not None:
      write_json_atomic(os.path.join(save_to, "state.json"),
                        {"fingerprint": fingerprint_of(cell), "steps": steps})
    self._log("end", cell, steps)
    return {"miou": self.score(cell, seed, steps), "branch_params": params,
            "branch_madds": madds, "steps": steps or 0, "schedule_steps": schedule_steps,
            "resumed_from_steps": resumed, "seed": seed, "seconds": time.perf_counter() - start}


@checks.configurable("fake_trial")
def make_fake_trial(cache=None, sleep_s: float = 0.0, crash_once_fraction: float = 0.0,
                    fail_fraction: float = 0.0, marker_dir: str = "",
                    crash_once_cells: tuple[str, ...] = (), log_path: str = "",
                    step_noise: float = 0.0, noise_steps: int = 100,
                    cells_per_program: int = 1) -> FakeTrial:
  """Trial factory for configs (see pipeline.trial_factory); the feature cache is unused.
  step_noise: the score's noise at noise_steps proxy steps, shrinking as 1/sqrt(steps)."""
  del cache
  if noise_steps < 1:
    raise SearchError(f"fake_trial.noise_steps must be >= 1, got {noise_steps}")
  return FakeTrial(sleep_s=sleep_s, crash_once_fraction=crash_once_fraction,
                   fail_fraction=fail_fraction, marker_dir=marker_dir,
                   crash_once_cells=tuple(crash_once_cells), log_path=log_path,
                   step_noise=step_noise, noise_steps=noise_steps,
                   cells_per_program=cells_per_program)


@checks.configurable("fake_rerank_trial")
def make_fake_rerank_trial(checkpoint=None, work_dir=None, noise: float = 0.1,
                           seed_noise: float = 0.02, sleep_s: float = 0.0) -> FakeTrial:
  """Re-rank factory for configs: the proxy score plus noise (a Spearman rho below 1), plus
  seed_noise per seed."""
  del checkpoint, work_dir
  return FakeTrial(sleep_s=sleep_s, rerank_noise=noise, seed_noise=seed_noise)


@checks.configurable("fake_cache_builder")
def fake_cache_builder(cache_dir: str, checkpoint=None, shards: int = 2,
                       sleep_s: float = 0.0, pid_file: str = "", backbone: str = "fake",
                       feature_size: int = 2) -> None:
  """A stand-in for stage (b) (search_cache.builder = @fake_cache_builder): a tiny real
  cache written shard by shard under the cache's writer lock, sleep_s before each shard
  (resumable, like the real pass); pid_file gets this process's id (kill tests); backbone
  is its identity (a complete cache of another backbone is refused, as the real one is);
  feature_size makes shards big (full-disk tests)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from dpc_tf.proxy import cache as cache_lib  # pylint: disable=import-outside-toplevel
  del checkpoint
  with cache_lib.writer_lock(cache_dir):
    if pid_file:
      with open(pid_file, "w") as f:
        f.write(str(os.getpid()))
    for role in cache_lib.ROLES:
      writer = cache_lib.RoleWriter(cache_dir, {"backbone": backbone}, role,
                                    {"shards": shards})
      if writer.complete:
        continue
      for _ in range(writer.done_shards, shards):
        time.sleep(sleep_s)
        writer.write_shard(np.zeros((1, feature_size, feature_size, 16), np.float32),
                           np.zeros((1, 4, 4, 1), np.uint8))
      writer.finish()
