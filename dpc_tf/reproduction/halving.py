"""Beyond the paper: successive halving against the flat search at equal proxy compute.

Both searches run the real search machinery (RandomSearch + Coordinator + Store, trials
in-process) with the same seed and the same budget: `budget` trials at the top rung, i.e.
budget * rungs[-1] proxy steps. Flat gives every cell one trial of rungs[-1] steps; halving
runs cells over `rungs` and promotes the best 1/eta asynchronously, continuing each head
from the rung before (halving.py in dpc_tf.search). For each search, after every finished
job:

- the cells it would hand on (its best `best_k` by its own ranking: highest rung first,
  then score; results.ranking's order) and their mean full-fidelity score, i.e. their
  score at rungs[-1] steps;
- the proxy steps spent so far.

Reported per seed and averaged: the final best-k full-fidelity mean of each search, and
the steps each needs until its best-k mean first reaches the flat search's final one.

The trial is the fake trial (dpc_tf.search.fake_trial) with noise shrinking as
1/sqrt(steps): its full-fidelity score is known without extra runs. A real-proxy run on
dpc_synthetic did not fit the time this was built in (a proxy trial is 7.5 s on a quiet
2-core machine; each seed needs ~100 jobs per search); the figures are labelled as such.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import statistics
import tempfile
import time
from typing import Optional, Sequence

from dpc_tf.errors import DpcError
from dpc_tf.search import halving as halving_lib
from dpc_tf.search.algorithm import RandomSearch
from dpc_tf.search.coordinator import Coordinator
from dpc_tf.search.fake_trial import FakeTrial
from dpc_tf.search.store import Store
from dpc_tf.search import subjects, trial as trial_lib

NAME = "halving"


@dataclasses.dataclass(frozen=True)
class Settings:
  seeds: Sequence[int] = (0, 1, 2, 3, 4, 5, 6, 7)
  budget: int = 40                      # trials at the top rung (flat: trials)
  rungs: Sequence[int] = (100, 300, 900)
  reduction_factor: int = 3
  best_k: int = 5
  num_branches: int = 5
  top_k: int = 5                        # the algorithm's mutation parents
  step_noise: float = 0.1               # fake trial: noise amplitude at noise_steps
  noise_steps: int = 100


def _ranking_key(trial) -> tuple:
  return (-trial.rung, -(trial.score if trial.score is not None else float("-inf")), trial.id)


def run_search(settings: Settings, seed: int, fidelity: str, folder: str) -> dict:
  """One search to its budget; the curve of (steps spent, best-k full-fidelity mean)."""
  rungs = halving_lib.Rungs(tuple(settings.rungs), settings.reduction_factor)
  top = rungs.steps[-1]
  fake = FakeTrial(step_noise=settings.step_noise, noise_steps=settings.noise_steps)
  search = RandomSearch(num_branches=settings.num_branches, budget=settings.budget,
                        top_k=settings.top_k, seed=seed,
                        rungs=rungs if fidelity == "successive_halving" else None)
  # Flat: every cell one trial of the top rung's steps, from scratch.
  trial_fn = fake if search.rungs else functools.partial(fake, steps=top, schedule_steps=top)
  full = {}  # fingerprint -> full-fidelity score (what a top-rung trial returns)
  spent, curve, jobs = 0, [], 0
  started = time.perf_counter()
  with Store(os.path.join(folder, f"{fidelity}-{seed}.sqlite")) as store:
    coordinator = Coordinator(store, search, max_consecutive_failures=0,
                              checkpoint_root=os.path.join(folder, f"heads-{fidelity}-{seed}"))
    while not coordinator.finished():
      trial = coordinator.next_trial()
      record = subjects.call_trial(trial_fn, subjects.decode(trial.cell_json))
      coordinator.complete(trial.id, trial_lib.validate_record(record), 0.0)
      jobs += 1
      spent += rungs.cost(trial.rung) if search.rungs else top
      cell = trial.cell
      full.setdefault(trial.fingerprint, fake.score(cell, steps=top))
      best = sorted(store.trials("done"), key=_ranking_key)[:settings.best_k]
      if len(best) == settings.best_k:
        value = statistics.fmean(full[t.fingerprint] for t in best)
        if not curve or value != curve[-1][1]:  # the curve's steps: where it changes
          curve.append([spent, value])
    cells = store.trials()
  return {"fidelity": fidelity, "seed": seed, "steps": spent, "jobs": jobs,
          "cells": len(cells), "cells_at_top": sum(t.rung == rungs.top for t in cells)
          if search.rungs else len(cells), "final_best_k": curve[-1][1], "curve": curve,
          "wall_seconds": time.perf_counter() - started}


def steps_to_reach(curve: Sequence[Sequence[float]], target: float) -> Optional[int]:
  """The first steps count at which the curve's value is >= target (None: never)."""
  return next((int(steps) for steps, value in curve if value >= target - 1e-12), None)


def study(settings: Settings = Settings()) -> dict:
  """Both searches for every seed, and the comparison."""
  if settings.budget < settings.best_k or len(settings.seeds) < 1:
    raise DpcError(f"halving study: the budget ({settings.budget} top-rung trials) must be at "
                   f"least best_k ({settings.best_k}), with one seed or more")
  runs = []
  with tempfile.TemporaryDirectory(prefix="dpc-halving-") as folder:
    for seed in settings.seeds:
      for fidelity in ("flat", "successive_halving"):
        runs.append(run_search(settings, seed, fidelity, folder))
  per_seed = []
  for seed in settings.seeds:
    flat, halving = (next(r for r in runs if r["seed"] == seed and r["fidelity"] == f)
                     for f in ("flat", "successive_halving"))
    target = flat["final_best_k"]
    flat_steps, halving_steps = steps_to_reach(flat["curve"], target), steps_to_reach(
        halving["curve"], target)
    per_seed.append({"seed": seed, "flat_best_k": target,
                     "halving_best_k": halving["final_best_k"],
                     "flat_steps_to_target": flat_steps,
                     "halving_steps_to_target": halving_steps,
                     "steps_ratio": (halving_steps / flat_steps
                                     if halving_steps is not None else None),
                     "budget_fraction": (halving_steps / flat["steps"]
                                         if halving_steps is not None else None),
                     "flat_cells": flat["cells"], "halving_cells": halving["cells"],
                     "halving_cells_at_top": halving["cells_at_top"]})
  reached = [p["steps_ratio"] for p in per_seed if p["steps_ratio"] is not None]
  return {"trial": "fake (dpc_tf.search.fake_trial, noise shrinking as 1/sqrt(steps))",
          "settings": dataclasses.asdict(settings), "budget_steps": settings.budget *
          settings.rungs[-1], "per_seed": per_seed,
          "mean_flat_best_k": statistics.fmean(p["flat_best_k"] for p in per_seed),
          "mean_halving_best_k": statistics.fmean(p["halving_best_k"] for p in per_seed),
          "halving_wins": sum(p["halving_best_k"] > p["flat_best_k"] for p in per_seed),
          "ties": sum(p["halving_best_k"] == p["flat_best_k"] for p in per_seed),
          "seeds_reaching_target": len(reached),
          "median_steps_ratio": statistics.median(reached) if reached else None,
          "mean_steps_ratio": statistics.fmean(reached) if reached else None,
          "median_budget_fraction": statistics.median(
              p["budget_fraction"] for p in per_seed if p["budget_fraction"] is not None)
          if reached else None,
          "runs": runs}


def _f(value, digits: int = 3) -> str:
  return "-" if value is None else f"{value:.{digits}f}"


def markdown(result: dict) -> list[str]:
  """The section's lines (docs/REPRODUCTION.md and docs/BENCHMARKS.md)."""
  s = result["settings"]
  lines = [
      f"**Trial: {result['trial']}, not the real proxy on dpc_synthetic** (labelled: the "
      "real-proxy run did not fit the time available; see dpc_tf/reproduction/halving.py).",
      "",
      f"Equal compute: {s['budget']} trials at the top rung = {result['budget_steps']} proxy "
      f"steps per search; halving rungs {tuple(s['rungs'])}, reduction factor "
      f"{s['reduction_factor']}; flat = every cell {s['rungs'][-1]} steps; "
      f"{len(s['seeds'])} seeds; best-{s['best_k']} = the {s['best_k']} cells a search "
      "hands on (highest rung, then score), scored at full fidelity.", "",
      f"| seed | flat best-{s['best_k']} | halving best-{s['best_k']} | flat steps to it | "
      "halving steps to it | ratio | of the flat budget | cells flat / halving (at top) |",
      "|---|---|---|---|---|---|---|---|"]
  for p in result["per_seed"]:
    lines.append(f"| {p['seed']} | {_f(p['flat_best_k'])} | {_f(p['halving_best_k'])} | "
                 f"{p['flat_steps_to_target']} | {p['halving_steps_to_target'] or 'never'} | "
                 f"{_f(p['steps_ratio'], 2)} | {_f(p['budget_fraction'], 2)} | "
                 f"{p['flat_cells']} / {p['halving_cells']} "
                 f"({p['halving_cells_at_top']}) |")
  lines += ["", f"- mean best-{s['best_k']} full-fidelity score: flat "
            f"{_f(result['mean_flat_best_k'])}, halving {_f(result['mean_halving_best_k'])} "
            f"(halving higher on {result['halving_wins']} of {len(result['per_seed'])} seeds, "
            f"{result['ties']} ties)",
            f"- proxy steps halving needs to reach the flat search's final best-{s['best_k']} "
            f"quality, as a fraction of the steps the flat search itself needed to reach it: "
            f"median {_f(result['median_steps_ratio'], 2)}, mean "
            f"{_f(result['mean_steps_ratio'], 2)}; as a fraction of the flat search's whole "
            f"budget: median {_f(result['median_budget_fraction'], 2)} (reached on "
            f"{result['seeds_reaching_target']} of {len(result['per_seed'])} seeds; the "
            "issue's target: <= 0.33)"]
  return lines
