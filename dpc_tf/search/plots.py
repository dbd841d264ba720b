"""Search plots: proxy score distribution, proxy vs re-rank score (Spearman rho), best cell,
and the Pareto plot (proxy mIOU against branch MAdds, front highlighted, baselines marked).

Baselines are marked where they appear and left out of the distribution and of rho (which
is over the searched cells, n given). Re-rank points carry their standard error over seeds.

matplotlib is the optional `plots` extra and is imported only here, only when plotting; a
search without it still writes results.csv and best_cells and logs one warning. Files are
written atomically (rendered to memory, then renamed into place).
"""

from __future__ import annotations

import io
import os
from typing import Optional, Sequence

from absl import logging

from dpc_tf.search.objectives import pareto_ranks
from dpc_tf.search.results import ranking
from dpc_tf.search.store import Store
from dpc_tf.search_space import Cell
from dpc_tf.utils.files import write_bytes_atomic
from dpc_tf.utils.stats import spearman


def _figure(width: float = 6.0, height: float = 4.0):
  from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
  return Figure(figsize=(width, height), dpi=100)


def _save(fig, path: str) -> str:
  buffer = io.BytesIO()
  fig.savefig(buffer, format=os.path.splitext(path)[1][1:] or "png", bbox_inches="tight")
  write_bytes_atomic(path, buffer.getvalue())
  return path


def plot_score_distribution(scores: Sequence[float], path: str, metric: str = "miou") -> str:
  fig = _figure()
  ax = fig.add_subplot()
  ax.hist(scores, bins=max(5, min(50, len(scores) // 4 or 1)), color="#4477aa")
  if scores:
    ax.axvline(max(scores), color="#cc3311", linestyle="--", label=f"best {max(scores):.4f}")
    ax.legend()
  ax.set_xlabel(f"proxy {metric}")
  ax.set_ylabel("cells")
  ax.set_title(f"Proxy scores of {len(scores)} cells")
  return _save(fig, path)


def plot_proxy_vs_rerank(proxy: Sequence[float], rerank: Sequence[float], path: str,
                         metric: str = "miou", errors: Optional[Sequence[Optional[float]]] = None,
                         baselines: Sequence[tuple[str, float, float, Optional[float]]] = ()
                         ) -> tuple[str, float]:
  """Searched cells (with re-rank standard errors) and baselines (name, proxy, re-rank, se)."""
  rho = spearman(proxy, rerank)
  fig = _figure()
  ax = fig.add_subplot()
  yerr = None if errors is None else [e or 0.0 for e in errors]
  ax.errorbar(proxy, rerank, yerr=yerr, fmt="o", color="#4477aa", ecolor="#88aacc", capsize=3,
              label="searched cells")
  for name, x, y, err in baselines:
    ax.errorbar([x], [y], yerr=None if err is None else [err], fmt="s", color="#cc3311",
                capsize=3)
    ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 5), color="#cc3311")
  ax.set_xlabel(f"proxy {metric}")
  ax.set_ylabel(f"re-rank {metric} (end to end, mean +- s.e.)")
  ax.set_title(f"Proxy vs re-rank, Spearman rho = {rho:.3f} (n = {len(proxy)} cells)")
  return _save(fig, path), rho


def plot_pareto(points: Sequence[tuple[float, float]], path: str, metric: str = "miou",
                baselines: Sequence[tuple[str, float, float]] = ()) -> str:
  """(score, madds) of every searched cell, the non-dominated front joined; baselines
  (name, score, madds) marked."""
  ranks = pareto_ranks(points)
  front = sorted((m, s) for (s, m), r in zip(points, ranks) if r == 1)
  fig = _figure()
  ax = fig.add_subplot()
  ax.scatter([m for _, m in points], [s for s, _ in points], color="#bbbbbb", s=12,
             label="searched cells")
  if front:
    ax.plot([m for m, _ in front], [s for _, s in front], "o-", color="#4477aa",
            label=f"Pareto front ({len(front)})")
  for name, score, madds in baselines:
    ax.scatter([madds], [score], marker="s", color="#cc3311")
    ax.annotate(name, (madds, score), textcoords="offset points", xytext=(5, 5),
                color="#cc3311")
  ax.set_xscale("log")
  ax.set_xlabel("head branch multiply-adds")
  ax.set_ylabel(f"proxy {metric}")
  ax.set_title(f"Proxy {metric} against cost, {len(points)} cells")
  ax.legend()
  return _save(fig, path)


def draw_cell(cell: Cell, path: str, title: Optional[str] = None) -> str:
  """The cell diagram from dpc_tf.plots.cell_graph (what python -m dpc_tf.render_cell draws)."""
  from dpc_tf.plots.cell_graph import render_cell  # pylint: disable=import-outside-toplevel
  return render_cell(cell, path, title)


def _stderr(trial) -> Optional[float]:
  return (trial.rerank_record or {}).get("stderr")


def _madds(trial) -> Optional[float]:
  return (trial.record or {}).get("branch_madds")


def write_plots(store: Store, folder: str, metric: str = "miou") -> dict:
  """Every plot the store has data for; {} and one warning without matplotlib."""
  try:
    import matplotlib  # pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    logging.warning("plots skipped: matplotlib is not installed (pip install 'dpc-tf[plots]')")
    return {}
  written = {}
  every = store.trials("done")
  done = [t for t in every if not t.is_baseline]
  base = [t for t in every if t.is_baseline and t.score is not None]
  names = {t.id: t.subject.baseline or t.cell_text for t in base}
  scores = [t.score for t in done if t.score is not None]
  if scores:
    written["proxy_scores"] = plot_score_distribution(
        scores, os.path.join(folder, "proxy_scores.png"), metric)
  pairs = [t for t in done if t.score is not None and t.rerank_score is not None]
  if len(pairs) >= 2:
    written["proxy_vs_rerank"], written["spearman_rho"] = plot_proxy_vs_rerank(
        [t.score for t in pairs], [t.rerank_score for t in pairs],
        os.path.join(folder, "proxy_vs_rerank.png"), metric,
        errors=[_stderr(t) for t in pairs],
        baselines=[(names[t.id], t.score, t.rerank_score, _stderr(t)) for t in base
                   if t.rerank_score is not None])
    written["spearman_n"] = len(pairs)
  costed = [t for t in done if t.score is not None and _madds(t) is not None]
  if costed:
    written["pareto"] = plot_pareto(
        [(t.score, _madds(t)) for t in costed], os.path.join(folder, "pareto.png"), metric,
        [(names[t.id], t.score, _madds(t)) for t in base if _madds(t) is not None])
  best = ranking(store)
  if best:
    try:
      written["best_cell"] = draw_cell(best[0].cell, os.path.join(folder, "best_cell.png"),
                                       f"trial {best[0].id}: {best[0].cell_text}")
    except ImportError as e:
      logging.warning("best cell drawing skipped: %s", e)
  return written
