"""Search plots: proxy score distribution, proxy vs re-rank score (Spearman rho), best cell.

matplotlib is the optional `plots` extra and is imported only here, only when plotting; a
search without it still writes results.csv and best_cells and logs one warning. Files are
written atomically (rendered to memory, then renamed into place).
"""

from __future__ import annotations

import io
import os
from typing import Optional, Sequence

from absl import logging

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
                         metric: str = "miou") -> tuple[str, float]:
  rho = spearman(proxy, rerank)
  fig = _figure()
  ax = fig.add_subplot()
  ax.scatter(proxy, rerank, color="#4477aa")
  ax.set_xlabel(f"proxy {metric}")
  ax.set_ylabel(f"re-rank {metric} (end to end)")
  ax.set_title(f"Proxy vs re-rank, {len(proxy)} cells, Spearman rho = {rho:.3f}")
  return _save(fig, path), rho


def draw_cell(cell: Cell, path: str, title: Optional[str] = None) -> str:
  """The cell diagram from dpc_tf.plots.cell_graph (what python -m dpc_tf.render_cell draws)."""
  from dpc_tf.plots.cell_graph import render_cell  # pylint: disable=import-outside-toplevel
  return render_cell(cell, path, title)


def write_plots(store: Store, folder: str, metric: str = "miou") -> dict:
  """Every plot the store has data for; {} and one warning without matplotlib."""
  try:
    import matplotlib  # pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    logging.warning("plots skipped: matplotlib is not installed (pip install 'dpc-tf[plots]')")
    return {}
  written = {}
  done = store.trials("done")
  scores = [t.score for t in done if t.score is not None]
  if scores:
    written["proxy_scores"] = plot_score_distribution(
        scores, os.path.join(folder, "proxy_scores.png"), metric)
  pairs = [(t.score, t.rerank_score) for t in done
           if t.score is not None and t.rerank_score is not None]
  if len(pairs) >= 2:
    written["proxy_vs_rerank"], written["spearman_rho"] = plot_proxy_vs_rerank(
        [p for p, _ in pairs], [r for _, r in pairs],
        os.path.join(folder, "proxy_vs_rerank.png"), metric)
  best = ranking(store)
  if best:
    try:
      written["best_cell"] = draw_cell(best[0].cell, os.path.join(folder, "best_cell.png"),
                                       f"trial {best[0].id}: {best[0].cell_text}")
    except ImportError as e:
      logging.warning("best cell drawing skipped: %s", e)
  return written
