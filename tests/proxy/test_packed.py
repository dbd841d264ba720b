"""run_packed_trials: K heads in one program, each as if trained alone."""

import math

import numpy as np
import pytest

from dpc_tf.errors import DpcError
from dpc_tf.proxy import head_state, run_proxy_trial
from dpc_tf.proxy.packed import Member, run_packed_trials
from dpc_tf.training.errors import NonFiniteLossError

FAST = dict(steps=6, batch_size=4, filters=16, bn_momentum=0.9, learning_rate=0.05)
A, B, C = "F:sep3x3@3x3 F:pool@2x2", "F:conv1x1", "F:sep3x3@1x6 0:conv1x1"
KEYS = ("miou", "final_loss", "initial_loss", "pixel_accuracy")


def _close(first: dict, second: dict) -> None:
  for key in KEYS:
    assert first[key] == pytest.approx(second[key], rel=1e-4, abs=1e-5), key


def test_a_head_does_not_depend_on_its_pack_mates_or_on_being_packed(tiny_cache):
  with_b = run_packed_trials([(A, "dpc"), (B, "dpc")], tiny_cache, **FAST)
  with_c_and_aspp = run_packed_trials([(C, "dpc"), (None, "aspp"), (A, "dpc")], tiny_cache,
                                      **FAST)
  alone = run_proxy_trial(A, tiny_cache, **FAST)
  _close(with_b[0], with_c_and_aspp[2])
  _close(with_b[0], alone)
  # Each head got its own gradients: mates train (their losses move) and differ from A.
  assert with_b[1]["final_loss"] != pytest.approx(with_b[0]["final_loss"], rel=1e-3)
  assert [r["pack_size"] for r in with_c_and_aspp] == [3, 3, 3]
  assert [r["pack_index"] for r in with_c_and_aspp] == [0, 1, 2]
  assert with_c_and_aspp[1]["cell_text"] == "aspp" and with_b[0]["cell_text"] == A
  assert all(r["steps"] == 6 and r["eval_examples"] == 16 for r in with_b)
  assert with_b[0]["seconds"] == pytest.approx(with_b[0]["pack_seconds"] / 2)


def test_a_failing_head_fails_alone(tiny_cache):
  # One head's learning rate cannot differ inside a pack, so a bad cell stands in for a
  # per-head failure at build time, and a diverging pack is checked head by head.
  results = run_packed_trials([("F:bogus", "dpc"), (B, "dpc")], tiny_cache, **FAST)
  assert isinstance(results[0], DpcError) and "bogus" in str(results[0])
  assert results[1]["cell_text"] == B and results[1]["steps"] == 6
  diverged = run_packed_trials([(A, "dpc"), (B, "dpc")], tiny_cache,
                               **{**FAST, "steps": 20, "learning_rate": 1e30})
  assert all(isinstance(r, NonFiniteLossError) for r in diverged)
  assert str(diverged[1]).startswith("proxy trial of cell F:conv1x1: loss is ")


def test_patience_stops_heads_one_by_one(tiny_cache):
  settings = dict(FAST, steps=50, learning_rate=0.0, bn_momentum=1.0, holdout_examples=8,
                  eval_every=2, patience=1)
  first, second = run_packed_trials([(B, "dpc"), (A, "dpc")], tiny_cache, **settings)
  for record in (first, second):
    assert record["stopped_early"] and record["steps"] == 4 and record["train_examples"] == 24
    assert [s for s, _ in record["holdout_miou"]] == [2, 4]
    assert not math.isnan(record["miou"])


def _same_state(first: str, second: str) -> None:
  expected, got = head_state.saved_values(first), head_state.saved_values(second)
  assert set(expected) == set(got) and any("iter" in name for name in got)
  for name, value in expected.items():
    np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-6, err_msg=name)


def test_a_continued_head_in_a_pack_equals_it_continued_alone(tiny_cache, tmp_path):
  """One pack mixes a head continued 3 -> 9 steps, a fresh first-rung head (0 -> 3, saved)
  and a fresh head at the pack's 6 steps under another seed: three lanes, three stopping
  points. The continued head ends with the weights, slots, step counter and score of the
  same head continued alone; the fresh rung head saves the state its run alone saved."""
  settings = dict(FAST, dropout=0.5)
  rung = dict(schedule_steps=9, learning_rate=0.05)  # the rungs' poly schedule runs over 9
  alone = {name: str(tmp_path / name) for name in ("rung0", "rung1", "packed0", "packed1")}
  first = run_proxy_trial(A, tiny_cache, save_to=alone["rung0"],
                          **dict(settings, steps=3, **rung))
  continued = run_proxy_trial(A, tiny_cache, start_from=alone["rung0"],
                              save_to=alone["rung1"], **dict(settings, steps=9, **rung))
  pack = run_packed_trials(
      [Member(A, steps=9, schedule_steps=9, start_from=alone["rung0"], save_to=alone["packed1"]),
       Member(B, seed=1),
       Member(A, steps=3, schedule_steps=9, save_to=alone["packed0"])],
      tiny_cache, **dict(settings, learning_rate=0.05))
  assert [r["steps"] for r in pack] == [9, 6, 3]
  assert [r["resumed_from_steps"] for r in pack] == [3, None, None]
  assert [r["schedule_steps"] for r in pack] == [9, 6, 9]
  assert [r["seed"] for r in pack] == [0, 1, 0]
  _close(pack[0], continued)
  _close(pack[2], first)
  _same_state(alone["rung1"], alone["packed1"])
  _same_state(alone["rung0"], alone["packed0"])
  # a state continued in a pack continues like any other: refused past its own steps
  refused = run_packed_trials([Member(A, steps=3, schedule_steps=9,
                                      start_from=alone["packed1"])], tiny_cache, **FAST)
  assert isinstance(refused[0], DpcError) and "reached 9 steps" in str(refused[0])


def test_a_rung_work_order_trains_in_the_pack_to_its_own_steps(tiny_cache, tmp_path):
  # Successive halving's jobs carry steps and a continuation: ProxyTrial.run_pack packs them
  # with plain cells; each head stops at its own steps, the job's head is saved, a job whose
  # head to continue is missing fails alone.
  from dpc_tf.search.stages import ProxyTrial  # pylint: disable=import-outside-toplevel
  from dpc_tf.search.subjects import Fidelity, Subject  # pylint: disable=import-outside-toplevel
  from dpc_tf.search_space import as_cell  # pylint: disable=import-outside-toplevel
  trial = ProxyTrial(tiny_cache, dict(FAST, cells_per_program=3))
  save_to = str(tmp_path / "heads" / "steps_3")
  job = Subject(as_cell(A), fidelity=Fidelity(steps=3, schedule_steps=9, save_to=save_to))
  lost = Subject(as_cell(B), fidelity=Fidelity(steps=9, schedule_steps=9,
                                               start_from=str(tmp_path / "none")))
  records = trial.run_pack([job, Subject(as_cell(B)), lost, Subject(as_cell(C), seed=2)])
  assert records[0]["steps"] == 3 and records[0]["schedule_steps"] == 9
  assert (tmp_path / "heads" / "steps_3" / "state.json").is_file()
  assert isinstance(records[2], DpcError) and "no state.json" in str(records[2])
  assert [records[i]["pack_size"] for i in (0, 1, 3)] == [4, 4, 4]
  assert [records[i]["steps"] for i in (1, 3)] == [6, 6] and records[3]["seed"] == 2
  # The pack's training time is shared by steps trained: the 3-step job gets half of a
  # 6-step head's share; the fixed costs are shared equally.
  assert records[0]["train_seconds"] == pytest.approx(records[1]["train_seconds"] / 2)
  fixed = records[1]["pack_seconds"] - 2.5 * records[1]["train_seconds"]
  assert records[1]["seconds"] == pytest.approx(fixed / 4 + records[1]["train_seconds"])


def test_a_pack_worker_runs_one_thread_per_op_without_grappler():
  import json, os, subprocess, sys  # pylint: disable=import-outside-toplevel,multiple-imports
  probe = ("import json, tensorflow as tf\n"
           "from dpc_tf.proxy import packed\n"
           "packed.configure_worker()\n"
           "print(json.dumps([tf.config.threading.get_intra_op_parallelism_threads(),\n"
           "  tf.config.optimizer.get_experimental_options().get('disable_meta_optimizer')]))\n")
  clean = {k: v for k, v in os.environ.items()
           if k not in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "DPC_TF_CPU_SHARE")}
  out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                       env={**clean, "PYTHONPATH": os.getcwd(), "CUDA_VISIBLE_DEVICES": ""})
  assert json.loads(out.stdout.strip().splitlines()[-1]) == [1, True]
