"""Successive halving against the flat search at equal proxy compute (issue 13, item 4).

Runs dpc_tf.reproduction.halving.study: for each seed, a flat search and a successive-halving
search of the same budget (trials at the top rung = proxy steps), through the real
Coordinator and store, in this process, with the fake trial (noise shrinking as
1/sqrt(steps)). Reports each search's final best-k full-fidelity score and the proxy steps
each needs to reach the flat search's final best-k quality (the target: halving within 1/3).
The same study is the "beyond the paper" section of docs/REPRODUCTION.md.

    python -m dpc_tf.benchmark halving [--halving_seeds=0,...,7 --halving_budget=40]
"""

import time

from absl import flags

flags.DEFINE_list("halving_seeds", [str(s) for s in range(8)], "Search seeds (>= 6).")
flags.DEFINE_integer("halving_budget", 40, "Budget: trials at the top rung (flat: trials).")
flags.DEFINE_list("halving_rungs", ["100", "300", "900"], "Rungs in proxy steps.")
flags.DEFINE_integer("halving_reduction_factor", 3, "Promote the best 1/eta of a rung.")
FLAGS = flags.FLAGS


def run() -> dict:
  from dpc_tf.reproduction import halving  # pylint: disable=import-outside-toplevel
  settings = halving.Settings(seeds=tuple(int(s) for s in FLAGS.halving_seeds),
                              budget=FLAGS.halving_budget,
                              rungs=tuple(int(s) for s in FLAGS.halving_rungs),
                              reduction_factor=FLAGS.halving_reduction_factor)
  start = time.perf_counter()
  result = halving.study(settings)
  result["wall_seconds"] = time.perf_counter() - start
  return result


def to_markdown(result: dict) -> str:
  from dpc_tf.reproduction import halving  # pylint: disable=import-outside-toplevel
  return "\n".join(halving.markdown(result) + [
      "", f"Whole study: {result['wall_seconds']:.0f} s wall (fake trials: the search "
      "machinery's own cost)."])
