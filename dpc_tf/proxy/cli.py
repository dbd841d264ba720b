"""The two command lines of the proxy task, as functions of explicit arguments.

`python -m dpc_tf.cache_features` and `python -m dpc_tf.proxy` only parse flags and call
these, so tests can run them without absl's global flag state. Anything a user can fix is
one line on stderr (`PROG: error: ...`) and exit status 1, never a traceback.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Optional, Sequence

from dpc_tf.proxy.cache import CacheError
from dpc_tf.search_space import CellError

# Errors a user can fix: wrong settings, paths, caches or cells, a diverging run. Anything
# else is a bug and keeps its traceback.
_USER_ERRORS = (ValueError, TypeError, FileNotFoundError, CacheError, CellError,
                FloatingPointError)


def _one_line(error: BaseException) -> str:
  lines = [l.strip() for l in str(error).strip().splitlines() if l.strip()]
  if not lines:
    return type(error).__name__
  if lines[0].startswith(("in user code", "{{function_node")):
    # TensorFlow wraps an error raised while tracing: its last line is the real one.
    return f"{type(error).__name__} while tracing: {lines[-1]}"
  return lines[0]


def _fail(prog: str, error: BaseException) -> int:
  print(f"{prog}: error: {_one_line(error)}", file=sys.stderr)
  return 1


def _parse_gin(gin_files: Sequence[str], bindings: Sequence[str]) -> None:
  """Parses the config (one file holds feature_cache, pretrain_backbone and proxy_trial)."""
  from dpc_tf.proxy import config  # pylint: disable=import-outside-toplevel
  config.register_trial_config()
  try:
    config.parse(gin_files, bindings)
  except FileNotFoundError:
    raise
  except Exception as e:  # pylint: disable=broad-except  (gin raises many types)
    raise ValueError(f"bad gin config: {type(e).__name__}: {_one_line(e)}") from None


def cache_main(gin_files: Sequence[str], bindings: Sequence[str], cache_dir: Optional[str],
               roles: Sequence[str] = ("train", "eval")) -> int:
  """Runs the caching pass; prints the cache's summary as one JSON line."""
  prog = "cache_features"
  try:
    if not cache_dir:
      raise ValueError("--cache_dir is required")
    _parse_gin(gin_files, bindings)
    from dpc_tf.proxy import config  # pylint: disable=import-outside-toplevel
    from dpc_tf.proxy.cache_builder import make_cache  # pylint: disable=import-outside-toplevel
    cache_config, pretrain_config, _ = config.configured()
    manifest = make_cache(cache_dir, cache_config, pretrain_config, tuple(roles))
  except _USER_ERRORS as e:
    return _fail(prog, e)
  except KeyboardInterrupt:
    print(f"{prog}: interrupted; finished shards are kept, run the same command again to "
          f"resume", file=sys.stderr)
    return 130
  summary = {"cache_dir": cache_dir, **{k: manifest["identity"][k] for k in (
      "backbone", "checkpoint_fingerprint", "dataset", "output_stride")}}
  for role in roles:
    entry = manifest["roles"][role]
    summary[role] = {"count": entry["count"], "shards": len(entry["shards"]),
                     "feature_shape": entry["feature_shape"], "label_shape": entry["label_shape"]}
  print(json.dumps(summary))
  return 0


def load_cell(value: str):
  """--cell: a cell JSON file, "released" (the paper's Cityscapes cell) or compact text."""
  from dpc_tf import search_space  # pylint: disable=import-outside-toplevel
  if value == "released":
    return search_space.CITYSCAPES_CELL
  if value.endswith(".json") or os.path.isfile(value):
    return search_space.Cell.load(value)
  return search_space.Cell.from_text(value)


def trial_main(gin_files: Sequence[str], bindings: Sequence[str], cache_dir: Optional[str],
               cell: Optional[str], make_cache: bool = False,
               output: Optional[str] = None) -> int:
  """Runs one proxy trial; prints its score record as one JSON object on the last line."""
  prog = "proxy"
  try:
    if not cache_dir or not cell:
      raise ValueError("--cache_dir and --cell are required")
    cell_obj = load_cell(cell)
    _parse_gin(gin_files, bindings)
    from dpc_tf.proxy import config  # pylint: disable=import-outside-toplevel
    cache_config, pretrain_config, trial_config = config.configured()
    # pylint: disable=import-outside-toplevel
    from dpc_tf.proxy.cache_builder import make_cache as build
    from dpc_tf.proxy.trial import run_proxy_trial
    if make_cache:
      build(cache_dir, cache_config, pretrain_config)
    record = run_proxy_trial(cell_obj, cache_dir, **dataclasses.asdict(trial_config))
  except _USER_ERRORS as e:
    return _fail(prog, e)
  line = json.dumps(record)
  if output:
    from dpc_tf.utils.files import write_text_atomic  # pylint: disable=import-outside-toplevel
    write_text_atomic(output, line + "\n")
  print(line)
  return 0
