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

Two trials, each labelled in the output:

- trial='fake': the fake trial (dpc_tf.search.fake_trial) with noise shrinking as
  1/sqrt(steps); its full-fidelity score is known without extra runs.
- trial='table': the real proxy on dpc_synthetic, replayed from a table of cells each
  trained once and scored at every rung (halving_table.py: NAS-Bench-style tabular
  replay; live real-proxy searches for >= 6 seeds x 2 searches do not fit a 2-core
  machine). The searches sample uniformly (p_uniform = 1.0), a cell reads the table row
  its fingerprint hashes to; best-k counts distinct rows, and the output states how often
  two sampled cells shared a row.
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
from dpc_tf.reproduction import halving_table
from dpc_tf.reproduction.halving_table import TableTrial
from dpc_tf.search.fake_trial import FakeTrial
from dpc_tf.search.store import Store
from dpc_tf.search import subjects, trial as trial_lib
from dpc_tf.utils.stats import spearman

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
  trial: str = "fake"                   # or 'table' (halving_table.TableTrial)
  p_uniform: float = 0.5                # RandomSearch's; the table replay needs 1.0


# The real-proxy replay (trial='table'): the table's rungs; a budget of 8 top-rung trials
# lets halving sample ~30 cells, under half of a 64-row table (collisions stated). A score
# at 100 steps continued from 33 equals one of an unbroken 100-step run, so the same table
# also replays halving over (100, 300) alone (TABLE_RUNG_SETS).
TABLE_SETTINGS = Settings(seeds=tuple(range(12)), budget=8, rungs=(33, 100, 300),
                          trial="table", p_uniform=1.0)
TABLE_RUNG_SETS = ((33, 100, 300), (100, 300))
TRIALS = ("fake", "table")


def make_trial(settings: Settings, table: Optional[TableTrial] = None):
  """The study's trial function; it also gives score(cell, steps=) (the full-fidelity one at
  the top rung)."""
  if settings.trial == "fake":
    return FakeTrial(step_noise=settings.step_noise, noise_steps=settings.noise_steps)
  if settings.trial != "table":
    raise DpcError(f"halving study: trial must be one of {', '.join(TRIALS)}, got "
                   f"{settings.trial!r}")
  if table is None:
    raise DpcError("halving study: trial 'table' needs a table (halving_table.build_table)")
  if not set(settings.rungs) <= set(table.rungs) or settings.rungs[-1] != table.rungs[-1]:
    raise DpcError(f"halving study: rungs {tuple(settings.rungs)} are not rungs of the "
                   f"table {table.rungs} ending at its top")
  if settings.p_uniform != 1.0:
    raise DpcError("halving study: the table replay needs p_uniform = 1.0 (a row stands "
                   "for a uniformly sampled cell)")
  return table


def distinct_key(trial_fn, cell) -> str:
  """What counts once in a best-k: a table row (two cells may share one), else the cell."""
  return f"row{trial_fn.row(cell)}" if isinstance(trial_fn, TableTrial) else cell.fingerprint()


def _ranking_key(trial) -> tuple:
  return (-trial.rung, -(trial.score if trial.score is not None else float("-inf")), trial.id)


def run_search(settings: Settings, seed: int, fidelity: str, folder: str,
               trial_fn=None) -> dict:
  """One search to its budget; the curve of (steps spent, best-k full-fidelity mean)."""
  rungs = halving_lib.Rungs(tuple(settings.rungs), settings.reduction_factor)
  top = rungs.steps[-1]
  trial_fn = trial_fn or make_trial(settings)
  search = RandomSearch(num_branches=settings.num_branches, budget=settings.budget,
                        top_k=settings.top_k, seed=seed, p_uniform=settings.p_uniform,
                        rungs=rungs if fidelity == "successive_halving" else None)
  # Flat: every cell one trial of the top rung's steps, from scratch.
  call = trial_fn if search.rungs else functools.partial(trial_fn, steps=top,
                                                         schedule_steps=top)
  full = {}  # distinct key -> full-fidelity score (what a top-rung trial returns)
  spent, curve, jobs = 0, [], 0
  started = time.perf_counter()
  with Store(os.path.join(folder, f"{fidelity}-{seed}.sqlite")) as store:
    coordinator = Coordinator(store, search, max_consecutive_failures=0,
                              checkpoint_root=os.path.join(folder, f"heads-{fidelity}-{seed}"))
    while not coordinator.finished():
      trial = coordinator.next_trial()
      record = subjects.call_trial(call, subjects.decode(trial.cell_json))
      coordinator.complete(trial.id, trial_lib.validate_record(record), 0.0)
      jobs += 1
      spent += rungs.cost(trial.rung) if search.rungs else top
      full.setdefault(distinct_key(trial_fn, trial.cell), trial_fn.score(trial.cell, steps=top))
      best = best_distinct(trial_fn, store.trials("done"), settings.best_k)
      if len(best) == settings.best_k:
        value = statistics.fmean(full[key] for key in best)
        if not curve or value != curve[-1][1]:  # the curve's steps: where it changes
          curve.append([spent, value])
    cells = store.trials()
  keys = {distinct_key(trial_fn, t.cell) for t in cells}
  return {"fidelity": fidelity, "seed": seed, "steps": spent, "jobs": jobs,
          "cells": len(cells), "distinct": len(keys), "cells_at_top": sum(
              t.rung == rungs.top for t in cells) if search.rungs else len(cells),
          "final_best_k": curve[-1][1] if curve else None, "curve": curve,
          "wall_seconds": time.perf_counter() - started}


def best_distinct(trial_fn, trials, best_k: int) -> list[str]:
  """The keys of the first best_k distinct subjects in the search's own ranking order."""
  keys = []
  for trial in sorted(trials, key=_ranking_key):
    key = distinct_key(trial_fn, trial.cell)
    if key not in keys:
      keys.append(key)
      if len(keys) == best_k:
        break
  return keys


def steps_to_reach(curve: Sequence[Sequence[float]], target: float) -> Optional[int]:
  """The first steps count at which the curve's value is >= target (None: never)."""
  return next((int(steps) for steps, value in curve if value >= target - 1e-12), None)


def study(settings: Settings = Settings(), table: Optional[TableTrial] = None) -> dict:
  """Both searches for every seed, and the comparison (trial='table': on `table`)."""
  trial_fn = make_trial(settings, table)
  if settings.budget < settings.best_k or len(settings.seeds) < 1:
    raise DpcError(f"halving study: the budget ({settings.budget} top-rung trials) must be at "
                   f"least best_k ({settings.best_k}), with one seed or more")
  runs = []
  with tempfile.TemporaryDirectory(prefix="dpc-halving-") as folder:
    for seed in settings.seeds:
      for fidelity in ("flat", "successive_halving"):
        runs.append(run_search(settings, seed, fidelity, folder, trial_fn))
  short = [r for r in runs if r["final_best_k"] is None]
  if short:
    raise DpcError(f"halving study: the {short[0]['fidelity']} search of seed "
                   f"{short[0]['seed']} found fewer than best_k ({settings.best_k}) distinct "
                   "cells; raise the budget (or the table's size)")
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
                     "flat_distinct": flat["distinct"], "halving_distinct": halving["distinct"],
                     "halving_cells_at_top": halving["cells_at_top"]})
  reached = [p["steps_ratio"] for p in per_seed if p["steps_ratio"] is not None]
  label = ("fake (dpc_tf.search.fake_trial, noise shrinking as 1/sqrt(steps))"
           if settings.trial == "fake" else TABLE_LABEL)
  result = {"trial": label, "settings": dataclasses.asdict(settings),
            "budget_steps": settings.budget * settings.rungs[-1], "per_seed": per_seed,
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
  if isinstance(trial_fn, TableTrial):
    result["collision_rate"] = {f: 1 - sum(r["distinct"] for r in runs if r["fidelity"] == f)
                                / sum(r["cells"] for r in runs if r["fidelity"] == f)
                                for f in ("flat", "successive_halving")}
  return result


def table_study(work_dir: str, num_cells: int, seeds: Sequence[int],
                gin_files: Optional[Sequence[str]] = None,
                bindings: Sequence[str] = (), max_new: Optional[int] = None,
                deadline: Optional[float] = None) -> Optional[dict]:
  """Builds (or resumes, or reuses) the real-proxy table in WORK_DIR/halving_table, then
  replays the study on it for each of TABLE_RUNG_SETS; None while the table is not complete
  (a rerun goes on)."""
  settings = halving_table.TableSettings(num_cells=num_cells,
                                         rungs=tuple(TABLE_SETTINGS.rungs))
  rows = halving_table.build_real_table(work_dir, settings, gin_files, bindings,
                                        max_new=max_new, deadline=deadline)
  if len(rows) < num_cells:
    return None
  return replay(rows, settings.rungs, seeds)


def replay(rows: Sequence[dict], rungs: Sequence[int], seeds: Sequence[int]) -> dict:
  """The study on a table's rows for each of TABLE_RUNG_SETS, and the table's figures."""
  table = halving_table.table_trial(rows, rungs)
  studies = [study(dataclasses.replace(TABLE_SETTINGS, seeds=tuple(seeds), rungs=sub), table)
             for sub in TABLE_RUNG_SETS]
  facts = dict(table_facts(table, TABLE_SETTINGS.best_k),
               build_seconds=sum(r["seconds"] for r in rows),
               median_row_seconds=statistics.median(r["seconds"] for r in rows),
               rung_spearman=rung_spearman(rows))
  return {"trial": TABLE_LABEL, "table": facts, "studies": studies}


def rung_spearman(rows: Sequence[dict]) -> list:
  """Spearman rho of each rung's scores against the top rung's over the table's rows: how
  well a short rung ranks cells (what halving relies on)."""
  top = [r["scores"][-1] for r in rows]
  return [spearman([r["scores"][k] for r in rows], top)
          for k in range(len(rows[0]["scores"]) - 1)]


TABLE_LABEL = ("the real proxy on dpc_synthetic, replayed from a table (each cell trained "
               "once, scored at every rung; dpc_tf/reproduction/halving_table.py)")


def table_facts(table: TableTrial, best_k: int) -> dict:
  """The table's own figures: its size, and the full-fidelity mean of its best k rows and of
  all rows (what a perfect search and a blind pick would hand on)."""
  top = sorted((row[-1] for row in table.scores), reverse=True)
  return {"rows": len(top), "rungs": list(table.rungs),
          "best_k_rows_mean": statistics.fmean(top[:best_k]), "mean": statistics.fmean(top),
          "sd": statistics.stdev(top) if len(top) > 1 else 0.0}


def _f(value, digits: int = 3) -> str:
  return "-" if value is None else f"{value:.{digits}f}"


def markdown(result: dict) -> list[str]:
  """The section's lines (docs/REPRODUCTION.md and docs/BENCHMARKS.md): the fake-trial
  study, then the real-proxy table replay when it was run (result['table_study'])."""
  lines = []
  if "per_seed" in result:
    lines += [f"### Fake trial: {result['trial']}", "",
              "A stand-in, not the real proxy on dpc_synthetic: its full-fidelity score is "
              "known without extra runs; the real proxy's replay follows.", ""]
    lines += comparison_lines(result)
  table = result.get("table_study")
  if table:
    facts, best_k = table["table"], table["studies"][0]["settings"]["best_k"]
    lines += (["", ""] if lines else []) + [
        "### Real proxy, tabular replay", "",
        f"**Trial: {table['trial']}.** The table: {facts['rows']} distinct cells drawn "
        f"uniformly, each trained once by the real proxy (gin/proxy/synthetic.gin with the "
        f"demo's 128 eval images) to {facts['rungs'][-1]} steps, continued rung to rung "
        f"and scored at {', '.join(map(str, facts['rungs']))} steps, exactly as a halving "
        "search sees them (a lower rung's score equals an unbroken run's, so a subset of "
        "the rungs replays too); the searches (RandomSearch with p_uniform = 1.0, "
        "Coordinator, Store, halving) read a cell's score from the row its fingerprint "
        f"hashes to. Best-{best_k} counts distinct rows. The table's best {best_k} rows "
        f"average {_f(facts['best_k_rows_mean'])} (a perfect search's ceiling), all rows "
        f"{_f(facts['mean'])} (a blind pick), s.d. across rows {_f(facts['sd'])}. Spearman "
        "rho of each lower rung's scores against the top rung's over the table: "
        + ", ".join(f"{s}: {_f(r, 2)}" for s, r in zip(facts["rungs"], facts["rung_spearman"]))
        + ". "
        f"The table took {facts['build_seconds'] / 60:.0f} min of proxy training (median "
        f"{facts['median_row_seconds']:.0f} s a cell, all rungs, on a shared 2-core machine)."]
    for one in table["studies"]:
      rate = one["collision_rate"]
      lines += ["", f"#### Halving over rungs {tuple(one['settings']['rungs'])}", "",
                f"Two sampled cells shared a table row in {100 * rate['flat']:.0f}% (flat) "
                f"and {100 * rate['successive_halving']:.0f}% (halving) of the samples.", ""]
      lines += comparison_lines(one)
  return lines


def comparison_lines(result: dict) -> list[str]:
  s = result["settings"]
  lines = [
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
