#!/usr/bin/env python3
"""Accelerator figures for docs/BENCHMARKS.md: run this on a machine with a GPU.

    python tools/accelerator_benchmark.py            # from the repository's root

It runs `python -m dpc_tf.benchmark accelerator` (dpc_tf/benchmarks/accelerator.py) at the
paper's sizes: forward of MobileNet-v2 + DPC at 769x769 and Xception-71 + DPC + decoder at
1025x2049 (tf.function, XLA, mixed_float16 with and without XLA), training at crop 513
batch 8 in float32 and float16, and the proxy step at crop 769 batch 8 (trials/hour). The
result lands in docs/benchmarks/accelerator.json and the "accelerator" section of
docs/BENCHMARKS.md, with the device's name. Extra arguments are passed on (e.g.
--accelerator_train_batch=16). CI never runs this; without a GPU it stops with one line.
Expect about 15-30 minutes on one current GPU.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

if __name__ == "__main__":
  sys.path.insert(0, ROOT)
  os.chdir(ROOT)  # the benchmark writes docs/ relative to the working folder
  from dpc_tf import benchmark  # pylint: disable=wrong-import-position
  sys.argv = [sys.argv[0], "accelerator"] + sys.argv[1:]
  benchmark.run()
