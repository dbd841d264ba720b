"""The four claims, each a function of a ResultStore, a runner and a Settings.

A runner has proxy(cell, steps) -> record, full(cell, key, steps) -> record and
head_costs(cell, key) -> record (runners.TfRunner, or a fake in tests). Every trial goes
through the store, keyed by what determines its result (the cell's fingerprint and the step
count; every other setting is fixed by the gin recipe), so claims share trials and a rerun
never repeats one: claim 1's full-task runs serve claims 2 and 4.
"""

from __future__ import annotations

import dataclasses
import random
import time
from typing import Optional, Sequence

from dpc_tf.reproduction import stats
from dpc_tf.reproduction.runners import ASPP
from dpc_tf.search.algorithm import History, Observation, RandomSearch
from dpc_tf.search_space import CITYSCAPES_CELL, Cell, sample_cell


@dataclasses.dataclass(frozen=True)
class Settings:
  proxy_steps: int = 300         # claims 1, 2, 4 (the synthetic proxy recipe)
  full_steps: int = 150          # whole-model training steps of the full task
  num_random: int = 14           # claim 1: uniform random cells (+ the released cell)
  num_searched: int = 5          # claim 1: best distinct cells found by claim 3's searches
  cell_seed: int = 0
  search_steps: int = 100        # claim 3's cheaper proxy
  search_seeds: Sequence[int] = (0, 1, 2)
  search_budget: int = 12
  p_uniform_local: float = 0.5   # the default mix; the baseline is p_uniform = 1.0
  top_k: int = 5
  num_branches: int = 5
  deadline: Optional[float] = None  # time.time() after which no new trial starts
  max_new_trials: Optional[int] = None  # stop after this many trials run by this process


class OutOfTime(Exception):
  """The deadline or the trial limit was reached; finished trials are stored, a rerun resumes."""


def _check_time(store, settings: Settings) -> None:
  if settings.deadline is not None and time.time() > settings.deadline:
    raise OutOfTime("deadline reached; rerun the same command to resume")
  if settings.max_new_trials is not None and store.ran >= settings.max_new_trials:
    raise OutOfTime(f"{store.ran} new trials run (--max_new_trials); rerun to go on")


def proxy_record(store, runner, cell: Cell, steps: int, settings: Settings) -> dict:
  key = cell.fingerprint()
  found = store.get(f"proxy-s{steps}", key)
  if found is None:
    _check_time(store, settings)
  return store.get_or_run(f"proxy-s{steps}", key, lambda: runner.proxy(cell, steps))


def full_record(store, runner, cell: Optional[Cell], settings: Settings) -> dict:
  key = ASPP if cell is None else cell.fingerprint()
  if store.get(f"full-s{settings.full_steps}", key) is None:
    _check_time(store, settings)
  return store.get_or_run(f"full-s{settings.full_steps}", key,
                          lambda: runner.full(cell, key, settings.full_steps))


def costs_record(store, runner, cell: Optional[Cell]) -> dict:
  key = ASPP if cell is None else cell.fingerprint()
  return store.get_or_run("costs", key, lambda: runner.head_costs(cell, key))


# --- claim 3: random search with local sampling vs uniform sampling -------------------------
STRATEGIES = (("uniform", 1.0), ("local", None))


def search_strategy(store, runner, settings: Settings) -> dict:
  runs = []
  for name, p_uniform in STRATEGIES:
    p = settings.p_uniform_local if p_uniform is None else p_uniform
    for seed in settings.search_seeds:
      algo = RandomSearch(num_branches=settings.num_branches, budget=settings.search_budget,
                          p_uniform=p, top_k=settings.top_k, seed=seed)
      seen, observations, trials = set(), [], []
      for index in range(settings.search_budget):
        suggestion = algo.suggest(index, History(seen, observations))
        cell = suggestion.cell
        seen.add(cell.fingerprint())
        record = proxy_record(store, runner, cell, settings.search_steps, settings)
        observations.append(Observation(index, cell, record["miou"]))
        trials.append({"index": index, "origin": suggestion.origin, "cell": cell.text,
                       "fingerprint": cell.fingerprint(), "miou": record["miou"]})
      scores = [t["miou"] for t in trials]
      runs.append({"strategy": name, "p_uniform": p, "seed": seed, "trials": trials,
                   "best_so_far": stats.best_so_far(scores), "best": max(scores)})
  summary = {"proxy_steps": settings.search_steps, "budget": settings.search_budget,
             "seeds": list(settings.search_seeds), "top_k": settings.top_k, "runs": runs,
             "strategies": {}}
  for name, _ in STRATEGIES:
    mine = [r for r in runs if r["strategy"] == name]
    summary["strategies"][name] = {
        "p_uniform": mine[0]["p_uniform"], "mean_best_so_far": stats.mean_curve(
            [r["best_so_far"] for r in mine]),
        "final_best": [r["best"] for r in mine],
        "mean_final_best": sum(r["best"] for r in mine) / len(mine)}
  u, l = summary["strategies"]["uniform"], summary["strategies"]["local"]
  summary["local_wins"] = sum(b > a for a, b in zip(u["final_best"], l["final_best"]))
  summary["ties"] = sum(b == a for a, b in zip(u["final_best"], l["final_best"]))
  summary["mean_gain"] = l["mean_final_best"] - u["mean_final_best"]
  store.write_claim("search_strategy", summary)
  return summary


# --- claim 1: proxy fidelity ----------------------------------------------------------------
def fidelity_cells(store, settings: Settings) -> list[tuple[str, Cell]]:
  """(origin, cell): the released cell, uniform random cells, the searches' best cells."""
  rng = random.Random(f"dpc_tf.reproduction:{settings.cell_seed}")
  cells = [("released", CITYSCAPES_CELL)]
  searched = store.read_claim("search_strategy")
  picked = []
  if searched and settings.num_searched:
    trials = [t for r in searched["runs"] if r["strategy"] == "local" for t in r["trials"]]
    for t in sorted(trials, key=lambda t: -t["miou"]):
      if t["fingerprint"] not in {c.fingerprint() for _, c in cells + picked}:
        picked.append(("searched", Cell.from_text(t["cell"])))
      if len(picked) == settings.num_searched:
        break
  num_random = settings.num_random + settings.num_searched - len(picked)
  while len(cells) < 1 + num_random:
    cell = sample_cell(rng, settings.num_branches)
    if cell.fingerprint() not in {c.fingerprint() for _, c in cells}:
      cells.append(("random", cell))
  return cells + picked


def _proxy_rows(store, runner, settings: Settings) -> list[dict]:
  rows = []
  for origin, cell in fidelity_cells(store, settings):
    proxy = proxy_record(store, runner, cell, settings.proxy_steps, settings)
    rows.append({"origin": origin, "cell": cell.text, "fingerprint": cell.fingerprint(),
                 "proxy_miou": proxy["miou"], "proxy_seconds": proxy["seconds"],
                 "proxy_step_seconds": proxy.get("step_seconds"), "_cell": cell})
  return rows


def _pick(rows: list[dict]) -> dict:
  """The search's answer: the best cell by proxy score (ties: the earlier row)."""
  return max(rows, key=lambda r: r["proxy_miou"])


def fidelity(store, runner, settings: Settings) -> dict:
  rows = _proxy_rows(store, runner, settings)
  pick = _pick(rows)
  order = [pick] + [r for r in rows if r is not pick]
  full_record(store, runner, None, settings)  # the ASPP baseline, for claim 2
  stopped = None
  for row in order:
    try:
      full = full_record(store, runner, row["_cell"], settings)
    except OutOfTime as e:
      stopped = e
      full = store.get(f"full-s{settings.full_steps}", row["fingerprint"])
      if full is None:
        continue
    row.update(full_miou=full["miou"], full_seconds=full["seconds"],
               full_step_seconds=full.get("step_seconds"))
  summary = _write_fidelity(store, rows, settings)  # partial results are reported, marked
  if stopped is not None:
    raise stopped
  return summary


def _write_fidelity(store, rows: list[dict], settings: Settings) -> dict:
  done = [r for r in rows if r.get("full_miou") is not None]
  summary = {"proxy_steps": settings.proxy_steps, "full_steps": settings.full_steps,
             "num_cells": len(rows), "num_full": len(done),
             "complete": len(done) == len(rows),
             "rows": [{k: v for k, v in r.items() if k != "_cell"} for r in rows]}
  if len(done) >= 3:
    rho = stats.spearman([r["proxy_miou"] for r in done], [r["full_miou"] for r in done])
    summary.update(spearman_rho=rho, p_value=stats.spearman_pvalue(rho, len(done)))
  store.write_claim("fidelity", summary)
  return summary


# --- claim 2: searched cell vs ASPP and random cells -----------------------------------------
def vs_aspp(store, runner, settings: Settings) -> dict:
  rows = _proxy_rows(store, runner, settings)
  pick = _pick(rows)
  origins = {r["fingerprint"]: r["origin"] for r in rows}
  entries = {"aspp": (None, full_record(store, runner, None, settings)),
             "proxy_pick": (pick["_cell"], full_record(store, runner, pick["_cell"], settings))}
  randoms = []
  for row in rows:
    full = store.get(f"full-s{settings.full_steps}", row["fingerprint"])
    if full is not None:
      row["full_miou"] = full["miou"]
      if row["origin"] == "random":
        randoms.append(full["miou"])
  top = sorted(rows, key=lambda r: -r["proxy_miou"])[:settings.num_searched]
  reranked = [r for r in top if r.get("full_miou") is not None]
  if reranked:
    best = max(reranked, key=lambda r: r["full_miou"])
    entries["reranked_pick"] = (best["_cell"], full_record(store, runner, best["_cell"],
                                                            settings))
  released = full_record(store, runner, CITYSCAPES_CELL, settings)
  entries["released_cell"] = (CITYSCAPES_CELL, released)
  summary = {"full_steps": settings.full_steps, "proxy_steps": settings.proxy_steps,
             "entries": {}, "reranked_from": len(reranked), "num_cells": len(rows),
             "random_full_miou": sorted(randoms)}
  for name, (cell, full) in entries.items():
    costs = costs_record(store, runner, cell)
    summary["entries"][name] = {
        "cell": None if cell is None else cell.text, "miou": full["miou"],
        "origin": "hand design" if cell is None else origins.get(cell.fingerprint(), "released"),
        "proxy_miou": None if cell is None else proxy_record(
            store, runner, cell, settings.proxy_steps, settings)["miou"],
        **{k: costs[k] for k in ("head_params", "head_madds", "branch_params",
                                 "branch_madds", "input_shape")}}
  if randoms:
    summary["random_mean"] = sum(randoms) / len(randoms)
    summary["random_max"] = max(randoms)
  aspp = summary["entries"]["aspp"]
  for name, entry in summary["entries"].items():
    entry["params_vs_aspp"] = entry["head_params"] / aspp["head_params"]
    entry["madds_vs_aspp"] = entry["head_madds"] / aspp["head_madds"]
    entry["miou_minus_aspp"] = entry["miou"] - aspp["miou"]
  store.write_claim("vs_aspp", summary)
  return summary


# --- claim 4: proxy cost --------------------------------------------------------------------
def proxy_cost(store, runner, settings: Settings) -> dict:
  proxy_record(store, runner, CITYSCAPES_CELL, settings.proxy_steps, settings)
  full_record(store, runner, CITYSCAPES_CELL, settings)
  pairs = []
  for origin, cell in fidelity_cells(store, settings):
    proxy = store.get(f"proxy-s{settings.proxy_steps}", cell.fingerprint())
    full = store.get(f"full-s{settings.full_steps}", cell.fingerprint())
    if proxy is None or full is None:
      continue
    pairs.append({"cell": cell.text, "origin": origin, "proxy_seconds": proxy["seconds"],
                  "proxy_train_seconds": proxy.get("train_seconds"),
                  "proxy_step_seconds": proxy.get("step_seconds"),
                  "full_seconds": full["seconds"], "full_step_seconds": full.get("step_seconds"),
                  "trial_ratio": full["seconds"] / proxy["seconds"],
                  "step_ratio": (full["step_seconds"] / proxy["step_seconds"]
                                 if full.get("step_seconds") and proxy.get("step_seconds")
                                 else None)})
  median = lambda xs: sorted(xs)[len(xs) // 2] if xs else None  # noqa: E731
  trial = [p["trial_ratio"] for p in pairs]
  step = [p["step_ratio"] for p in pairs if p["step_ratio"]]
  summary = {"proxy_steps": settings.proxy_steps, "full_steps": settings.full_steps,
             "pairs": pairs, "median_trial_ratio": median(trial),
             "median_step_ratio": median(step),
             "median_proxy_seconds": median([p["proxy_seconds"] for p in pairs]),
             "median_full_seconds": median([p["full_seconds"] for p in pairs])}
  if summary["median_step_ratio"]:
    # both at the same number of steps: what the per-trial ratio is once step counts match
    summary["equal_steps_trial_ratio"] = median(
        [p["full_seconds"] / p["proxy_seconds"] * settings.proxy_steps / settings.full_steps
         for p in pairs])
  store.write_claim("proxy_cost", summary)
  return summary
