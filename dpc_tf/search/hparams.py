"""TensorBoard's HParams dashboard for a search: `tensorboard --logdir=DIR` shows every trial.

DIR/hparams/ holds one run (folder) per finished trial of the search store, baselines
included (`trial_00007`, `baseline_1` for id -1): its hyperparameters are the cell (compact
text), origin, status, parent, fingerprint and the analytic branch params/MAdds; its
metrics the proxy mIOU and the trial's seconds, plus the re-rank mIOU, its standard error
and number of seeds once the re-rank has scored it. DIR/hparams/ itself holds the
experiment's declaration (names, descriptions). So the dashboard's table, parallel
coordinates and scatter plots (proxy against re-rank mIOU, mIOU against MAdds) need no CSV.
Session groups are named by a hash of the hyperparameters (TensorBoard's default), which
include the fingerprint: distinct trials never merge, also under a logdir of many searches.

Written by the driver only (a coordinator listener as trials finish, and stage (e) after
the re-rank), never by workers: one writer. Idempotent on resume and on changes: each
event file is a pure function of the trial's stored values and is named by their digest
(`events.out.tfevents.1.proxy.<digest>`, `...2.rerank.<digest>`); a file already there is
not written again, and a stale one (the trial was retried, the re-rank got more seeds) is
removed once its successor is in place. A file is written complete under a name
TensorBoard ignores, then renamed, so TensorBoard never reads half a file; `sync` rebuilds
whatever a kill -9 left missing from the store (the source of truth).

Needs the `tensorboard` package (pure Python here: no TensorFlow in the driver), an
optional dependency (`pip install dpc_tf[tensorboard]`); without it the search says so in
one log line and writes nothing else differently.
"""

from __future__ import annotations

import hashlib
import io
import os
from typing import Optional

from absl import logging

from dpc_tf.search.store import TERMINAL, Store, Trial
from dpc_tf.utils import files

FOLDER = "hparams"
_PROXY, _RERANK, _CONFIG = "1.proxy", "2.rerank", "0.experiment"
HPARAMS = {
    "cell": "the cell (compact text), or 'aspp' for the ASPP head",
    "origin": "how it was suggested (initial, uniform, mutation, warm_start, baseline, ...)",
    "status": "done or failed",
    "parent": "trial id of the mutated parent (-1: none)",
    "fingerprint": "canonical fingerprint (de-duplication)",
    "branch_params": "branch convolution weights (the paper's Table 1 convention)",
    "branch_madds": "branch convolution multiply-adds at the search's feature shape",
}
METRICS = {
    "proxy_miou": "proxy task mIOU (the search's score)",
    "seconds": "seconds inside the trial function",
    "rerank_miou": "end-to-end re-rank mIOU, mean over seeds",
    "rerank_stderr": "standard error of the re-rank mean",
    "rerank_seeds": "number of re-rank seeds",
}
_warned = False


def available() -> bool:
  """Whether the tensorboard package can be imported; says once (a log line) if not."""
  global _warned  # pylint: disable=global-statement
  try:
    import tensorboard  # pylint: disable=import-outside-toplevel,unused-import
    return True
  except ImportError:
    if not _warned:
      logging.warning("TensorBoard HParams not written: the optional tensorboard package is "
                      "not installed (pip install tensorboard)")
      _warned = True
    return False


def run_name(trial: Trial) -> str:
  return f"baseline_{-trial.id}" if trial.id < 0 else f"trial_{trial.id:05d}"


def _hparams(trial: Trial) -> dict:
  record = trial.record or {}
  values = {"cell": trial.cell_text, "origin": trial.origin, "status": trial.status,
            "parent": -1 if trial.parent is None else trial.parent,
            "fingerprint": trial.fingerprint}
  for key in ("branch_params", "branch_madds"):
    if isinstance(record.get(key), (int, float)):
      values[key] = float(record[key])
  return values


def proxy_metrics(trial: Trial) -> dict:
  values = {"proxy_miou": trial.score, "seconds": trial.seconds}
  return {k: float(v) for k, v in values.items() if v is not None}


def rerank_metrics(trial: Trial) -> dict:
  if trial.rerank_score is None:
    return {}
  record = trial.rerank_record or {}
  values = {"rerank_miou": trial.rerank_score, "rerank_stderr": record.get("stderr"),
            "rerank_seeds": record.get("n")}
  return {k: float(v) for k, v in values.items() if isinstance(v, (int, float))}


def _event_file(wall_time: float, summaries) -> bytes:
  """TFRecord-framed Event protos, as tf.summary writes them."""
  from tensorboard.compat.proto import event_pb2  # pylint: disable=import-outside-toplevel
  from tensorboard.summary.writer import record_writer  # pylint: disable=import-outside-toplevel
  buffer = io.BytesIO()
  writer = record_writer.RecordWriter(buffer)
  writer.write(event_pb2.Event(wall_time=wall_time, file_version="brain.Event:2")
               .SerializeToString())
  for summary in summaries:
    writer.write(event_pb2.Event(wall_time=wall_time, step=0, summary=summary)
                 .SerializeToString())
  return buffer.getvalue()


def _scalars(metrics: dict) -> list:
  from tensorboard.plugins.scalar import summary_v2  # pylint: disable=import-outside-toplevel
  return [summary_v2.scalar_pb(tag, value) for tag, value in sorted(metrics.items())]


def _put(folder: str, kind: str, key: str, make) -> bool:
  """Keeps exactly one `kind` event file in `folder`, the one for `key`; True if written."""
  digest = hashlib.sha256(key.encode()).hexdigest()[:12]
  name = f"events.out.tfevents.{kind}.{digest}"
  path = os.path.join(folder, name)
  existing = [n for n in os.listdir(folder)] if os.path.isdir(folder) else []
  written = False
  if name not in existing:
    partial = os.path.join(folder, ".partial")  # no 'tfevents' in it: TensorBoard skips it
    files.write_bytes_atomic(partial, make())
    os.replace(partial, path)
    written = True
  for stale in existing:
    if stale.startswith(f"events.out.tfevents.{kind}.") and stale != name:
      os.remove(os.path.join(folder, stale))
  return written


def write_trial(root: str, trial: Trial) -> int:
  """The trial's run under root (DIR/hparams); returns how many event files were written."""
  from tensorboard.plugins.hparams import summary_v2  # pylint: disable=import-outside-toplevel
  if trial.status not in TERMINAL:
    return 0
  folder = os.path.join(root, run_name(trial))
  wall_time = trial.finished or trial.created
  hparams, proxy = _hparams(trial), proxy_metrics(trial)
  written = _put(folder, _PROXY, repr((sorted(hparams.items()), sorted(proxy.items()))),
                 lambda: _event_file(wall_time, [summary_v2.hparams_pb(
                     hparams, start_time_secs=trial.created)] + _scalars(proxy)))
  rerank = rerank_metrics(trial)
  if rerank:
    written += _put(folder, _RERANK, repr(sorted(rerank.items())),
                    lambda: _event_file(wall_time, _scalars(rerank)))
  return written


def write_experiment(root: str) -> None:
  """The experiment's declaration: every hyperparameter and metric, with descriptions."""
  from tensorboard.plugins.hparams import summary_v2  # pylint: disable=import-outside-toplevel
  key = repr((sorted(HPARAMS.items()), sorted(METRICS.items())))
  _put(root, _CONFIG, key, lambda: _event_file(0.0, [summary_v2.hparams_config_pb(
      [summary_v2.HParam(name, description=text) for name, text in HPARAMS.items()],
      [summary_v2.Metric(tag, description=text) for tag, text in METRICS.items()])]))


def sync(store: Store, search_dir: str) -> Optional[int]:
  """Every terminal trial's run, from the store; returns files written (None: no tensorboard)."""
  if not available():
    return None
  root = os.path.join(search_dir, FOLDER)
  write_experiment(root)
  return sum(write_trial(root, trial) for trial in store.trials(*TERMINAL))


class HParamsWriter:
  """Coordinator listener: a trial's run as soon as it is terminal (the store committed it)."""

  def __init__(self, store: Store, search_dir: str):
    self.root = os.path.join(search_dir, FOLDER)
    self.enabled = sync(store, search_dir) is not None  # what a kill -9 left missing

  def __call__(self, coordinator, trial: Optional[Trial]) -> None:
    if self.enabled and trial is not None and trial.status in TERMINAL:
      write_trial(self.root, trial)
