"""Claim 2 through the search itself: does a searched head beat ASPP, or match it at <= 0.5x
its head multiply-adds, beyond one standard error?

`python -m dpc_tf.reproduce search_verdict --work_dir=W` runs `python -m dpc_tf.search` with
gin/search/claim2.gin (the Pareto objective, a diverse re-rank, the ASPP and released
baselines, 5 re-rank seeds each) into W/search_verdict/ as a child process (killed with this
one; rerun to resume the search where it stopped), then summarises that folder into
W/search_verdict.json: every re-ranked cell against ASPP over paired seeds (the search's own
verdict code, dpc_tf.search.verdict, applied to each cell, not only the chosen one), the
baselines, the search's own verdict sentence and its proxy-vs-re-rank rho.

Claim 2's test, per cell: "beats ASPP" when delta - stderr > 0; "matches it cheaply" when
|delta| <= stderr and head MAdds <= 0.5x ASPP's. (The search's own sentence uses the stricter
2-standard-error noise band, dpc_tf.search.verdict.NOISE_STDERRS.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Optional, Sequence

from dpc_tf.errors import DpcError
from dpc_tf.utils import processes
from dpc_tf.utils.files import read_json

NAME = "search_verdict"
GIN_FILE = os.path.join("gin", "search", "claim2.gin")
CHEAP_MADDS_RATIO = 0.5  # the claim: "or match it at <= 0.5x head MAdds"
BEATS, MATCHES = "beats ASPP", "matches ASPP at <= 0.5x MAdds"  # the readings that show it


def run_search(work_dir: str, gin_file: str = GIN_FILE, budget: Optional[int] = None,
               bindings: Sequence[str] = ()) -> str:
  """Runs (or resumes) the search into work_dir/search_verdict; returns that folder."""
  search_dir = os.path.join(work_dir, NAME)
  command = [sys.executable, "-m", "dpc_tf.search", f"--gin_file={gin_file}",
             f"--search_dir={search_dir}"]
  command += [f"--budget={budget}"] if budget else []
  command += [f"--gin_bindings={b}" for b in bindings]
  code = subprocess.run(command, check=False,
                        preexec_fn=processes.exec_dies_with_parent()).returncode
  if code != 0:
    raise DpcError(f"the claim-2 search in {search_dir} stopped ({processes.describe_exit(code)}"
                   f"); its last lines above say why; rerun the same command to resume")
  return search_dir


def claim_test(delta: float, stderr: Optional[float], madds_ratio: Optional[float]) -> str:
  """Claim 2's one-standard-error reading of one cell against ASPP."""
  if stderr is None:
    return "untested (one seed)"
  if delta - stderr > 0:
    return BEATS
  if abs(delta) <= stderr and madds_ratio is not None and madds_ratio <= CHEAP_MADDS_RATIO:
    return MATCHES
  if delta + stderr < 0:
    return "below ASPP"
  return "within one s.e., not <= 0.5x MAdds"


def summarize(search_dir: str) -> dict:
  """W/search_verdict's store and summary.json -> the claim's JSON (module doc)."""
  from dpc_tf.search import verdict as verdict_lib  # pylint: disable=import-outside-toplevel
  from dpc_tf.search.store import Store  # pylint: disable=import-outside-toplevel
  summary_path = os.path.join(search_dir, "summary.json")
  if not os.path.exists(summary_path):
    raise DpcError(f"{search_dir} has no summary.json: the search has not finished (rerun "
                   "`python -m dpc_tf.reproduce search_verdict` to resume it)")
  summary = read_json(summary_path, "the claim-2 search's summary")
  cells = []
  with Store(os.path.join(search_dir, "trials.sqlite")) as store:
    for trial in store.trials("done"):
      if trial.is_baseline or not trial.rerank_record:
        continue
      v = verdict_lib.verdict(store, trial)
      cells.append({
          "trial_id": trial.id, "cell": trial.cell_text, "origin": trial.origin,
          "proxy_miou": trial.score, "rerank_miou": trial.rerank_score,
          "rerank_stderr": trial.rerank_record.get("stderr"), "seeds": v.get("n"),
          "delta_miou": v.get("delta_miou"), "stderr": v.get("stderr"),
          "madds_ratio": v.get("madds_ratio"), "params_ratio": v.get("params_ratio"),
          "head_madds": (trial.record or {}).get("head_madds"), "label": v.get("label"),
          "claim": claim_test(v["delta_miou"], v.get("stderr"), v.get("madds_ratio"))
          if v.get("delta_miou") is not None else "no ASPP baseline"})
    front = _proxy_front(store, verdict_lib.aspp_baseline(store))
  cells.sort(key=lambda c: -(c["rerank_miou"] or float("-inf")))
  return {"search_dir": search_dir, "cells": cells, **front,
          "baselines": summary.get("baselines"), "verdict": summary.get("verdict"),
          "spearman_rho": summary.get("spearman_rho"), "spearman_n": summary.get("spearman_n"),
          "counts": summary.get("counts") or {},
          "claim_shown": any(c["claim"] in (BEATS, MATCHES) for c in cells)}


def _proxy_front(store, aspp) -> dict:
  """The searched cells' proxy Pareto front (branch MAdds as a ratio of ASPP's) and how many
  cells beat ASPP's proxy score: why a re-rank could, or could not, show the claim."""
  from dpc_tf.search.objectives import pareto_ranks  # pylint: disable=import-outside-toplevel
  cells = [t for t in store.trials("done") if not t.is_baseline and t.score is not None
           and (t.record or {}).get("branch_madds")]
  if aspp is None or not cells or not (aspp.record or {}).get("branch_madds"):
    return {"front": [], "proxy_above_aspp": None, "num_searched": len(cells)}
  madds = aspp.record["branch_madds"]
  ranks = pareto_ranks([(t.score, t.record["branch_madds"]) for t in cells])
  front = sorted(({"cell": t.cell_text, "proxy_miou": t.score,
                   "branch_madds_ratio": t.record["branch_madds"] / madds}
                  for t, rank in zip(cells, ranks) if rank == 1),
                 key=lambda c: c["branch_madds_ratio"])
  return {"front": front, "num_searched": len(cells), "aspp_proxy_miou": aspp.score,
          "proxy_above_aspp": sum(t.score >= aspp.score for t in cells)}


def _f(value, digits: int = 4) -> str:
  return "-" if value is None else f"{value:.{digits}f}"


def markdown(r: dict) -> list[str]:
  baselines = r.get("baselines") or {}
  lines = ["The search itself (gin/search/claim2.gin: Pareto objective over proxy mIOU and "
           "branch MAdds; the re-rank set diverse by branch edits; every re-ranked cell and "
           "both baselines trained on the full task under the same paired seeds).", "",
           f"Trials: {json.dumps(r.get('counts'))}; "
           + (f"proxy vs re-rank Spearman rho {_f(r['spearman_rho'], 2)} "
              f"(n={r.get('spearman_n')})." if r.get("spearman_rho") is not None else
              "no proxy vs re-rank rho (fewer than 3 cells re-ranked)."), "",
           "| subject | proxy mIOU | re-rank mIOU (+- s.e.) | delta vs ASPP (+- s.e., paired) "
           "| head MAdds vs ASPP | claim 2 (1 s.e.) |", "|---|---|---|---|---|---|"]
  for name, b in sorted(baselines.items()):
    lines.append(f"| baseline {name} | {_f(b.get('proxy_miou'))} | {_f(b.get('rerank_miou'))} "
                 f"(+- {_f(b.get('rerank_stderr'))}) | - | - | - |")
  for c in r["cells"]:
    lines.append(f"| `{c['cell']}` ({c['origin']}) | {_f(c['proxy_miou'])} | "
                 f"{_f(c['rerank_miou'])} (+- {_f(c['rerank_stderr'])}) | "
                 f"{_f(c['delta_miou'])} +- {_f(c['stderr'])} (n={c['seeds']}) | "
                 f"{_f(c['madds_ratio'], 2)}x | {c['claim']} |")
  if r.get("front"):
    lines += ["", f"The proxy's Pareto front ({len(r['front'])} of {r['num_searched']} searched "
              f"cells; {r['proxy_above_aspp']} score at least ASPP's proxy "
              f"{_f(r.get('aspp_proxy_miou'))}):", "",
              "| branch MAdds vs ASPP | proxy mIOU | cell |", "|---|---|---|"]
    lines += [f"| {c['branch_madds_ratio']:.2f}x | {_f(c['proxy_miou'])} | `{c['cell']}` |"
              for c in r["front"]]
  verdict = (r.get("verdict") or {}).get("sentence", "no verdict")
  lines += ["", f"The search's verdict (2 s.e. noise band): {verdict}.", "",
            "**Claim 2 " + ("shown" if r["claim_shown"] else "not shown") + "** at this scale: "
            + ("a searched cell beats ASPP, or matches it at <= 0.5x its head MAdds, beyond one "
               "standard error." if r["claim_shown"] else
               "no re-ranked cell beats ASPP or matches it at <= 0.5x its head MAdds beyond "
               "one standard error.")]
  return lines
