"""`python -m dpc_tf.reproduce`'s logic with a fake runner: statistics, resuming, the report (seconds)."""

import dataclasses
import json
import os
import math
import random

import pytest

from dpc_tf.errors import EXIT_USER_ERROR, DpcError
from dpc_tf.reproduction import claims, report, stats
from dpc_tf.reproduction.runners import ASPP
from dpc_tf.reproduction.store import ResultStore


class FakeRunner:
  """Scores derived from the cell's fingerprint: deterministic, no TensorFlow."""

  def __init__(self):
    self.calls = []

  def _score(self, key, salt):
    return random.Random(f"{key}:{salt}").random()

  def proxy(self, cell, steps, seed=0):
    self.calls.append(("proxy", cell.fingerprint(), steps, seed))
    noise = 0.05 * self._score(cell.fingerprint(), f"p{seed}") if seed else 0.0
    return {"miou": self._score(cell.fingerprint(), "p") + noise, "seconds": 2.0,
            "step_seconds": 0.01}

  def full(self, cell, key, steps, seed=0):
    self.calls.append(("full", key, steps, seed))
    base = ASPP if cell is None else cell.fingerprint()
    proxy = 0.5 if cell is None else self._score(base, "p")
    return {"miou": 0.7 * proxy + 0.3 * self._score(base, f"f{seed}"), "seconds": 60.0,
            "step_seconds": 0.2}

  def head_costs(self, cell, key):
    self.calls.append(("costs", key))
    n = 1000 if key == ASPP else 400 + len(key)
    return {"head_params": n, "head_madds": 10 * n, "branch_params": n // 2,
            "branch_madds": 5 * n, "input_shape": [1, 257, 257, 3]}


SMALL = claims.Settings(proxy_steps=30, full_steps=20, num_random=6, num_searched=3,
                        search_steps=10, search_seeds=(0, 1), search_budget=6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spearman_matches_scipy(seed):
  scipy_stats = pytest.importorskip("scipy.stats")
  rng = random.Random(seed)
  x = [rng.randint(0, 5) for _ in range(25)]  # with ties
  y = [a + rng.random() * 4 for a in x]
  expected = scipy_stats.spearmanr(x, y)
  rho = stats.spearman(x, y)
  assert rho == pytest.approx(expected.statistic, abs=1e-12)
  assert stats.spearman_pvalue(rho, len(x)) == pytest.approx(expected.pvalue, rel=1e-6)


def test_ranks_and_curves():
  assert stats.ranks([3, 1, 3, 2]) == [3.5, 1.0, 3.5, 2.0]
  assert stats.best_so_far([0.1, 0.3, 0.2, 0.4]) == [0.1, 0.3, 0.3, 0.4]
  assert stats.mean_curve([[1, 2, 3], [3, 4]]) == [2, 3]
  with pytest.raises(ValueError, match="paired values"):
    stats.spearman([1, 2], [1])
  assert math.isnan(stats.spearman([1, 2, 3], [4, 4, 4]))


def test_claims_resume_without_repeating(tmp_path):
  store, runner = ResultStore(str(tmp_path)), FakeRunner()
  first = claims.search_strategy(store, runner, SMALL)
  for run in first["runs"]:
    top = sorted((t["miou"] for t in run["trials"]), reverse=True)
    assert run["top_means"] == {"1": top[0], "5": pytest.approx(sum(top[:5]) / 5)}  # 6 trials
  # Wins recounted by hand from the runs: seeds where local's best-k mean beats uniform's.
  means = {(r["strategy"], r["seed"]): r["top_means"] for r in first["runs"]}
  assert first["top_mean_wins"] == {
      k: sum(means[("local", s)][k] > means[("uniform", s)][k] for s in SMALL.search_seeds)
      for k in ("1", "5")}
  fid = claims.fidelity(store, runner, SMALL)
  assert fid["num_cells"] == 1 + 6 + 3 and fid["num_full"] == fid["num_cells"]
  assert {r["origin"] for r in fid["rows"]} == {"released", "random", "searched"}
  assert -1.0 <= fid["spearman_rho"] <= 1.0
  aspp = claims.vs_aspp(store, runner, SMALL)
  cost = claims.proxy_cost(store, runner, SMALL)
  assert cost["median_trial_ratio"] == pytest.approx(30.0)
  assert cost["median_step_ratio"] == pytest.approx(20.0)
  assert aspp["entries"]["aspp"]["params_vs_aspp"] == 1.0
  keys = [c for c in runner.calls if c[0] != "costs"]
  assert len(keys) == len(set(keys))  # no trial ran twice, across claims
  # a rerun (a new process: a fresh runner) reuses every stored trial and agrees
  again = FakeRunner()
  assert claims.search_strategy(store, again, SMALL) == first
  assert claims.fidelity(store, again, SMALL)["spearman_rho"] == fid["spearman_rho"]
  assert again.calls == []


def test_fidelity_cells_stay_when_the_searches_grow(tmp_path):
  store, runner = ResultStore(str(tmp_path)), FakeRunner()
  claims.search_strategy(store, runner, SMALL)
  first = claims.fidelity_cells(store, SMALL)
  assert [o for o, _ in first].count("searched") == 3
  longer = dataclasses.replace(SMALL, search_budget=12, search_seeds=(0, 1, 2, 3))
  claims.search_strategy(store, runner, longer)
  assert claims._choose_fidelity_cells(store, longer) != first  # chosen afresh: other cells
  assert claims.fidelity_cells(store, longer) == first  # the chosen set is kept
  assert claims.fidelity_cells(store, dataclasses.replace(longer, num_random=7)) != first


def test_seeds_average_and_measure_noise(tmp_path):
  store, runner = ResultStore(str(tmp_path)), FakeRunner()
  seeded = dataclasses.replace(SMALL, seeds=(0, 1, 2))
  fid = claims.fidelity(store, runner, seeded)
  assert fid["complete"] and fid["num_full"] == 10 and fid["seeds"] == [0, 1, 2]
  row = fid["rows"][0]
  assert len(row["proxy_mious"]) == len(row["full_mious"]) == 3
  assert row["full_miou"] == pytest.approx(sum(row["full_mious"]) / 3)
  # the fake's full task is 0.7 x proxy + 0.3 x per-seed noise: seeds agree, imperfectly
  assert 0.0 < fid["full_noise"]["retest_rho"] < 1.0
  assert len(fid["full_noise"]["retest_rhos"]) == 3 and len(fid["per_seed_rho"]) == 3
  assert 0.0 < fid["rho_ceiling"] <= 1.0
  full_calls = [c for c in runner.calls if c[0] == "full"]
  assert len(full_calls) == 3 * 11 and len(set(full_calls)) == len(full_calls)  # + ASPP
  assert store.get("full-s20", "aspp-seed2") is not None and store.get("full-s20", "aspp")
  aspp = claims.vs_aspp(store, runner, seeded)
  pick = aspp["entries"]["proxy_pick"]
  diffs = [a - b for a, b in zip(pick["mious"], aspp["entries"]["aspp"]["mious"])]
  assert pick["miou_minus_aspp"] == pytest.approx(sum(diffs) / 3)
  assert pick["miou_minus_aspp_se"] == pytest.approx(stats.standard_error(diffs))
  assert len([c for c in runner.calls if c[0] == "full"]) == 3 * 11  # claim 2 reused them
  text = open(report.write_report(store, str(tmp_path / "docs"))).read()
  assert f"{fid['rho_ceiling']:.2f}**" in text and "3 seeds (0, 1, 2)" in text
  assert f"{pick['miou_minus_aspp']:+.3f} +- {pick['miou_minus_aspp_se']:.3f}" in text


def test_seed_noise_by_hand():
  perfect = stats.seed_noise([[0.1, 0.2, 0.3, 0.4], [0.2, 0.3, 0.4, 0.5]])
  assert perfect["retest_rho"] == 1.0 and perfect["reliability"] == 1.0
  assert perfect["within_sd"] == pytest.approx(0.05 * math.sqrt(2))
  noisy = stats.seed_noise([[1, 2, 3, 4], [2, 1, 4, 3], [1, 2, 4, 3]])
  # pair rhos: 0.6, 0.8, 0.8 -> r = 2.2 / 3; Spearman-Brown for 3 seeds: 3r / (1 + 2r)
  r = 2.2 / 3
  assert noisy["retest_rho"] == pytest.approx(r)
  assert noisy["reliability"] == pytest.approx(3 * r / (1 + 2 * r))
  assert stats.rho_ceiling(0.81, 0.64) == pytest.approx(0.72)
  assert stats.seed_noise([[1, 2, 3], [3, 2, 1]])["reliability"] == 0.0
  assert stats.standard_error([1.0, 3.0]) == pytest.approx(1.0)
  assert stats.standard_error([1.0]) is None
  with pytest.raises(ValueError, match="2 seeds"):
    stats.seed_noise([[1, 2, 3]])


def test_deadline_stops_and_rerun_finishes(tmp_path):
  store, runner = ResultStore(str(tmp_path)), FakeRunner()
  claims.search_strategy(store, runner, SMALL)
  past = dataclasses.replace(SMALL, deadline=0.0)
  claims.search_strategy(store, runner, past)  # all stored: the deadline does not matter
  with pytest.raises(claims.OutOfTime):       # one new trial per search: it does
    claims.search_strategy(store, runner, dataclasses.replace(past, search_budget=7))
  with pytest.raises(claims.OutOfTime):       # fidelity's proxies are missing
    claims.fidelity(store, runner, past)
  assert claims.fidelity(store, runner, SMALL)["num_full"] == 10  # the rerun finishes


def test_store_is_atomic_json(tmp_path):
  store = ResultStore(str(tmp_path))
  store.put("proxy-s1", "abc", {"miou": float("nan"), "n": 3})
  assert store.get("proxy-s1", "abc") == {"miou": None, "n": 3}
  assert not [f for f in os.listdir(tmp_path / "proxy-s1") if f.startswith(".tmp")]
  with pytest.raises(ValueError):
    store.path("proxy", "../x")


def test_report_from_stored_json(tmp_path):
  store, runner = ResultStore(str(tmp_path / "work")), FakeRunner()
  docs = tmp_path / "docs"
  with pytest.raises(DpcError, match="holds no claim results; refusing to overwrite"):
    report.write_report(store, str(docs))  # a wrong --work_dir never clobbers the docs
  assert not docs.exists()
  claims.proxy_cost(store, runner, SMALL)
  path = report.write_report(store, str(docs))
  assert "Not run yet." in open(path).read()
  for name in ("search_strategy", "fidelity", "vs_aspp", "proxy_cost"):
    getattr(claims, name)(store, runner, SMALL)
  from dpc_tf.reproduction import halving  # pylint: disable=import-outside-toplevel
  store.write_claim(halving.NAME, halving.study(halving.Settings(seeds=(0,), budget=5)))
  from dpc_tf.reproduction import search_verdict  # pylint: disable=import-outside-toplevel
  store.write_claim(search_verdict.NAME, {"cells": [], "baselines": {}, "verdict": None,
                                          "counts": {}, "claim_shown": False})
  text = open(report.write_report(store, str(docs))).read()
  assert "Not run yet." not in text and "Spearman rho" in text
  assert "## 5. Beyond the paper: successive halving" in text
  assert "best k cells" in text and "| 5 |" in text
  assert "At the paper's scale" not in text  # no proxy benchmark yet
  (docs / "benchmarks").mkdir()
  (docs / "benchmarks" / "proxy.json").write_text(json.dumps({"date": "2026-01-02", "result": {
      "crop": 257, "mobilenet_proxy_vs_xception_full_trial_ratio_paper": 212.4}}))
  text = open(report.write_report(store, str(docs))).read()
  assert "**212x** (at least the paper's saving)" in text and "2026-01-02" in text
  for png in ("fidelity.png", "vs_aspp.png", "search_strategy.png"):
    assert (docs / "reproduction" / png).stat().st_size > 1000
  assert json.loads((docs / "reproduction" / "fidelity.json").read_text())["num_full"] == 10
  with pytest.raises(DpcError, match="holds no claim results"):
    report.write_report(ResultStore(str(tmp_path / "other")), str(docs))
  fresh = ResultStore(str(tmp_path / "other"))
  claims.proxy_cost(fresh, runner, SMALL)
  with pytest.raises(DpcError, match="lacks fidelity, vs_aspp, search_verdict, search_strategy, halving, which"):
    report.write_report(fresh, str(docs))


@pytest.mark.parametrize("args, message", [
    (["nope"], "dpc_tf.reproduce: error: name one subcommand: search_strategy | fidelity"),
    (["vs_aspp", "--seeds=a"], "dpc_tf.reproduce: error: --seeds must be comma-separated "
                               "integers, got 'a'"),
])
def test_cli_refusals_are_one_line(commands, tmp_path, args, message):
  result = commands.run("dpc_tf.reproduce", *args, f"--work_dir={tmp_path}", timeout=120)
  assert result.returncode == EXIT_USER_ERROR
  assert commands.error_line(result).startswith(message)


def test_report_on_an_empty_work_folder_is_refused(commands, tmp_path):
  docs = tmp_path / "docs"
  docs.mkdir()
  (docs / "REPRODUCTION.md").write_text("the real report\n")
  result = commands.run("dpc_tf.reproduce", "report", f"--work_dir={tmp_path}/work",
                        f"--docs_dir={docs}", timeout=120)
  assert result.returncode == EXIT_USER_ERROR
  assert "holds no claim results; refusing to overwrite" in commands.error_line(result)
  assert (docs / "REPRODUCTION.md").read_text() == "the real report\n"


def test_halving_study_compares_at_equal_steps():
  from dpc_tf.reproduction import halving  # pylint: disable=import-outside-toplevel
  result = halving.study(halving.Settings(seeds=(0, 1), budget=6))
  assert [(r["fidelity"], r["steps"]) for r in result["runs"]] == [
      ("flat", 5400), ("successive_halving", 5400)] * 2  # equal compute: 6 x 900 steps
  for run in result["runs"]:
    assert run["curve"][-1] == [run["steps"], run["final_best_k"]] or (
        run["curve"][-1][0] <= run["steps"] and run["curve"][-1][1] == run["final_best_k"])
  flat = [r for r in result["runs"] if r["fidelity"] == "flat"]
  assert all(r["cells"] == 6 and r["jobs"] == 6 for r in flat)
  for p in result["per_seed"]:
    assert p["flat_steps_to_target"] <= 5400
    if p["halving_steps_to_target"] is not None:
      assert p["steps_ratio"] == p["halving_steps_to_target"] / p["flat_steps_to_target"]
  assert halving.steps_to_reach([[100, 0.5], [300, 0.7]], 0.6) == 300
  assert halving.steps_to_reach([[100, 0.5]], 0.6) is None
  assert "not the real proxy" in "\n".join(halving.markdown(result))


@pytest.mark.parametrize("delta, stderr, ratio, expected", [
    (0.010, 0.004, 1.2, "beats ASPP"),
    (0.003, 0.004, 0.5, "matches ASPP at <= 0.5x MAdds"),
    (-0.003, 0.004, 0.4, "matches ASPP at <= 0.5x MAdds"),
    (0.003, 0.004, 0.6, "within one s.e., not <= 0.5x MAdds"),
    (-0.005, 0.004, 0.3, "below ASPP"),
    (0.050, None, 0.3, "untested (one seed)"),
])
def test_claim_two_reads_one_standard_error(delta, stderr, ratio, expected):
  from dpc_tf.reproduction import search_verdict  # pylint: disable=import-outside-toplevel
  assert search_verdict.claim_test(delta, stderr, ratio) == expected


def test_search_verdict_runs_the_search_and_reports_every_reranked_cell(commands, tmp_path):
  import statistics  # pylint: disable=import-outside-toplevel
  from dpc_tf.reproduction import search_verdict  # pylint: disable=import-outside-toplevel
  from dpc_tf.search.store import Store  # pylint: disable=import-outside-toplevel
  work = tmp_path / "work"
  args = ("dpc_tf.reproduce", "search_verdict", f"--work_dir={work}",
          "--search_verdict_gin=gin/search/fake_demo.gin")
  result = commands.run(*args, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  r = json.loads((work / "search_verdict.json").read_text())
  store = Store(str(work / "search_verdict" / "trials.sqlite"))
  trials = {t.id: t for t in store.trials("done")}
  aspp = next(t for t in trials.values() if t.is_baseline and t.subject.is_aspp)
  theirs = dict(aspp.rerank_record["scores"])
  assert len(r["cells"]) == len([t for t in trials.values()
                                 if t.rerank_record and not t.is_baseline]) >= 2
  for cell in r["cells"]:  # paired deltas recomputed by hand from the per-seed scores
    mine = dict(trials[cell["trial_id"]].rerank_record["scores"])
    deltas = [mine[s] - theirs[s] for s in sorted(set(mine) & set(theirs))]
    assert cell["seeds"] == len(deltas) >= 2
    assert cell["delta_miou"] == pytest.approx(statistics.fmean(deltas))
    assert cell["stderr"] == pytest.approx(statistics.stdev(deltas) / math.sqrt(len(deltas)))
    assert cell["claim"] == search_verdict.claim_test(cell["delta_miou"], cell["stderr"],
                                                      cell["madds_ratio"])
  assert r["claim_shown"] == any(c["claim"] in ("beats ASPP", "matches ASPP at <= 0.5x MAdds")
                                 for c in r["cells"])
  assert set(r["baselines"]) == {"aspp", "released"}
  rows = store.trials()
  again = commands.run(*args, timeout=300)  # resumes the finished search: nothing reruns
  assert again.returncode == 0
  assert [(t.id, t.finished) for t in Store(str(work / "search_verdict" / "trials.sqlite")
                                           ).trials()] == [(t.id, t.finished) for t in rows]
  docs = tmp_path / "docs"
  text = open(report.write_report(ResultStore(str(work)), str(docs))).read()
  assert "## 2b. Search beats hand design: through the search itself" in text
  assert r["cells"][0]["cell"] in text and "baseline aspp" in text
