"""Did the search pay off? The chosen cell against the ASPP baseline, for summary.json.

The chosen cell is results.ranking's first (re-ranked cells first). The comparison pairs
the two by seed: with re-rank scores for both, delta_k = cell_k - aspp_k over the seeds both
finished, reported as the mean +- its standard error (sample std / sqrt(n)); without a
re-rank, the proxy scores (n = 1, no error bar). Costs are ratios cell / ASPP of head
multiply-adds and params: the whole head's where both records count it (the real proxy),
else the branch convolutions' (the paper's Table 1 convention, the fake trial's).

The sentence's rule: a difference within 2 standard errors is noise ("within noise", or
"cheaper at equal accuracy" when the cell needs fewer MAdds); beyond it "better" or "worse"
(", and cheaper" / ", but cheaper"); with one run each there is no error bar, which the
sentence says.
"""

from __future__ import annotations

from typing import Optional

from dpc_tf.search.rerank import mean_and_stderr
from dpc_tf.search.store import Store, Trial
from dpc_tf.search.subjects import ASPP

NOISE_STDERRS = 2.0


def _cost(record: dict, what: str, kind: str) -> Optional[float]:
  return record.get(f"{kind}_{what}")


def baselines_summary(store: Store) -> dict:
  """{baseline name: proxy and re-rank mIOU, their spread, costs} for every baseline row."""
  out = {}
  for trial in store.trials():
    if not trial.is_baseline:
      continue
    record, rerank = trial.record or {}, trial.rerank_record or {}
    out[trial.subject.baseline or trial.cell_text] = {
        "trial_id": trial.id, "cell": trial.cell_text, "status": trial.status,
        "proxy_miou": trial.score, "rerank_miou": trial.rerank_score,
        "rerank_stderr": rerank.get("stderr"), "rerank_seeds": rerank.get("n"),
        **{key: record.get(key) for key in ("branch_params", "branch_madds", "head_params",
                                            "head_madds")}}
  return out


def seed_scores(trial: Trial) -> dict[int, float]:
  return {int(seed): score for seed, score in (trial.rerank_record or {}).get("scores", [])}


def paired_deltas(cell: Trial, aspp: Trial) -> tuple[str, list[int], list[float]]:
  """('rerank', seeds, deltas) over the seeds both re-ranked, else ('proxy', [], [delta])."""
  mine, theirs = seed_scores(cell), seed_scores(aspp)
  seeds = sorted(set(mine) & set(theirs))
  if seeds:
    return "rerank", seeds, [mine[s] - theirs[s] for s in seeds]
  return "proxy", [], [cell.score - aspp.score]


def judge(delta: float, stderr: Optional[float], madds_ratio: Optional[float]) -> str:
  cheaper = madds_ratio is not None and madds_ratio < 1.0
  if stderr is not None and abs(delta) <= NOISE_STDERRS * stderr:
    return "cheaper at equal accuracy" if cheaper else "within noise"
  if delta == 0:
    return "cheaper at equal accuracy" if cheaper else "within noise"
  if stderr is None:  # one run each: no claim of better or worse without an error bar
    direction = "higher" if delta > 0 else "lower"
    cost = (", and cheaper" if delta > 0 else ", but cheaper") if cheaper else ""
    return f"{direction} on one run each, untested against noise{cost}"
  if delta > 0:
    return "better, and cheaper" if cheaper else "better"
  return "worse, but cheaper" if cheaper else "worse"


def aspp_baseline(store: Store) -> Optional[Trial]:
  """The finished ASPP baseline row (None before it has a score)."""
  return next((t for t in store.trials("done") if t.is_baseline and t.subject.is_aspp
               and t.score is not None), None)


def verdict(store: Store, chosen: Optional[Trial]) -> dict:
  """The chosen cell against the ASPP baseline (module doc); 'sentence' always says it."""
  aspp = aspp_baseline(store)
  if chosen is None or aspp is None:
    missing = "no searched cell finished" if chosen is None else "no finished ASPP baseline"
    return {"label": None, "sentence": f"no verdict: {missing} (search_pipeline.baselines)"}
  source, seeds, deltas = paired_deltas(chosen, aspp)
  delta, stderr = mean_and_stderr(deltas)
  mine, theirs = chosen.record or {}, aspp.record or {}
  kind = "head" if mine.get("head_madds") and theirs.get("head_madds") else "branch"
  ratios = {}
  for what in ("madds", "params"):
    a, b = _cost(mine, what, kind), _cost(theirs, what, kind)
    ratios[what] = a / b if a is not None and b else None
  label = judge(delta, stderr, ratios["madds"])
  spread = (f"+- {stderr:.4f} over {len(deltas)} paired seeds" if stderr is not None
            else f"one {source} run each, no error bar")
  costs = ", ".join(f"{ratios[w]:.2f}x its {kind} {w.replace('madds', 'MAdds')}"
                    for w in ("madds", "params") if ratios[w] is not None)
  sentence = (f"the chosen cell (trial {chosen.id}) against ASPP: {delta:+.4f} {source} mIOU "
              f"({spread}){', at ' + costs if costs else ''}: {label}")
  return {"against": ASPP, "trial_id": chosen.id, "cell": chosen.cell_text, "score": source,
          "seeds": seeds, "n": len(deltas), "delta_miou": delta, "stderr": stderr,
          "madds_ratio": ratios["madds"], "params_ratio": ratios["params"], "cost": kind,
          "label": label, "sentence": sentence}
