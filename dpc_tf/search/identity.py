"""Which config made a search_dir, so that a resumed search is the same search.

The identity is the gin config text (every binding the user's files and --gin_bindings made,
one normalized line per binding, sorted) minus the bindings that only say how or how long to
run: the budget, the engine and its workers, output intervals. Resuming with a larger
--budget or another engine is fine; resuming with another seed, space, proxy setting or
dataset is refused with one line naming what changed, because the trials already in the
store would silently mean something else.

Until a trial is done, nothing in the store depends on the config: a config mistake that
failed every trial (coordinator.py stops such a search and forgives its attempts) is fixed by
editing the config and rerunning in the same --search_dir. The new config's identity is then
recorded, DIR/config.gin rewritten, and any failed trial gets fresh attempts (it failed under
the old config). The first done trial fixes the identity for good.
"""

from __future__ import annotations

import fnmatch
from typing import Iterable

from absl import logging

from dpc_tf.search.errors import SearchError
from dpc_tf.search.store import Store

EXEMPT = (
    "search_algorithm.budget",
    "search_pipeline.engine",
    "search_pipeline.rerank_top_k",
    "search_pipeline.rerank_seeds",
    "search_pipeline.rerank_min_distance",
    "search_pipeline.num_best_cells",
    "search_pipeline.results_interval_s",
    "search_pipeline.progress_interval_s",
    "search_pipeline.plots",
    "search_pipeline.hparams",
    "local_engine.*",
    "ray_engine.*",
)
_META_KEY = "config_identity"


def binding_lines(config_text: str) -> list[str]:
  """One line per statement of gin.config_str() output (continuations joined), no comments."""
  lines: list[str] = []
  for raw in config_text.splitlines():
    stripped = raw.strip()
    if not stripped or stripped.startswith("#"):
      continue
    if raw[:1].isspace() and lines:
      lines[-1] += " " + stripped
    else:
      lines.append(stripped)
  return lines


def _key(line: str) -> str:
  return line.split("=", 1)[0].strip()


def identity_lines(config_text: str, exempt: Iterable[str] = EXEMPT) -> list[str]:
  patterns = tuple(exempt)
  return sorted(line for line in binding_lines(config_text)
                if not any(fnmatch.fnmatchcase(_key(line).split("/")[-1], p) for p in patterns))


def _changes(found_lines: list[str], wanted: list[str]) -> str:
  """The changed bindings, 'before -> after', the first three and how many more."""
  found_by_key = {_key(l): l for l in found_lines}
  wanted_by_key = {_key(l): l for l in wanted}
  changes = []
  for key in sorted(set(found_by_key) | set(wanted_by_key)):
    before, after = found_by_key.get(key), wanted_by_key.get(key)
    if before != after:
      changes.append(f"{before or key + ' unset'} -> {after or 'unset'}")
  return "; ".join(changes[:3]) + (f" (+{len(changes) - 3} more)" if len(changes) > 3 else "")


def check_identity(store: Store, config_text: str, search_dir: str) -> bool:
  """Records the identity in a store without done trials, or refuses one made by another
  config. True when it (re)recorded it: the caller then writes DIR/config.gin."""
  wanted = identity_lines(config_text)
  found = store.get_meta(_META_KEY)
  if found is None or store.num_trials() == 0:  # nothing depends on the old config yet
    store.set_meta(_META_KEY, "\n".join(wanted))
    return True
  found_lines = found.split("\n") if found else []
  if found_lines == wanted:
    return False
  if store.counts()["done"] == 0:  # only failures so far: the config was being fixed
    requeued = store.requeue_failed()
    store.set_meta(_META_KEY, "\n".join(wanted))
    logging.info("--search_dir %s: the config changed (%s) before any trial was done; "
                 "continuing under the new one, %d failed trial(s) requeued", search_dir,
                 _changes(found_lines, wanted), len(requeued))
    return True
  raise SearchError(f"--search_dir {search_dir} was made by a different config "
                    f"({_changes(found_lines, wanted)}); use a new --search_dir or the "
                    "original config")
