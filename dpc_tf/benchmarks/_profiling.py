"""Op-by-op time of a TensorFlow function from a TensorFlow profiler trace.

`op_times(fn, calls)` traces `calls` runs of `fn` with tf.profiler and sums, per op type, the
time the executor's compute threads spent in it (the "tf_Compute" lines of the host plane of
the trace's XSpace). Summed over threads, so on several cores the total can exceed the wall
time; shares are of that sum. Not a benchmark: the leading underscore keeps it out of
`python -m dpc_tf.benchmark`'s list.
"""

from __future__ import annotations

import collections
import glob
import os
import tempfile
import time
from typing import Callable

# oneDNN builds rename kernels (_MklNativeFusedConv2D): shown without the prefix.
_PREFIXES = ("_MklNative", "_Mkl")
_BOOKKEEPING = {"Process", "StartRegion", "StopRegion", "MemoryAllocation", "Record",
                "ExecutorDoneCallback", "ReadVariableOp", "ParallelFor"}


def op_name(kernel: str) -> str:
  for prefix in _PREFIXES:
    if kernel.startswith(prefix):
      return kernel[len(prefix):]
  return kernel


def fetch(result):
  """result with every tensor copied to the host: the call has finished when this returns."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  return tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, result)


def op_times(fn: Callable[[], object], calls: int = 2) -> dict:
  """{"wall_s": per call, "ops": [{"op", "ms" per call, "count" per call, "share"}...]}
  sorted by time; fn is run (and its result fetched) `calls` times under the profiler."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=import-outside-toplevel
  with tempfile.TemporaryDirectory() as logdir:
    tf.profiler.experimental.start(logdir)
    start = time.perf_counter()
    try:
      for _ in range(calls):
        fetch(fn())
    finally:
      wall = (time.perf_counter() - start) / calls
      tf.profiler.experimental.stop()
    paths = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
    space = xplane_pb2.XSpace()
    with open(sorted(paths)[-1], "rb") as f:
      space.ParseFromString(f.read())
  total = collections.Counter()
  count = collections.Counter()
  for plane in space.planes:
    for line in plane.lines:
      if not line.name.startswith("tf_Compute"):
        continue
      for event in line.events:
        name = op_name(plane.event_metadata[event.metadata_id].name.split(":")[-1])
        if name not in _BOOKKEEPING:
          total[name] += event.duration_ps / 1e9
          count[name] += 1
  overall = sum(total.values()) or 1.0
  return {"wall_s": round(wall, 4), "op_ms": round(overall / calls, 2),
          "ops": [{"op": name, "ms": round(ms / calls, 2), "count": count[name] // calls,
                   "share": round(ms / overall, 4)} for name, ms in total.most_common()]}
