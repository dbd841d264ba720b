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
  seeds: Sequence[int] = (0,)    # claims 1, 2: each cell's proxy and full task per seed;
  #                                its score is the mean (claim 4 times seed 0's trials)
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


def seed_key(key: str, seed: int) -> str:
  """A trial's store key: seed 0 keeps the bare key (the records of single-seed runs)."""
  return key if seed == 0 else f"{key}-seed{seed}"


def proxy_record(store, runner, cell: Cell, steps: int, settings: Settings,
                 seed: int = 0) -> dict:
  kind, key = f"proxy-s{steps}", seed_key(cell.fingerprint(), seed)
  if store.get(kind, key) is None:
    _check_time(store, settings)
  return store.get_or_run(kind, key, lambda: runner.proxy(cell, steps, seed))


def full_record(store, runner, cell: Optional[Cell], settings: Settings,
                seed: int = 0) -> dict:
  kind = f"full-s{settings.full_steps}"
  key = seed_key(ASPP if cell is None else cell.fingerprint(), seed)
  if store.get(kind, key) is None:
    _check_time(store, settings)
  return store.get_or_run(kind, key, lambda: runner.full(cell, key, settings.full_steps, seed))


def stored_full(store, cell: Optional[Cell], settings: Settings) -> list[Optional[dict]]:
  """The full-task records of `cell` (None: ASPP), one per seed: None where not run yet."""
  key = ASPP if cell is None else cell.fingerprint()
  return [store.get(f"full-s{settings.full_steps}", seed_key(key, s)) for s in settings.seeds]


def _scores(records: Sequence[Optional[dict]]) -> list[float]:
  return [r["miou"] for r in records if r is not None]


def _mean(xs: Sequence[float]) -> Optional[float]:
  return sum(xs) / len(xs) if xs else None


def costs_record(store, runner, cell: Optional[Cell]) -> dict:
  key = ASPP if cell is None else cell.fingerprint()
  return store.get_or_run("costs", key, lambda: runner.head_costs(cell, key))


# --- claim 3: random search with local sampling vs uniform sampling -------------------------
STRATEGIES = (("uniform", 1.0), ("local", None))
TOP_KS = (1, 5, 10)  # claim 3 also compares the mean of each search's best k scores


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
      top = sorted(scores, reverse=True)
      runs.append({"strategy": name, "p_uniform": p, "seed": seed, "trials": trials,
                   "best_so_far": stats.best_so_far(scores), "best": max(scores),
                   "top_means": {str(k): sum(top[:k]) / k for k in TOP_KS if k <= len(top)}})
  summary = {"proxy_steps": settings.search_steps, "budget": settings.search_budget,
             "seeds": list(settings.search_seeds), "top_k": settings.top_k, "runs": runs,
             "strategies": {}}
  for name, _ in STRATEGIES:
    mine = [r for r in runs if r["strategy"] == name]
    summary["strategies"][name] = {
        "p_uniform": mine[0]["p_uniform"], "mean_best_so_far": stats.mean_curve(
            [r["best_so_far"] for r in mine]),
        "final_best": [r["best"] for r in mine],
        "mean_final_best": sum(r["best"] for r in mine) / len(mine),
        "mean_top_means": {k: sum(r["top_means"][k] for r in mine) / len(mine)
                           for k in mine[0]["top_means"]}}
  u, l = summary["strategies"]["uniform"], summary["strategies"]["local"]
  summary["local_wins"] = sum(b > a for a, b in zip(u["final_best"], l["final_best"]))
  summary["ties"] = sum(b == a for a, b in zip(u["final_best"], l["final_best"]))
  summary["mean_gain"] = l["mean_final_best"] - u["mean_final_best"]
  # The pipeline re-ranks its best few cells, so the quality of that set counts too.
  by_seed = {(r["strategy"], r["seed"]): r["top_means"] for r in runs}
  summary["top_mean_wins"] = {k: sum(by_seed[("local", s)][k] > by_seed[("uniform", s)][k]
                                     for s in settings.search_seeds)
                              for k in u["mean_top_means"]}
  store.write_claim("search_strategy", summary)
  return summary


# --- claim 1: proxy fidelity ----------------------------------------------------------------
def fidelity_cells(store, settings: Settings) -> list[tuple[str, Cell]]:
  """(origin, cell): the released cell, uniform random cells, the searches' best cells.

  Chosen once per work folder and stored (fidelity_cells.json): extending claim 3's searches
  later must not swap claim 1's cells and orphan their finished trials.
  """
  choice = {"num_random": settings.num_random, "num_searched": settings.num_searched,
            "cell_seed": settings.cell_seed, "num_branches": settings.num_branches}
  stored = store.read_claim("fidelity_cells")
  if stored and stored["choice"] == choice:
    return [(c["origin"], Cell.from_text(c["cell"])) for c in stored["cells"]]
  cells = _choose_fidelity_cells(store, settings)
  store.write_claim("fidelity_cells", {"choice": choice, "cells": [
      {"origin": origin, "cell": cell.text} for origin, cell in cells]})
  return cells


def _choose_fidelity_cells(store, settings: Settings) -> list[tuple[str, Cell]]:
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
    proxies = [proxy_record(store, runner, cell, settings.proxy_steps, settings, seed)
               for seed in settings.seeds]
    rows.append({"origin": origin, "cell": cell.text, "fingerprint": cell.fingerprint(),
                 "proxy_miou": _mean([p["miou"] for p in proxies]),
                 "proxy_mious": [p["miou"] for p in proxies],
                 "proxy_seconds": proxies[0]["seconds"],
                 "proxy_step_seconds": proxies[0].get("step_seconds"), "_cell": cell})
  return rows


def _pick(rows: list[dict]) -> dict:
  """The search's answer: the best cell by proxy score (ties: the earlier row)."""
  return max(rows, key=lambda r: r["proxy_miou"])


def _add_full(store, rows: list[dict], settings: Settings) -> list[dict]:
  """Fills each row's full-task scores from the store; returns the rows with every seed."""
  for row in rows:
    records = stored_full(store, row["_cell"], settings)
    scores, first = _scores(records), records[0]  # timings: the first seed's, as the proxy's
    row.update(full_mious=scores, full_miou=_mean(scores),
               full_seconds=first and first["seconds"],
               full_step_seconds=first and first.get("step_seconds"))
  return [r for r in rows if len(r["full_mious"]) == len(settings.seeds)]


def fidelity(store, runner, settings: Settings) -> dict:
  rows = _proxy_rows(store, runner, settings)
  pick = _pick(rows)
  order = [pick] + [r for r in rows if r is not pick]
  stopped = None
  try:  # seed by seed, so that a partial run already has every cell's first score
    for seed in settings.seeds:
      full_record(store, runner, None, settings, seed)  # the ASPP baseline, for claim 2
      for row in order:
        full_record(store, runner, row["_cell"], settings, seed)
  except OutOfTime as e:
    stopped = e
  summary = _write_fidelity(store, rows, settings)  # partial results are reported, marked
  if stopped is not None:
    raise stopped
  return summary


def _write_fidelity(store, rows: list[dict], settings: Settings) -> dict:
  done = _add_full(store, rows, settings)
  summary = {"proxy_steps": settings.proxy_steps, "full_steps": settings.full_steps,
             "seeds": list(settings.seeds), "num_cells": len(rows), "num_full": len(done),
             "complete": len(done) == len(rows),
             "rows": [{k: v for k, v in r.items() if k != "_cell"} for r in rows]}
  if len(done) >= 3:
    rho = stats.spearman([r["proxy_miou"] for r in done], [r["full_miou"] for r in done])
    summary.update(spearman_rho=rho, p_value=stats.spearman_pvalue(rho, len(done)))
  if len(done) >= 3 and len(settings.seeds) >= 2:
    by_seed = lambda field: [[r[field][i] for r in done]  # noqa: E731
                             for i in range(len(settings.seeds))]
    proxy, full = stats.seed_noise(by_seed("proxy_mious")), stats.seed_noise(by_seed("full_mious"))
    summary.update(
        proxy_noise=proxy, full_noise=full,
        per_seed_rho=[stats.spearman(p, f) for p, f in zip(by_seed("proxy_mious"),
                                                           by_seed("full_mious"))],
        rho_ceiling=stats.rho_ceiling(proxy["reliability"], full["reliability"]))
  store.write_claim("fidelity", summary)
  return summary


# --- claim 2: searched cell vs ASPP and random cells -----------------------------------------
def vs_aspp(store, runner, settings: Settings) -> dict:
  rows = _proxy_rows(store, runner, settings)
  pick = _pick(rows)
  origins = {r["fingerprint"]: r["origin"] for r in rows}
  for seed in settings.seeds:
    full_record(store, runner, None, settings, seed)
    full_record(store, runner, pick["_cell"], settings, seed)
  done = _add_full(store, rows, settings)
  entries = {"aspp": None, "proxy_pick": pick["_cell"]}
  top = sorted(rows, key=lambda r: -r["proxy_miou"])[:settings.num_searched]
  reranked = [r for r in top if any(r is d for d in done)]
  if reranked:
    entries["reranked_pick"] = max(reranked, key=lambda r: r["full_miou"])["_cell"]
  entries["released_cell"] = CITYSCAPES_CELL
  for seed in settings.seeds:
    full_record(store, runner, CITYSCAPES_CELL, settings, seed)
  randoms = sorted(r["full_miou"] for r in done if r["origin"] == "random")
  summary = {"full_steps": settings.full_steps, "proxy_steps": settings.proxy_steps,
             "seeds": list(settings.seeds), "entries": {}, "reranked_from": len(reranked),
             "num_cells": len(rows), "random_full_miou": randoms}
  aspp_scores = _scores(stored_full(store, None, settings))
  proxy_means = {r["fingerprint"]: r["proxy_miou"] for r in rows}  # every entry's cell is a row
  for name, cell in entries.items():
    costs = costs_record(store, runner, cell)
    scores = _scores(stored_full(store, cell, settings))
    diffs = [a - b for a, b in zip(scores, aspp_scores)]  # paired by seed
    summary["entries"][name] = {
        "cell": None if cell is None else cell.text, "miou": _mean(scores), "mious": scores,
        "origin": "hand design" if cell is None else origins.get(cell.fingerprint(), "released"),
        "proxy_miou": None if cell is None else proxy_means[cell.fingerprint()],
        "miou_minus_aspp": _mean(diffs), "miou_minus_aspp_se": stats.standard_error(diffs),
        **{k: costs[k] for k in ("head_params", "head_madds", "branch_params",
                                 "branch_madds", "input_shape")}}
  if randoms:
    summary["random_mean"] = sum(randoms) / len(randoms)
    summary["random_max"] = max(randoms)
  aspp = summary["entries"]["aspp"]
  for entry in summary["entries"].values():
    entry["params_vs_aspp"] = entry["head_params"] / aspp["head_params"]
    entry["madds_vs_aspp"] = entry["head_madds"] / aspp["head_madds"]
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
