"""Tracked points and training budgets on the reading side: convergence verdicts, gaps at
equal N, cumulative cost totals, the tracked plots and the claims' convergence notes."""

import json

import numpy as np
import pandas as pd
import pytest
from test_report import write_run

from bench.analysis import claims as cl
from bench.analysis import report as rp
from bench.core.layout import SUMMARY_METRICS
from bench.results import table as rt

NAN = float("nan")
OK = {"status": "ok", "epoch": 2, "step": 200}


def tracked(run: str, fid: list[float], n: int = 250, images_per_step: int = 64) -> list[dict]:
    """track/fid at steps 10, 20, ... with the cumulative counters written at the same point."""
    out = []
    for i, value in enumerate(fid, 1):
        step = 10 * i
        at = {"run": run, "model": run[0], "seed": 0, "epoch": 1 + (i > len(fid) // 2)}
        at |= {"step": step}
        out += [
            at | {"metric": "track/fid", "value": value, "n": n},
            at | {"metric": "track/kid_mean", "value": value / 1000, "n": n},
            at | {"metric": "cost/cum_images", "value": step * images_per_step, "n": NAN},
            at | {"metric": "cost/cum_train_flops", "value": step * 3e9, "n": NAN},
            at | {"metric": "cost/cum_train_seconds", "value": step * 0.5, "n": NAN},
        ]
    return out


def evaluations(run: str, fid: list[float]) -> list[dict]:
    """The per-epoch full-N fid rows and the summary rows, 2 epochs of 100 steps."""
    at = {"run": run, "model": run[0], "seed": 0, "n": 1000}
    out = [at | {"epoch": e, "step": 100 * e, "metric": "fid", "value": v} for e, v in ((1, fid[0]), (2, fid[1]))]  # fmt: skip
    best = int(np.argmin(fid))
    summary = {"best_fid": fid[best], "best_fid_epoch": best + 1, "final_fid": fid[1]}
    summary["kid_std"] = 0.001  # a final metric outside the headline table
    return out + [
        at | {"epoch": 2, "step": 200, "metric": m, "value": v} for m, v in summary.items()
    ]


# ---------------------------------------------------------------- the verdict


def test_verdict_flips_on_synthetic_curves():
    x = np.linspace(0, 1, 12)
    noise = 0.01 * np.sin(37 * x)  # +-1%: below the tolerance, as N=250 sampling noise is
    flat = 100 * (1 + noise)
    falling = 200 - 100 * x  # still dropping ~40% over the last quarter
    rise_after_best = 100 + 400 * (x - 0.5) ** 2  # best at half the budget, then worse
    assert rt.convergence_verdict(x, flat) == rt.CONVERGED
    assert rt.convergence_verdict(x, falling) == rt.IMPROVING
    assert rt.convergence_verdict(x, rise_after_best) == rt.DEGRADING
    # A curve that fell and then flattened is converged once the last quarter is flat.
    settled = np.maximum(200 - 300 * x, 100) * (1 + noise)
    assert rt.convergence_verdict(x, settled) == rt.CONVERGED


def test_verdict_tolerance_and_too_few_points():
    x = np.linspace(0.75, 1.0, 4)
    # a straight line losing 3% (then 8%) of its level over the last quarter
    assert rt.convergence_verdict(x, 100 - 12 * (x - 0.875), total=1.0) == rt.CONVERGED
    assert rt.convergence_verdict(x, 100 - 32 * (x - 0.875), total=1.0) == rt.IMPROVING
    assert rt.convergence_verdict(x, 100 - 32 * (x - 0.875), 1.0, tolerance=0.1) == rt.CONVERGED
    # 10 points, but only 2 in the last quarter of a total of 2.0: too few to call it
    early = np.linspace(0.1, 1.6, 10)
    assert rt.convergence_verdict(early, 100 - early, total=2.0) == rt.UNKNOWN_CONVERGENCE
    assert rt.convergence_verdict([1.0, 2.0], [100.0, 90.0]) == rt.UNKNOWN_CONVERGENCE


def test_fitted_change_has_the_standard_error_of_an_ordinary_least_squares_slope():
    from scipy import stats

    rng = np.random.default_rng(3)
    x = np.linspace(0.05, 1.0, 20)
    fid = 120 - 16 * x + rng.normal(0, 2.0, x.size)
    fit = rt.last_quarter_fit(x, fid, total=1.0, scale=60.0)
    last = x >= 0.75
    ref = stats.linregress(x[last], fid[last])
    assert fit.n == last.sum() == 6
    assert fit.change == pytest.approx(ref.slope * 0.25 / 60)
    assert fit.change_se == pytest.approx(ref.stderr * 0.25 / 60)
    residuals = fid[last] - (ref.intercept + ref.slope * x[last])
    assert fit.residual_sd == pytest.approx(np.sqrt(np.sum(residuals**2) / 4) / 60)
    # too few points in the last quarter: no fit, no verdict
    assert np.isnan(rt.last_quarter_fit(x[:-4], fid[:-4], total=1.0).change)


def test_verdict_is_relative_to_the_final_fid_not_the_biased_tracked_one():
    # A GAN-like run: tracked FID@250 ~150 (small-N bias), final FID@1000 54, falling 6
    # units over the last quarter: 4% of the tracked level (converged if it were the scale),
    # 11% of the final FID the run publishes: still improving.
    x = np.linspace(0.05, 1.0, 20)
    fid = 156 - 24 * x
    assert rt.convergence_verdict(x, fid, total=1.0) == rt.CONVERGED
    assert rt.convergence_verdict(x, fid, total=1.0, scale=54.0) == rt.IMPROVING
    df = pd.DataFrame([*tracked("g", list(fid)), *evaluations("g", [60.0, 54.0])])
    df = df.assign(label=df["model"])
    runs = pd.DataFrame({"run": ["g"], "label": ["g"], "model": ["g"], "seed": [0]})
    g = rt.per_run_stability(df, runs.assign(status="ok", diverged_step=NAN)).iloc[0]
    assert g["convergence"] == rt.IMPROVING
    assert g["track_change"] == pytest.approx(-6 / 54, rel=0.05)
    # Still running, no final FID yet: relative to its last-quarter tracked FIDs' mean
    # (~132), not to the whole curve's (~143, which would call a 4.6% fall 4.2%).
    running = df[~df["metric"].isin(["fid", *SUMMARY_METRICS])]
    g = rt.tracked_stability(running).loc["g"]
    assert g["convergence"] == rt.CONVERGED
    assert g["track_change"] == pytest.approx(-6 / np.mean(fid[x >= 0.75]), rel=0.01)
    text = rp._convergence_text(pd.concat([g, pd.Series({"final_fid": NAN})]))
    assert text.startswith("converged (-4.") and text.endswith("% of tracked)")


def test_a_flat_fid_is_not_converged_while_the_recon_mse_still_falls():
    assert rt.tracked_verdict(0.01, -0.10) == rt.IMPROVING
    assert rt.tracked_verdict(0.01, 0.10) == rt.DEGRADING
    assert rt.tracked_verdict(0.01, -0.01) == rt.CONVERGED
    assert rt.tracked_verdict(0.01) == rt.CONVERGED  # nothing tracked but FID (a GAN)
    assert rt.tracked_verdict(-0.10, 0.0) == rt.IMPROVING  # FID's own verdict comes first
    assert rt.tracked_verdict(0.10, -0.20) == rt.DEGRADING
    # FID flat at 300 (the seed's dogvae at 1e14 FLOPs); recon MSE falling 0.25 -> 0.19
    steps = 10
    flat = [300.0 + (-1) ** i for i in range(steps)]
    rows = tracked("d", flat) + evaluations("d", [300.0, 300.0])
    recon = np.linspace(0.25, 0.19, steps)
    rows += [r | {"metric": "track/recon_mse", "value": v, "n": 200} for r, v in zip([r for r in rows if r["metric"] == "track/fid"], recon, strict=True)]  # fmt: skip
    df = pd.DataFrame(rows)
    g = rt.tracked_stability(df).loc["d"]
    assert abs(g["track_change"]) < rt.CONVERGENCE_TOLERANCE
    # last quarter: the points at 10 * 8, 10 * 9, 10 * 10 steps of 100; slope -0.06 / 9 per
    # point, x 2.5 points of span, over their mean 0.1967: -8.5%
    assert g["track_recon_change"] == pytest.approx(-0.06 / 9 * 2.5 / recon[-3:].mean())
    assert g["track_recon_change_se"] == pytest.approx(0, abs=1e-9)  # an exact line
    assert g["convergence"] == rt.IMPROVING
    text = rp._convergence_text(pd.concat([g, pd.Series({"final_fid": 300.0})]))
    assert text.startswith("still improving (") and "; recon MSE -8.5% ± 0.0%)" in text
    no_recon = rt.tracked_stability(df[df["metric"] != "track/recon_mse"]).loc["d"]
    assert no_recon["convergence"] == rt.CONVERGED and np.isnan(no_recon["track_recon_change"])


# ---------------------------------------------------------------- per-run tables


def test_gap_and_collapse_from_tracked_points_at_equal_n():
    # g: two full evaluations (gap 0 by construction) but 10 tracked points at N=250 with
    # best 80 and final 140; one older point at N=1000 (a resume with another track_n) is
    # lower still and must not count.
    fid = [200, 150, 110, 90, 80, 95, 120, 130, 135, 140]
    old = tracked("g", [50.0], n=1000)[0] | {"step": 5}
    df = pd.DataFrame([old, *tracked("g", fid), *evaluations("g", [150, 150])])
    df = pd.concat([df, pd.DataFrame(evaluations("v", [120, 100]))])  # v: no tracked points
    df = df.assign(label=df["model"])
    runs = pd.DataFrame({"run": ["g", "v"], "label": ["g", "v"], "model": ["g", "v"]})
    runs = runs.assign(seed=0, status="ok", diverged_step=NAN)
    stab = rt.per_run_stability(df, runs).set_index("run")
    g, v = stab.loc["g"], stab.loc["v"]
    assert (g["track_points"], g["track_n"], g["track_best_fid"]) == (10, 250, 80)
    assert g["fid_gap"] == 60 and g["fid_gap_rel"] == pytest.approx(0.75)
    assert g["final_fid"] == 150  # the published final FID stays the full-N one
    assert g["convergence"] == rt.DEGRADING
    assert g["collapse"] and g["collapse_signal"] == "track/fid"  # 140 > 1.5 x 80
    assert g["track_fid_osc"] == pytest.approx(np.std(fid[-5:], ddof=1) / np.mean(fid[-5:]))
    # v keeps today's gap from its per-epoch fid rows, and has no verdict to give
    assert v["fid_gap"] == 0 and v["convergence"] == rt.UNKNOWN_CONVERGENCE
    assert np.isnan(v["track_points"])
    # tracked rows are not final metrics: the final table and baselines use full-N values
    assert not any(c.startswith("track/") for c in rt.final_metrics(df).columns)


def test_cumulative_costs_take_the_last_value():
    df = pd.DataFrame(tracked("g", [100.0] * 10, images_per_step=64))
    per_epoch = [{"run": "g", "epoch": e, "step": 100 * e, "metric": "cost/train_seconds"} for e in (1, 2)]  # fmt: skip
    df = pd.concat([df, pd.DataFrame(per_epoch).assign(value=[3.0, 5.0])])
    costs = rt.run_costs(df).loc["g"]
    assert costs["cost/cum_images"] == 100 * 64  # the last of 640, 1280, ..., 6400
    assert costs["cost/cum_train_flops"] == 100 * 3e9
    assert costs["cost/cum_train_seconds"] == 50
    assert costs["cost/train_seconds"] == 4  # per-epoch costs are still a mean


# ---------------------------------------------------------------- report and claims


def write_tracked_sweep(root, budget=None, converged_vae=True):
    """gan (2 seeds, rising after its best) and vae (2 seeds, flat or still falling)."""
    falling = [300, 250, 200, 170, 150, 135, 120, 110, 100, 90, 80, 70]
    flat = [300, 200, 150, 120, 105, 101, 100, 100.5, 99.5, 100, 100.3, 99.8]
    rising = [300, 200, 150, 120, 100, 110, 125, 140, 150, 160, 165, 170]
    for model, curve in (("vae", flat if converged_vae else falling), ("gan", rising)):
        for seed in (0, 1):
            shift = 5.0 * seed
            metrics = tracked("x", [v + shift for v in curve]) + evaluations("x", [curve[5] + shift, curve[-1] + shift])  # fmt: skip
            d = write_run(root, model, seed, OK, metrics)
            if budget:
                config = json.loads((d / "config.json").read_text())
                config["train"] |= budget
                config["budget_reproducible"] = not budget.get("budget_seconds")
                (d / "config.json").write_text(json.dumps(config))
    return root


def section(md: str, title: str) -> str:
    return md.split(f"## {title}")[1].split("\n## ")[0]


def test_report_shows_tracked_verdicts_totals_budget_and_plots(tmp_path):
    budget = {"budget_images": 12800, "epochs": 0}  # no epoch limit: the budget decides
    results = write_tracked_sweep(tmp_path / "r", budget=budget)
    paths = rp.write_report(results, tmp_path / "out")
    names = {p.name for p in paths}
    assert {"tracked_fid_vs_flops.png", "tracked_fid_vs_seconds.png"} <= names
    md = (tmp_path / "out" / "REPORT.md").read_text()
    assert "- **Training budget:** budget_images=12800 per run (images / FLOPs only" in md
    assert "track/recon_mse" not in md  # no run tracked it: its rule is not described
    stability = section(md, "Stability over seeds")
    assert "| converged |" in stability.splitlines()[2]
    assert stability.split("| vae |")[1].splitlines()[0].rstrip().endswith("| 2/2 |")
    assert stability.split("| gan |")[1].splitlines()[0].rstrip().endswith("| 0/2 |")
    assert "(track/fid)" in stability  # gan ended 170 > 1.5 x its best 100
    runs = section(md, "Runs")
    assert "convergence (tracked FID, N=250)" in runs
    assert "| `gan-seed0` | gan | 0 | ok | 2 |" in runs  # epochs done, no "/0"
    assert "**epochs:** no limit (the budget decides)" in md
    # each verdict with its fitted last-quarter change, relative to the run's final FID
    assert runs.count("| degrading (+") == 2 and runs.count("| converged (") == 2
    # fitted +19.5 FID units over the quarter / 170, ± its standard error (scipy's
    # linregress stderr on the last 4 points: 2.6 units / 170)
    assert "| 170 | degrading (+11.5% ± 1.5%) |" in runs
    cost = section(md, "Cost")
    # totals are the last cumulative value (120 steps x 64 images, x 3e9 FLOPs), big ones
    # in scientific notation; the seeds are identical, hence ± 0
    assert "| gan | 7680 ± 0 | 3.6e+11 ± 0 | 60 ± 0 |" in cost
    assert "![tracked_fid_vs_flops](tracked_fid_vs_flops.png)" in md
    assert "track" not in section(md, "All final metrics")  # kid_std etc. are listed there


def test_no_tracked_rows_no_tracked_plots_or_columns(tmp_path):
    from test_report import make_results

    paths = rp.write_report(make_results(tmp_path / "r"), tmp_path / "out")
    assert not {"tracked_fid_vs_flops.png", "tracked_fid_vs_seconds.png"} & {p.name for p in paths}
    md = (tmp_path / "out" / "REPORT.md").read_text().split("\n", 3)[3]  # past the path
    assert "tracked" not in md and "convergence" not in md and "Training budget" not in md


def test_wall_clock_budget_is_flagged(tmp_path):
    results = write_tracked_sweep(tmp_path / "r", budget={"budget_seconds": 600})
    md = rp.render_markdown(rp.collect(results), [])
    assert "budget_seconds=600 per run (wall-clock for 4 of 4 runs" in md


def test_claims_say_when_a_side_did_not_converge(tmp_path):
    inputs = cl.load_claim_inputs(write_tracked_sweep(tmp_path / "r", converged_vae=False))
    spread, gap = cl._spread_part(inputs, "gan", "vae"), cl._gap_part(inputs, "gan", "vae")
    assert "(gan: 0/2 seeds converged; vae: 0/2 seeds converged)" in spread.reason
    # the gap comes from the tracked points: gan 300..100..170 -> 0.7; vae falling -> 0
    assert "gan from tracked FID (N=250), vae from tracked FID (N=250)" in gap.evidence
    assert inputs.set_index("run").loc["gan-seed0", "fid_gap_rel"] == pytest.approx(0.7)
    converged = cl.load_claim_inputs(write_tracked_sweep(tmp_path / "c"))
    reason = cl.metric_part(converged, "final_fid", "gan", "vae", +1).reason
    assert reason.endswith("(gan: 0/2 seeds converged)")  # vae converged: not mentioned
