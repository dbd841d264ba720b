"""docs/REPRODUCTION.md and docs/reproduction/*.png from the claims' stored JSON.

Only reads WORK_DIR/<claim>.json (what the claim commands wrote); copies each into
docs/reproduction/ so the write-up's figures stay with it. A claim not yet run is listed as
such, never filled in.
"""

from __future__ import annotations

import datetime
import json
import os
import platform

from dpc_tf.reproduction import halving, search_verdict, stats
from dpc_tf.errors import DpcError
from dpc_tf.utils.files import write_json_atomic, write_text_atomic

CLAIMS = ("fidelity", "vs_aspp", search_verdict.NAME, "search_strategy", "proxy_cost",
          halving.NAME)
CMD = "python -m dpc_tf.reproduce"
PAPER = {"rho": (0.36, 0.47), "params_ratio": 0.5, "madds_ratio": 0.38, "cost_ratio": 100}


def _f(value, digits: int = 3) -> str:
  if value is None:
    return "-"
  if isinstance(value, float):
    return f"{value:.{digits}f}"
  return f"{value:,}" if isinstance(value, int) else str(value)


def _machine() -> str:
  cpu = platform.processor() or "unknown CPU"
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu)
  except OSError:
    pass
  return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def _plt():
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  return plt


def _save(fig, plot_dir: str, name: str) -> str:
  path = os.path.join(plot_dir, name)
  tmp = path + ".tmp.png"
  fig.savefig(tmp, dpi=90, bbox_inches="tight")
  os.replace(tmp, path)
  return name


def _seeds(r: dict) -> str:
  seeds = r.get("seeds", [0])
  return (f"one seed ({seeds[0]})" if len(seeds) == 1 else
          f"{len(seeds)} seeds ({', '.join(map(str, seeds))}); a cell's score is its mean")


def noise_lines(r: dict) -> list[str]:
  """Claim 1's test-retest table: how far each measurement agrees with itself."""
  if "full_noise" not in r:
    return []
  k = len(r["seeds"])
  lines = ["How repeatable each ranking is (the same cells, another seed):", "",
           f"| measurement | rho between two seeds | reliability of the {k}-seed mean | "
           "seed-to-seed SD of a cell | SD between cells' means |", "|---|---|---|---|---|"]
  for name, key in (("proxy", "proxy_noise"), ("full task", "full_noise")):
    n = r[key]
    pairs = ", ".join(f"{x:.2f}" for x in n["retest_rhos"])
    lines.append(f"| {name} | {n['retest_rho']:.3f} ({pairs}) | {n['reliability']:.3f} | "
                 f"{n['within_sd']:.3f} | {n['between_sd']:.3f} |")
  ceiling = r["rho_ceiling"]
  lines += ["", f"Rho per seed (proxy seed s against full task seed s): "
            f"{', '.join(f'{x:.3f}' for x in r['per_seed_rho'])}.", "",
            f"Noise ceiling: if the proxy and the full task ranked the cells identically, "
            f"measurements this noisy would still show a rho of only about **{ceiling:.2f}** "
            "(the square root of the product of the two reliabilities)" +
            (f"; the measured rho is {r['spearman_rho'] / ceiling:.2f} of that ceiling." if
             ceiling > 0 and "spearman_rho" in r else "."), ""]
  return lines


def fidelity_section(r: dict, plot_dir: str) -> list[str]:
  lines = [f"Proxy: {r['proxy_steps']} steps on cached features; full task: the whole model "
           f"trained end to end for {r['full_steps']} steps; {_seeds(r)}. Cells with every "
           f"score: {r['num_full']} of {r['num_cells']}.", ""]
  if "spearman_rho" in r:
    lo, hi = PAPER["rho"]
    rho = r["spearman_rho"]
    where = ("within the paper's range" if lo <= rho <= hi else
             f"{lo - rho:.2f} below the paper's lower end" if rho < lo else
             f"{rho - hi:.2f} above the paper's upper end")
    lines += [f"**Spearman rho = {rho:.3f}** (two-sided p = {r['p_value']:.3g}, "
              f"n = {r['num_full']}); the paper: {lo}-{hi}, so {where}.", ""]
  lines += noise_lines(r)
  k = len(r.get("seeds", [0]))
  done = [x for x in r["rows"] if len(x.get("full_mious", [x.get("full_miou")])) == k
          and x.get("full_miou") is not None]
  if done:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4))
    for origin, marker in (("random", "o"), ("searched", "s"), ("released", "*")):
      pts = [x for x in done if x["origin"] == origin]
      if pts:
        spread = lambda f: ([stats.sample_sd(x[f]) for x in pts] if k > 1 else None)  # noqa: E731
        ax.errorbar([x["proxy_miou"] for x in pts], [x["full_miou"] for x in pts],
                    xerr=spread("proxy_mious"), yerr=spread("full_mious"), fmt=marker,
                    label=origin, ms=9 if marker == "*" else 5, elinewidth=0.6, capsize=0)
    ax.set_xlabel(f"proxy mIOU ({r['proxy_steps']} steps, cached features)")
    ax.set_ylabel(f"full-task mIOU ({r['full_steps']} steps, end to end)")
    ax.set_title(f"Proxy fidelity: Spearman rho = {r.get('spearman_rho', float('nan')):.2f}")
    ax.legend()
    lines += [f"![proxy vs full task](reproduction/{_save(fig, plot_dir, 'fidelity.png')})", ""]
    plt.close(fig)
  if k > 1:
    lines.append(f"Error bars: seed-to-seed SD over the {k} seeds.")
  lines += ["", "| origin | cell | proxy mIOU | full-task mIOU | per seed (proxy / full) "
            "| proxy s | full s |", "|---|---|---|---|---|---|---|"]
  for x in r["rows"]:
    per_seed = " / ".join(", ".join(f"{v:.2f}" for v in x.get(f, []))
                          for f in ("proxy_mious", "full_mious"))
    lines.append(f"| {x['origin']} | `{x['cell']}` | {_f(x['proxy_miou'])} | "
                 f"{_f(x.get('full_miou'))} | {per_seed} | {_f(x['proxy_seconds'], 1)} | "
                 f"{_f(x.get('full_seconds'), 1)} |")
  return lines


def _pm(entry: dict) -> str:
  se = entry.get("miou_minus_aspp_se")
  return f"{entry['miou_minus_aspp']:+.3f}" + (f" +- {se:.3f}" if se else "")


def vs_aspp_section(r: dict, plot_dir: str) -> list[str]:
  e = r["entries"]
  shape = [1] + e["aspp"]["input_shape"][-3:]
  lines = [f"Full task: {r['full_steps']} steps end to end, {_seeds(r)} ('vs ASPP': the mean "
           "of the per-seed differences, +- its standard error). Head costs of the full "
           f"model's head at a {shape[1]}x{shape[2]} input (all its convolutions, batch norm "
           "excluded; "
           "'branch' = the paper's convention, branch convolutions only).", "",
           "| head | cell | full-task mIOU | vs ASPP | head params | x ASPP | head MAdds | "
           "x ASPP | branch params | branch MAdds |", "|---|---|---|---|---|---|---|---|---|---|"]
  names = {"aspp": "ASPP (baseline)", "proxy_pick": "search's pick: best proxy score",
           "reranked_pick": f"re-ranked: best full task of the top {r['reranked_from']} by proxy",
           "released_cell": "paper's Cityscapes cell"}
  for key, entry in e.items():
    lines.append(f"| {names.get(key, key)} ({entry.get('origin', '-')}) | "
                 f"`{entry['cell'] or '-'}` | {_f(entry['miou'])} | "
                 f"{_pm(entry)} | {_f(entry['head_params'])} | "
                 f"{entry['params_vs_aspp']:.2f} | {_f(entry['head_madds'])} | "
                 f"{entry['madds_vs_aspp']:.2f} | {_f(entry['branch_params'])} | "
                 f"{_f(entry['branch_madds'])} |")
  pick = e["proxy_pick"]
  lines += ["", f"The search's pick (best proxy score of the {r.get('num_cells', '?')} cells, "
            f"a {pick.get('origin')} cell) against ASPP: {_pm(pick)} "
            f"mIOU with {pick['params_vs_aspp']:.2f}x the head parameters and "
            f"{pick['madds_vs_aspp']:.2f}x the head multiply-adds (the paper: better, with about "
            f"{PAPER['params_ratio']}x the parameters and {PAPER['madds_ratio']}x the FLOPs)."]
  if r.get("random_full_miou"):
    rs = r["random_full_miou"]
    lines += ["", f"Random cells on the full task (n = {len(rs)}): mean {r['random_mean']:.3f}, "
              f"best {r['random_max']:.3f}, worst {min(rs):.3f}."]
  plt = _plt()
  fig, ax = plt.subplots(figsize=(6, 3.5))
  labels = [names.get(k, k).split(":")[0] + ("" if k == "aspp" else f"\n{k}") for k in e]
  ax.bar(range(len(e)), [x["miou"] for x in e.values()], color="tab:blue")
  if r.get("random_full_miou"):
    ax.axhline(r["random_mean"], color="gray", ls="--", label="random cells (mean)")
    ax.legend()
  ax.set_xticks(range(len(e)), labels, fontsize=7)
  ax.set_ylabel("full-task mIOU")
  ax.set_title("Searched cell vs ASPP (full task)")
  lines += ["", f"![vs ASPP](reproduction/{_save(fig, plot_dir, 'vs_aspp.png')})"]
  plt.close(fig)
  return lines


def search_section(r: dict, plot_dir: str) -> list[str]:
  s = r["strategies"]
  lines = [f"Proxy at {r['proxy_steps']} steps; {r['budget']} trials per search; seeds "
           f"{r['seeds']}; local = p_uniform {s['local']['p_uniform']} (mutate one of the top "
           f"{r['top_k']}), uniform = p_uniform 1.0.", "",
           "| strategy | best proxy mIOU per seed | mean best |", "|---|---|---|"]
  for name, v in s.items():
    lines.append(f"| {name} | {', '.join(f'{x:.3f}' for x in v['final_best'])} | "
                 f"{v['mean_final_best']:.3f} |")
  by_origin = {}
  for run in r["runs"]:
    for t in run["trials"]:
      if run["strategy"] == "local" and t["origin"] in ("mutation", "uniform"):
        by_origin.setdefault(t["origin"], []).append(t["miou"])
  if by_origin:
    lines += ["", "Within the local searches, mean proxy mIOU of a trial by how it was made: " +
              "; ".join(f"{k} {sum(v) / len(v):.3f} (n = {len(v)})"
                        for k, v in sorted(by_origin.items())) + "."]
  lines += ["", f"Local sampling ends higher on {r['local_wins']} of {len(r['seeds'])} seeds "
            f"({r['ties']} ties); mean gain {r['mean_gain']:+.4f} mIOU.", ""]
  if r.get("top_mean_wins"):
    ks = list(r["top_mean_wins"])
    lines += ["Mean proxy mIOU of each search's best k cells (the set a search hands to "
              "re-ranking), averaged over seeds; wins = seeds where local is higher:", "",
              "| k | " + " | ".join(s) + " | local - uniform | local wins |",
              "|---|" + "---|" * (len(s) + 2)]
    for k in ks:
      means = [v["mean_top_means"][k] for v in s.values()]
      gain = s["local"]["mean_top_means"][k] - s["uniform"]["mean_top_means"][k]
      lines.append(f"| {k} | " + " | ".join(f"{m:.3f}" for m in means) +
                   f" | {gain:+.4f} | {r['top_mean_wins'][k]} of {len(r['seeds'])} |")
    lines.append("")
  lines += ["Mean best-so-far after n trials:", "",
            "| n | " + " | ".join(s) + " |", "|---|" + "---|" * len(s)]
  for i in range(len(s["local"]["mean_best_so_far"])):
    lines.append(f"| {i + 1} | " + " | ".join(f"{v['mean_best_so_far'][i]:.3f}"
                                               for v in s.values()) + " |")
  plt = _plt()
  fig, ax = plt.subplots(figsize=(5, 3.5))
  colors = {"uniform": "tab:gray", "local": "tab:red"}
  for run in r["runs"]:
    ax.plot(range(1, len(run["best_so_far"]) + 1), run["best_so_far"], alpha=0.3,
            color=colors[run["strategy"]])
  for name, v in s.items():
    ax.plot(range(1, len(v["mean_best_so_far"]) + 1), v["mean_best_so_far"], lw=2,
            color=colors[name], label=f"{name} (mean)")
  ax.set_xlabel("trials")
  ax.set_ylabel("best proxy mIOU so far")
  ax.legend()
  lines += ["", f"![search strategies](reproduction/{_save(fig, plot_dir, 'search_strategy.png')})"]
  plt.close(fig)
  return lines


def _short(ratio) -> str:
  if ratio is None:
    return "not measured"
  if ratio >= PAPER["cost_ratio"]:
    return "at least the paper's saving"
  return f"{PAPER['cost_ratio'] / ratio:.1f}x short of the paper's 100x"


def _paper_scale_lines(plot_dir: str) -> list[str]:
  """The proxy benchmark's derived paper-scale ratio, when docs/benchmarks/proxy.json exists."""
  path = os.path.join(os.path.dirname(plot_dir), "benchmarks", "proxy.json")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    bench = json.load(f)
  ratio = bench.get("result", {}).get("mobilenet_proxy_vs_xception_full_trial_ratio_paper")
  if ratio is None:
    return []
  crop = bench["result"].get("crop")
  return ["", f"At the paper's scale (the `proxy` benchmark, docs/benchmarks/proxy.json, "
          f"{bench.get('date', '?')}: step times measured on this machine at a {crop}x{crop} "
          "crop, a MobileNet-v2 proxy step on cached features against an Xception-71 + "
          "decoder training step, scaled by the paper's step counts and batches, not timed as "
          f"whole trials): **{ratio:.0f}x** ({_short(ratio)})."]


def cost_section(r: dict, plot_dir: str) -> list[str]:
  lines = [f"Per trial, measured wall seconds: proxy ({r['proxy_steps']} steps, with evaluation "
           f"and model building) against the full task ({r['full_steps']} steps, with "
           f"evaluation), over the {len(r['pairs'])} cells that have both.", "",
           f"- median proxy trial: {_f(r['median_proxy_seconds'], 1)} s; median full-task "
           f"trial: {_f(r['median_full_seconds'], 1)} s",
           f"- **median per-trial ratio: {_f(r['median_trial_ratio'], 1)}x** (paper: "
           f"{PAPER['cost_ratio']}+x)",
           f"  ({_short(r['median_trial_ratio'])})",
           f"- median per-step ratio (full-task step / proxy step): "
           f"{_f(r['median_step_ratio'], 1)}x"]
  if r.get("equal_steps_trial_ratio"):
    lines.append(f"- per-trial ratio at equal step counts (derived: measured ratio x "
                 f"{r['proxy_steps']}/{r['full_steps']}): {_f(r['equal_steps_trial_ratio'], 1)}x")
  return lines + _paper_scale_lines(plot_dir)


SECTIONS = {"fidelity": ("1. Proxy fidelity", fidelity_section),
            "vs_aspp": ("2. Search beats hand design", vs_aspp_section),
            search_verdict.NAME: ("2b. Search beats hand design: through the search itself",
                                  lambda r, plot_dir: search_verdict.markdown(r)),
            "search_strategy": ("3. Local sampling beats uniform sampling", search_section),
            "proxy_cost": ("4. Proxy cost", cost_section),
            halving.NAME: ("5. Beyond the paper: successive halving at equal proxy compute",
                           lambda r, plot_dir: halving.markdown(r))}


def check_not_clobbering(store, docs_dir: str) -> dict:
  """The stored claims' results; DpcError when the report would lose what docs_dir has: no
  result at all in the work folder (a wrong --work_dir), or a claim the previous report
  rendered (docs_dir/reproduction/NAME.json) that the work folder lacks."""
  results = {name: store.read_claim(name) for name in CLAIMS}
  if not any(r is not None for r in results.values()):
    raise DpcError(f"the work folder {store.root} holds no claim results; refusing to "
                   f"overwrite {os.path.join(docs_dir, 'REPRODUCTION.md')} with empty "
                   "sections (check --work_dir, or run a claim first)")
  dropped = [name for name, r in results.items() if r is None and os.path.exists(
      os.path.join(docs_dir, "reproduction", name + ".json"))]
  if dropped:
    raise DpcError(f"the work folder {store.root} lacks {', '.join(dropped)}, which "
                   f"{os.path.join(docs_dir, 'REPRODUCTION.md')} reports; refusing to drop "
                   "them (run them, or move docs/reproduction/NAME.json away)")
  return results


def write_report(store, docs_dir: str, notes: str = "") -> str:
  results = check_not_clobbering(store, docs_dir)
  plot_dir = os.path.join(docs_dir, "reproduction")
  os.makedirs(plot_dir, exist_ok=True)
  now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  out = ["# Reproducing the paper's claims in miniature", "",
         f"Generated by `{CMD} report` on {now} from the JSON under the work folder "
         f"(copied to docs/reproduction/*.json); machine: {_machine()}. Every figure is "
         "measured; none is typed in.", ""]
  notes_path = os.path.join(plot_dir, "NOTES.md")
  if os.path.exists(notes_path):
    with open(notes_path) as f:
      out += [f.read().rstrip(), ""]
  out += [notes] if notes else []
  for name in CLAIMS:
    title, section = SECTIONS[name]
    out += [f"## {title}", "", f"Command: `{CMD} {name} --work_dir=WORK_DIR` (see the commands "
            "above for the flags used).", ""]
    result = results[name]
    if result is None:
      out += ["Not run yet.", ""]
      continue
    write_json_atomic(os.path.join(plot_dir, name + ".json"), result)
    out += section(result, plot_dir) + [""]
  path = os.path.join(docs_dir, "REPRODUCTION.md")
  write_text_atomic(path, "\n".join(out))
  return path
