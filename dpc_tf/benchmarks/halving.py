"""Successive halving against the flat search at equal proxy compute (issue 13, item 4).

Runs dpc_tf.reproduction.halving.study: for each seed, a flat search and a successive-halving
search of the same budget (trials at the top rung = proxy steps), through the real
Coordinator and store, in this process. Always with the fake trial (noise shrinking as
1/sqrt(steps), seconds); with --halving_benchmark_trial=table also the real proxy on
dpc_synthetic, replayed from a table of cells trained once and scored at every rung
(reproduction/halving_table.py; built or resumed in --halving_work_dir/halving_table, ~30 s
a cell on 2 loaded cores, reused when complete). Reports each search's final best-k full-fidelity
score and the proxy steps each needs to reach the flat search's final best-k quality (the
target: halving within 1/3). The same study is the "beyond the paper" section of
docs/REPRODUCTION.md.

    python -m dpc_tf.benchmark halving [--halving_seeds=0,...,7 --halving_budget=40]
    python -m dpc_tf.benchmark halving --halving_benchmark_trial=table \\
        --halving_table_seeds=0,...,11 --halving_work_dir=/tmp/dpc_tf_reproduction
"""

import time

from absl import flags

flags.DEFINE_list("halving_seeds", [str(s) for s in range(8)], "Search seeds (>= 6).")
flags.DEFINE_integer("halving_budget", 40, "Budget: trials at the top rung (flat: trials).")
flags.DEFINE_list("halving_rungs", ["100", "300", "900"], "Rungs in proxy steps.")
flags.DEFINE_integer("halving_reduction_factor", 3, "Promote the best 1/eta of a rung.")
flags.DEFINE_enum("halving_benchmark_trial", "fake", ["fake", "table"],
                  "fake: the fake study only; table: also the real-proxy table replay.")
flags.DEFINE_list("halving_table_seeds", [str(s) for s in range(12)],
                  "Seeds of the table replay (>= 6).")
flags.DEFINE_integer("halving_table_size", 64, "Cells in the real-proxy table.")
flags.DEFINE_string("halving_work_dir", "/tmp/dpc_tf_reproduction",
                    "Where the table (halving_table/) and its feature cache live.")
FLAGS = flags.FLAGS


def run() -> dict:
  from dpc_tf.errors import DpcError  # pylint: disable=import-outside-toplevel
  from dpc_tf.reproduction import halving  # pylint: disable=import-outside-toplevel
  settings = halving.Settings(seeds=tuple(int(s) for s in FLAGS.halving_seeds),
                              budget=FLAGS.halving_budget,
                              rungs=tuple(int(s) for s in FLAGS.halving_rungs),
                              reduction_factor=FLAGS.halving_reduction_factor)
  start = time.perf_counter()
  result = halving.study(settings)
  result["wall_seconds"] = time.perf_counter() - start
  if FLAGS.halving_benchmark_trial == "table":
    start = time.perf_counter()
    table = halving.table_study(FLAGS.halving_work_dir, FLAGS.halving_table_size,
                                [int(s) for s in FLAGS.halving_table_seeds])
    if table is None:
      raise DpcError(f"halving benchmark: the table in {FLAGS.halving_work_dir} is not "
                     "complete; rerun to go on")
    table["wall_seconds"] = time.perf_counter() - start
    result["table_study"] = table
  return result


def to_markdown(result: dict) -> str:
  from dpc_tf.reproduction import halving  # pylint: disable=import-outside-toplevel
  lines = halving.markdown(result) + [
      "", f"Fake study: {result['wall_seconds']:.0f} s wall (fake trials: the search "
      "machinery's own cost)."]
  if result.get("table_study"):
    table = result["table_study"]
    lines.append(f"Table replay: {table['wall_seconds']:.0f} s wall (table reading and the "
                 "search machinery; the table itself took "
                 f"{table['table']['build_seconds']:.0f} s of proxy training, once).")
  return "\n".join(lines)
