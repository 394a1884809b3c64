"""`bench report`: read a results folder, write REPORT.md and PNG plots.

REPORT.md opens with the Claims section (bench.analysis.claims: verdicts with their numbers, the
rate–distortion plot, samples per sampler, interpolation strips), then the tables and plots.

A pure reader: nothing under RESULTS changes except REPORT.md and the *.png files it
writes (into --out, default RESULTS), each by temp + rename. Safe to re-run while a sweep
is in progress: unfinished runs are listed as running and left out of the final-metric means.
Figures use matplotlib's Figure API (Agg canvas, no pyplot global state).
"""

import datetime as dt
import io
import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from PIL import Image

from bench.analysis import budget_check as bc
from bench.analysis import claims as cl
from bench.analysis.markdown import md_table
from bench.core.errors import BenchError
from bench.core.io import atomic_write, check_writable_folder, write_text
from bench.core.layout import (
    BEST_FID,
    BEST_FID_EPOCH,
    CUM_TRAIN_FLOPS,
    CUM_TRAIN_SECONDS,
    CUMULATIVE_PREFIX,
    FINAL_FID,
    TRAIN_SECONDS,
    Status,
)
from bench.metrics import registry
from bench.results import table as rt

REPORT_NAME = "REPORT.md"
# Per-run columns that are not "final metrics": fid duplicates final_fid, the rest is stability.
NOT_FINAL = {"fid", BEST_FID_EPOCH, "fid_gap", "fid_gap_rel", "collapse", "collapse_signal"}
NOT_FINAL |= set(rt.TRACK_COLUMNS)  # tracked points during training, at a small N
ARROWS = {registry.LOWER: " ↓", registry.HIGHER: " ↑"}
STATUS_COLORS = {Status.OK: "black", Status.DIVERGED: "red", Status.RUNNING: "orange"}
DPI = 120
PANELS_PER_ROW = 4
MIN_CELL_INCHES = 2.6  # an image cell's least width: room for a two-line caption


@dataclass
class ReportData:
    results_dir: Path
    runs: pd.DataFrame  # one row per run (rt.load_runs)
    metrics: pd.DataFrame  # long metrics rows of all runs (rt.load_runs)
    per_run: pd.DataFrame  # final metrics + stability, one row per run
    metric_stats: pd.DataFrame  # (label, metric) -> n, mean, std, CI, median over ok runs
    model_stats: pd.DataFrame  # label -> run counts, success rate, median gaps
    order: list[str]  # model labels in reading order
    window: int
    tolerance: float
    claim_inputs: pd.DataFrame  # per_run + beta (cl.claim_inputs)
    claims: list[cl.Claim]
    longer: pd.DataFrame | None = None  # bc.longer_budget_table, with --longer


def collect(
    results_dir: Path, window: int = 5, tolerance: float = 0.10, longer: Path | None = None
) -> ReportData:
    runs, metrics = rt.load_runs(results_dir)
    per_run = rt.per_run_table(runs, metrics, window)
    metric_stats, model_stats = rt.aggregate_over_seeds(
        per_run.drop(columns=list(rt.RUN_FACTS)), "label", tolerance
    )
    order = rt.model_order(runs)
    claim_inputs, check = cl.checked_claim_inputs(runs, per_run, longer)
    return ReportData(
        results_dir,
        runs,
        metrics,
        per_run,
        metric_stats,
        model_stats,
        order,
        window,
        tolerance,
        claim_inputs,
        cl.evaluate_claims(claim_inputs),
        check,
    )


# ---------------------------------------------------------------- formatting


def fmt(x) -> str:
    if x is None or pd.isna(x) or not np.isfinite(x):
        return "—"
    return f"{x:.0f}" if abs(x) >= 1000 else f"{x:.4g}"


def _decimals(std: float) -> int:
    """Decimals that show the std with 2 significant digits (mean rounded to match)."""
    return int(min(8, max(0, 1 - math.floor(math.log10(abs(std))))))


def fmt_mean_std(n: int, mean: float, std: float) -> str:
    """'mean ± std' over seeds; the plain value for one seed; '—' for none."""
    if n == 0 or not np.isfinite(mean):
        return "—"
    if n == 1 or not np.isfinite(std) or std <= 1e-9 * abs(mean):  # float noise of equal values
        return fmt(mean) + (" ± 0" if n > 1 else "")
    d = _decimals(std)
    return f"{mean:.{d}f} ± {std:.{d}f}"


def fmt_ci(s: pd.Series) -> str:
    if s["n"] < 2 or not np.isfinite(s["ci_half"]):
        return "—"
    d = _decimals(s["std"]) if s["std"] > 0 else 3
    return f"[{s['ci_low']:.{d}f}, {s['ci_high']:.{d}f}]"


def fid_n_label(metrics: pd.DataFrame) -> str:
    """'N=500' from the n column of FID rows; lists every N if runs used different ones."""
    n = metrics.loc[metrics["metric"].isin(registry.fid_outputs()), "n"].dropna().unique()
    if len(n) == 0:
        return "N=?"
    return "N=" + "/".join(str(int(v)) for v in sorted(n)) + (" mixed" if len(n) > 1 else "")


def column_title(metric: str, fid_n: str) -> str:
    name = registry.label(metric)
    if registry.is_fid_like(metric):
        name += f" ({fid_n})"
    arrow = ARROWS.get(registry.shown_direction(metric), "")
    return name + arrow


def _distinct(values: pd.Series) -> str:
    vals = sorted({str(v) for v in values.dropna()}, key=rt._natural_key)
    return ", ".join(vals) if vals else "—"


def _epochs_text(epochs: pd.Series) -> str:
    """train.epochs = 0 means no epoch limit: the training budget ends the run."""
    return _distinct(epochs.map(lambda e: "no limit (the budget decides)" if e == 0 else e))


# ---------------------------------------------------------------- markdown sections


def header_section(data: ReportData) -> str:
    runs, counts = data.runs, data.runs["status"].value_counts()
    status = ", ".join(f"{n} {s}" for s, n in counts.items())
    commits = _distinct(runs["commit"])
    return "\n".join(
        [
            "# dogbench report",
            "",
            f"- **Results:** `{data.results_dir}`",
            f"- **Runs:** {len(runs)} ({status}); **models:** {len(data.order)}; "
            f"**seeds:** {_distinct(runs['seed'])}",
            f"- **Dataset:** {_distinct(runs['dataset'])} (source: "
            f"{_distinct(runs['data_source'])}); **image size:** "
            f"{_distinct(runs['image_size'])} px; **epochs:** {_epochs_text(runs['epochs'])}",
            *_budget_lines(runs),
            f"- **FID:** {fid_n_label(data.metrics)} generated samples per evaluation vs the "
            f"same N real images of the {_distinct(runs['fid_split'])} split; Inception "
            f"numerics: {_distinct(runs['fid_numerics'])}; weights: "
            f"{_distinct(runs['fid_weights'])}. FID is biased upward at small N: compare "
            "values only at equal N.",
            f"- **Commit:** {commits}{' (mixed!)' if ',' in commits else ''}; "
            f"**device:** {_distinct(runs['device'])} ({_distinct(runs['device_name'])}"
            f"{_threads_text(runs)})",
            f"- **Date:** {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC (report written)",
            *[f"- **Note:** {n}" for n in [rt.unfinished_note(runs)] if n],
        ]
    )


def _budget_lines(runs: pd.DataFrame) -> list[str]:
    """The training budget line, only when some run's config set train.budget_*."""
    if "budget" not in runs or runs["budget"].isna().all():
        return []
    wall = runs.loc[runs["budget"].notna(), "budget_reproducible"].eq(False)
    note = (
        f"wall-clock for {int(wall.sum())} of {len(wall)} runs: measured seconds, not "
        "reproducible across machines"
        if wall.any()
        else "images / FLOPs only: reproducible across machines"
    )
    return [f"- **Training budget:** {_distinct(runs['budget'])} per run ({note})"]


def _threads_text(runs: pd.DataFrame) -> str:
    """'; 2 threads' from env.json's thread counts, '' when no run recorded them."""
    threads = pd.to_numeric(runs["threads"], errors="coerce").dropna()
    return f"; {_distinct(threads.astype(int))} threads" if len(threads) else ""


def _stat(data: ReportData, label: str, metric: str) -> pd.Series | None:
    s = data.metric_stats
    hit = s[(s["label"] == label) & (s["metric"] == metric)]
    return hit.iloc[0] if len(hit) else None


def _final_columns(data: ReportData, main: bool = True) -> list[str]:
    """The headline columns present (main=True), or every other final metric (main=False)."""
    s = data.metric_stats[data.metric_stats["n"] > 0]
    present, headline = set(s["metric"]), registry.headline_columns()
    if main:
        return [m for m in headline if m in present]
    return sorted(
        m
        for m in present
        if m not in (*headline, *NOT_FINAL) and not m.startswith(("osc/", rt.COST_PREFIX))
    )


def _best_means(data: ReportData, metric: str) -> float | None:
    """The best mean of a column (by its direction), if >= 2 models have a value."""
    direction = registry.shown_direction(metric)
    s = data.metric_stats
    means = s.loc[(s["metric"] == metric) & (s["n"] > 0), "mean"].dropna()
    # none and two-sided (KL) have no best: a trade-off is not bolded
    if direction not in ARROWS or len(means) < 2:
        return None
    return means.min() if direction == registry.LOWER else means.max()


def final_table_section(data: ReportData) -> str:
    table = _metrics_table(data, _final_columns(data, main=True))
    return "\n".join(
        [
            "## Final metrics",
            "",
            table,
            "",
            "Mean ± std (ddof=1) over the seeds whose run finished ok (count in *ok runs*); a "
            "plain value is a single seed. ↓ lower is better, ↑ higher is better, **bold** = "
            "best model per column; KL has no better direction. FID = at the last evaluation; "
            "best FID = minimum over evaluation epochs, selected on the evaluation metric "
            "itself, hence optimistic. `@gmm` = samples from a 10-component Gaussian mixture "
            "fitted to the training latents instead of N(0, I). sharpness = Laplacian variance "
            "of samples / of real images (1 = as sharp as real); interp_cv = unevenness of "
            "latent interpolations (lower = smoother).",
        ]
    )


def all_metrics_section(data: ReportData) -> str:
    cols = _final_columns(data, main=False)
    if not cols:
        return ""
    return "\n".join(["## All final metrics", "", _metrics_table(data, cols)])


def _metrics_table(data: ReportData, cols: list[str]) -> str:
    fid_n = fid_n_label(data.metrics)
    best = {m: _best_means(data, m) for m in cols}
    stats_by_label = data.model_stats.set_index("label")
    rows = []
    for label in data.order:
        ms = stats_by_label.loc[label]
        ms = {k: int(v) if k.startswith("n_") else v for k, v in ms.items()}
        row = [label, f"{ms['n_ok']}/{ms['n_runs']}"]
        for m in cols:
            s = _stat(data, label, m)
            text = fmt_mean_std(s["n"], s["mean"], s["std"]) if s is not None else "—"
            row.append(f"**{text}**" if s is not None and s["mean"] == best[m] else text)
        rows.append(row)
    header = ["model", "ok runs", *(column_title(m, fid_n) for m in cols)]
    return md_table(header, rows)


def _oscillation_cell(data: ReportData, label: str) -> str:
    s = data.metric_stats
    osc = s[(s["label"] == label) & s["metric"].str.startswith("osc/") & (s["n"] > 0)]
    losses = osc[osc["metric"].str.endswith("loss")]
    osc = losses if len(losses) else osc
    return ", ".join(
        f"{m.removeprefix('osc/')} {v:.3f}" for m, v in zip(osc["metric"], osc["mean"], strict=True)
    )


def has_tracked(data: ReportData) -> bool:
    """Whether some run recorded tracked points (the tracked columns and plots need them)."""
    return "track_points" in data.per_run and bool(data.per_run["track_points"].notna().any())


def has_tracked_recon(data: ReportData) -> bool:
    """Whether some run's verdict had a tracked recon MSE fit (track/recon_mse)."""
    return has_tracked(data) and bool(data.per_run["track_recon_change"].notna().any())


def track_n_label(data: ReportData) -> str:
    """'N=250' for the tracked points (each run's at one N, rt.tracked_fid)."""
    n = data.per_run["track_n"].dropna().unique() if has_tracked(data) else []
    return "N=" + "/".join(str(int(v)) for v in sorted(n)) + (" mixed" if len(n) > 1 else "")


def _tracked_cells(data: ReportData, label: str) -> list[str]:
    """[mean tracked-FID oscillation over ok seeds, 'k/n converged' over ok seeds]."""
    runs = data.per_run[(data.per_run["label"] == label) & (data.per_run["status"] == Status.OK)]
    osc = runs["track_fid_osc"].dropna()
    n_conv = int((runs["convergence"] == rt.CONVERGED).sum())
    return [f"{osc.mean():.3f}" if len(osc) else "—", f"{n_conv}/{len(runs)}" if len(runs) else "—"]


def _tracked_note(data: ReportData) -> str:
    return (
        f"Runs with tracked points ({track_n_label(data)}, FID during training): their *gap* "
        "is the final − best tracked FID, all at that N; *collapse* also flags a tracked FID "
        f"ending over {rt.COLLAPSE_FID_RISE:.0%} above its best (track/fid). *tracked FID "
        f"oscillation*: std / mean of the last {data.window} tracked FIDs. *converged*: ok seeds "
        "whose tracked FID, by a least-squares line through the points of the last "
        f"{rt.LAST_SHARE:.0%} of training (images seen, else steps), changed by less than "
        f"{rt.CONVERGENCE_TOLERANCE:.0%} of the run's final FID (a change in FID units carries "
        "across N, the small-N bias being roughly additive; *of tracked*: a run without a "
        "final FID yet, relative to its last-quarter tracked FIDs; needs "
        f"{rt.MIN_LAST_POINTS} points there; the Runs table gives each verdict and change "
        "± the fitted change's standard error, from the points' scatter around the line: "
        "still improving = falling, degrading = rising after its best)." + _recon_note(data)
    )


def _recon_note(data: ReportData) -> str:
    if not has_tracked_recon(data):
        return ""
    return (
        " For a model with an encoder the held-out recon MSE is tracked too (track/recon_mse, "
        "on the first N held-out images, N as the tracked FID's or the held-out count if "
        "smaller): a run whose FID passes is converged only if its recon MSE, by the same "
        "fit relative to its last-quarter mean, passes as well, else that change gives the "
        "verdict."
    )


def stability_section(data: ReportData) -> str:
    fid_n, rows, tracked = fid_n_label(data.metrics), [], has_tracked(data)
    for label in data.order:
        ms = data.model_stats.set_index("label").loc[label]
        ms = {k: int(v) if k.startswith("n_") else v for k, v in ms.items()}
        fid = _stat(data, label, FINAL_FID)
        running = f" ({ms['n_running']} running)" if ms["n_running"] else ""
        success = (
            f"{ms['n_success']}/{ms['n_finished']} ({ms['success_rate']:.0%})"
            if ms["n_finished"]
            else "—"
        )
        gap = ms["median_fid_gap"]
        gap_text = f"{gap:+.3g} ({ms['median_fid_gap_rel']:+.0%})" if np.isfinite(gap) else "—"
        fid_text = fmt_mean_std(fid["n"], fid["mean"], fid["std"]) if fid is not None else "—"
        ci_text = fmt_ci(fid) if fid is not None else "—"
        osc = _oscillation_cell(data, label) or "—"
        rows.append(
            [label, f"{ms['n_runs']}{running}", ms["n_diverged"], success]
            + [fid_text, ci_text, gap_text, osc, _collapse_cell(data, label)]
            + (_tracked_cells(data, label) if tracked else [])
        )
    header = ["model", "seeds", "diverged", f"success (±{data.tolerance:.0%})"]
    header += [f"final FID ({fid_n}) ↓", "95% CI", "median gap final−best", "loss oscillation"]
    header += ["collapse"]
    header += ["tracked FID oscillation", "converged"] if tracked else []
    return "\n".join(
        [
            "## Stability over seeds",
            "",
            md_table(header, rows),
            "",
            f"*success*: run finished ok with final FID within {data.tolerance:.0%} of the best "
            "seed's final FID of that model, over finished (ok + diverged) runs. *95% CI*: "
            "Student-t interval of the mean final FID (undefined for one seed). *median gap*: "
            "final − best FID over epochs (relative to best). *loss oscillation*: std / mean|x| "
            f"of the epoch-mean train losses over the last {data.window} epochs, mean over ok "
            "seeds (0 = flat; large = swinging, typical of unstable GAN training). *collapse*: "
            "seeds whose recall, coverage or sample diversity ended below half its best value "
            "over the evaluations (signals that fell in brackets).",
            *(["", _tracked_note(data)] if tracked else []),
        ]
    )


def _collapse_cell(data: ReportData, label: str) -> str:
    runs = data.per_run[data.per_run["label"] == label]
    if "collapse" not in runs or runs["collapse"].isna().all():
        return "—"
    flagged = runs[runs["collapse"].fillna(False).astype(bool)]
    signals = sorted({s for v in flagged["collapse_signal"] for s in str(v).split(",") if s})
    text = f"{len(flagged)}/{runs['collapse'].notna().sum()}"
    return text + (f" ({', '.join(signals)})" if signals else "")


def cost_section(data: ReportData) -> str:
    s = data.metric_stats[data.metric_stats["metric"].str.startswith(rt.COST_PREFIX)]
    cols = sorted(set(s.loc[s["n"] > 0, "metric"]))
    if not cols:
        return ""
    rows = []
    for label in data.order:
        cells = [(m, _stat(data, label, m)) for m in cols]
        rows.append([label] + [_cost_cell(m, c["n"], c["mean"], c["std"]) for m, c in cells])
    totals = [registry.label(m) for m in cols if m.startswith(CUMULATIVE_PREFIX)]
    return "\n".join(
        [
            "## Cost",
            "",
            md_table(["model", *(registry.label(m) for m in cols)], rows),
            "",
            "Per run: mean over epochs (run wall: sum over epochs of training, evaluation and "
            "pictures; setup and checkpoint writes excluded; eval share of wall: seconds spent "
            "evaluating over the run wall, a fraction); then mean ± std over "
            "ok seeds. "
            "CPU-s counts every thread of the process. With train.compile, epoch 1 includes "
            "compilation. Times depend on the device and on other load on it."
            + (
                f" {', '.join(totals)}: the run's total (its last cumulative value), not a mean."
                if totals
                else ""
            ),
        ]
    )


def _cost_cell(metric: str, n: int, mean: float, std: float) -> str:
    """fmt_mean_std; run totals (FLOPs ~1e15, images ~1e6) in scientific notation."""
    if not metric.startswith(CUMULATIVE_PREFIX) or n == 0 or not abs(mean) >= 1e5:
        return fmt_mean_std(n, mean, std)
    if n == 1 or not np.isfinite(std) or std <= 1e-9 * abs(mean):
        return f"{mean:.3g}" + (" ± 0" if n > 1 else "")
    return f"{mean:.3g} ± {std:.2g}"


def _status_text(r: pd.Series) -> str:
    if r["status"] == Status.DIVERGED:
        step = "" if pd.isna(r["diverged_step"]) else f" at step {int(r['diverged_step'])}"
        reason = r["reason"] if isinstance(r["reason"], str) else ""
        reason = reason.replace(step, "")  # bench run writes "d_loss=nan at step 345"
        return f"**diverged**{step}" + (f" ({reason})" if reason else "")
    return str(r["status"])


def _convergence_text(r: pd.Series) -> str:
    """The run's verdict and its last-quarter change ± the change's standard error, e.g.
    "converged (-3.1% ± 0.8%)"; "of tracked" when the run has no final FID yet to be
    relative to (rt.verdict_scale); then the tracked recon MSE's change where there is one,
    "still improving (-0.7% ± 0.5%; recon MSE -15.0% ± 1.2%)"."""
    change, se = r.get("track_change", np.nan), r.get("track_change_se", np.nan)
    if not np.isfinite(change):
        return r["convergence"]
    of = "" if rt.verdict_scale(r[FINAL_FID]) else " of tracked"
    text = _change_text(change, se) + of
    recon = r.get("track_recon_change", np.nan)
    if np.isfinite(recon):
        text += "; recon MSE " + _change_text(recon, r.get("track_recon_change_se", np.nan))
    return f"{r['convergence']} ({text})"


def _change_text(change: float, se: float) -> str:
    return f"{change:+.1%}" + (f" ± {se:.1%}" if np.isfinite(se) else "")


def runs_section(data: ReportData) -> str:
    rank = {label: i for i, label in enumerate(data.order)}
    runs = data.per_run.assign(_rank=data.per_run["label"].map(rank))
    rows, tracked = [], has_tracked(data)
    for _, r in runs.sort_values(["_rank", "seed", "run"]).iterrows():
        done = "—" if pd.isna(r["epochs_done"]) else str(int(r["epochs_done"]))
        total = "?" if pd.isna(r["epochs"]) else str(int(r["epochs"]))
        epochs = done if total == "0" else f"{done}/{total}"  # 0: the budget ended the run
        best = fmt(r[BEST_FID])
        if np.isfinite(r[BEST_FID_EPOCH]):
            best += f" (epoch {int(r[BEST_FID_EPOCH])})"
        seed = "—" if pd.isna(r["seed"]) else str(int(r["seed"]))
        rows.append(
            [f"`{r['run']}`", r["label"], seed, _status_text(r), epochs, best]
            + [fmt(r[FINAL_FID])]
            + ([_convergence_text(r)] if tracked else [])
        )
    fid_n = fid_n_label(data.metrics)
    header = ["run", "model", "seed", "status", "epochs", f"best FID ({fid_n})", "final FID"]
    measures = "tracked FID" + (" and held-out recon MSE" if has_tracked_recon(data) else "")
    header += [f"convergence ({measures}, {track_n_label(data)})"] if tracked else []
    return "## Runs\n\n" + md_table(header, rows)


PLOT_CAPTIONS = {
    "fid_vs_epoch.png": "FID vs epoch: line = mean over non-diverged seeds, band = ±1 std, "
    "faint lines = single seeds (diverged ones included).",
    "final_fid_by_model.png": "Final FID per model: box over ok seeds, one dot per run "
    "coloured by status.",
    "fid_vs_compute.png": "FID against cumulative training seconds per run (cost/train_seconds; "
    "evaluation time excluded): compare models at an equal compute budget.",
    "losses.png": "Training losses (epoch means) per term, mean over non-diverged seeds ± 1 std.",
    "samples.png": "Samples from the final model of each model's first ok seed.",
    "reconstructions.png": "Reconstructions (AE/VAE): rows alternate real / reconstruction.",
}


# Listed only when written: results without tracked points have no such plot to wait for.
TRACKED_CAPTIONS = {
    "tracked_fid_vs_flops.png": "Tracked FID (small N, during training) against cumulative "
    "training FLOPs (cost/cum_train_flops), one line per run, a marker per tracked point: "
    "quality at equal compute, the same on every machine.",
    "tracked_fid_vs_seconds.png": "Tracked FID against cumulative training seconds "
    "(cost/cum_train_seconds; evaluation excluded), one line per run: machine-dependent.",
}


def plots_section(written: list[str]) -> str:
    lines = ["## Plots", ""]
    for name, caption in PLOT_CAPTIONS.items():
        title = name.removesuffix(".png")
        if name in written:
            lines += [f"![{title}]({name})", "", f"*{caption}*", ""]
        else:
            lines += [f"*{title}: no data yet.*", ""]
        if name == "fid_vs_compute.png":
            for tracked, text in TRACKED_CAPTIONS.items():
                if tracked in written:
                    lines += [f"![{tracked.removesuffix('.png')}]({tracked})", "", f"*{text}*", ""]
    return "\n".join(lines).rstrip()


CLAIM_FIGURES = {
    "rate_distortion.png": "Rate–distortion over β: held-out KL (nats per image) vs held-out "
    "recon MSE; small dots = seeds, large dots = mean per β (line in β order); dashed = AE "
    "recon MSE (an AE has no KL).",
    "samples_by_sampler.png": "Samples per model and sampler (first ok seed): prior = N(0, I) "
    "draws decoded; gmm / gaussian = draws from a density fitted to the training latents.",
    "interpolations.png": "Latent interpolations (first ok seed): each row decodes a straight "
    "line between two codes; interp_cv = variation of consecutive-frame distances (lower = "
    "smoother).",
}


def claims_section(data: ReportData, written: list[str]) -> str:
    lines = ["## Claims", "", cl.format_markdown(data.claims), "", cl.DECISION_RULE, ""]
    for name, caption in CLAIM_FIGURES.items():
        title = name.removesuffix(".png")
        if name in written:
            lines += [f"![{title}]({name})", "", f"*{caption}*", ""]
        elif name == "rate_distortion.png":
            lines += ["*rate_distortion: no VAE run with both kl_nats and recon_mse yet.*", ""]
    return "\n".join(lines).rstrip()


def longer_section(data: ReportData) -> str:
    """The longer-budget check (bench.analysis.budget_check), with --longer."""
    if data.longer is None:
        return ""
    rows = [
        [r.label, r.seed, f"{r.budget_ratio:.2f}×", fmt(r.fid), fmt(r.fid_longer)]
        + [f"{r.change_rel:+.1%}" if np.isfinite(r.change_rel) else "—"]
        + [r.convergence or "—", r.convergence_longer or "—", r.verdict]
        for r in data.longer.itertuples(index=False)
    ]
    header = ["model", "seed", "longer budget", "final FID", "final FID, longer", "change"]
    header += ["tracked verdict", "tracked verdict, longer", "verdict"]
    short = [f"{r[0]} ({r[-1]})" for r in rows if r[-1] != rt.CONVERGED]
    return "\n".join(
        [
            "## Longer budget: convergence check",
            "",
            md_table(header, rows),
            "",
            "The same model and seed trained again at a larger budget (*longer budget*: "
            "training FLOPs, else images or epochs, of the longer run / this one). *verdict*: "
            f"{rt.CONVERGED!r} when the final FID moved by less than "
            f"{bc.LONGER_TOLERANCE:.0%}, else {rt.IMPROVING!r} (it fell) or {rt.DEGRADING!r} "
            "(it rose); *tracked verdict*: each run's own, from its tracked points. "
            + (
                f"Not converged at this budget: {', '.join(short)}."
                if short
                else "Every model checked had converged by this measure."
            ),
        ]
    )


def render_markdown(data: ReportData, written: list[str]) -> str:
    sections = [
        header_section(data),
        claims_section(data, written),
        final_table_section(data),
        stability_section(data),
        longer_section(data),
        cost_section(data),
        plots_section(written),
        runs_section(data),
        all_metrics_section(data),
    ]
    return "\n\n".join(s for s in sections if s) + "\n"


# ---------------------------------------------------------------- figures


def _palette(labels: list[str], present) -> dict:
    colors = sns.color_palette("tab10" if len(labels) <= 10 else "husl", len(labels))
    return {lab: c for lab, c in zip(labels, colors, strict=True) if lab in set(present)}


def _with_status(metrics: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    return metrics.merge(runs[["run", "status"]], on="run", how="left")


def plot_fid_vs_epoch(data: ReportData) -> Figure | None:
    fid = _with_status(data.metrics, data.runs)
    fid = fid[(fid["metric"] == "fid") & np.isfinite(fid["value"])]
    if fid.empty:
        return None
    palette, fid_n = _palette(data.order, fid["label"]), fid_n_label(data.metrics)
    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.subplots()
    common = dict(x="epoch", y="value", hue="label", hue_order=list(palette), palette=palette)
    sns.lineplot(fid, **common, units="run", estimator=None, alpha=0.3, lw=0.8, legend=False, ax=ax)
    steady = fid[fid["status"] != Status.DIVERGED]
    if len(steady):
        sns.lineplot(steady, **common, errorbar="sd", marker="o", ax=ax)
        ax.legend(title="model")
    ax.set(
        title=f"FID vs epoch ({fid_n}), mean ± 1 std over seeds",
        xlabel="epoch",
        ylabel=f"FID ({fid_n}), lower is better",
    )
    return fig


def plot_fid_vs_compute(data: ReportData) -> Figure | None:
    """FID against cumulative training CPU/GPU-seconds: "which model at equal budget"."""
    m = _with_status(data.metrics, data.runs)
    secs = m[m["metric"] == TRAIN_SECONDS].sort_values("epoch")
    secs = secs.assign(value=secs.groupby("run")["value"].cumsum())[["run", "epoch", "value"]]
    fid = m[(m["metric"] == "fid") & np.isfinite(m["value"])]
    both = fid.merge(secs, on=["run", "epoch"], suffixes=("", "_seconds"))
    if both.empty:
        return None
    palette, fid_n = _palette(data.order, both["label"]), fid_n_label(data.metrics)
    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.subplots()
    sns.lineplot(
        both,
        x="value_seconds",
        y="value",
        hue="label",
        hue_order=list(palette),
        palette=palette,
        units="run",
        estimator=None,
        marker="o",
        ax=ax,
    )
    ax.legend(title="model")
    device = _distinct(data.runs["device"]) if "device" in data.runs else "device"
    ax.set(
        title=f"FID vs training compute ({fid_n}), one line per run",
        xlabel=f"cumulative training seconds on {device}{_threads_text(data.runs)} "
        "(evaluation excluded)",
        ylabel=f"FID ({fid_n}), lower is better",
    )
    return fig


def plot_tracked_fid(data: ReportData, counter: str, xlabel: str) -> Figure | None:
    """Tracked FID (rt.tracked_fid, one N per run) against a cumulative counter: one line
    per run coloured by model, a marker per tracked point; None without such points."""
    points = rt.tracked_fid(data.metrics).dropna(subset=[counter])
    if points.empty:
        return None
    palette, track_n = _palette(data.order, points["label"]), track_n_label(data)
    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.subplots()
    for _, g in points.groupby("run", sort=False):
        label = g["label"].iloc[0]
        ax.plot(g[counter], g["value"], marker="o", ms=3.5, lw=1, color=palette[label], alpha=0.8)
    handles = [Line2D([], [], color=c, marker="o", label=lab) for lab, c in palette.items()]
    ax.legend(handles=handles, title="model")
    ax.set(
        title=f"Tracked FID ({track_n}) vs {xlabel}, one line per run",
        xlabel=xlabel,
        ylabel=f"tracked FID ({track_n}), lower is better",
    )
    return fig


@contextmanager
def _fixed_global_numpy_seed(seed: int = 0):
    """numpy's global generator seeded inside, restored after: a plot that draws from it
    (stripplot's jitter) comes out the same on every run of bench report."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def plot_final_fid(data: ReportData) -> Figure | None:
    runs = data.per_run[np.isfinite(data.per_run[FINAL_FID])]
    if runs.empty:
        return None
    palette, fid_n = _palette(data.order, runs["label"]), fid_n_label(data.metrics)
    fig = Figure(figsize=(7.5, 1.5 + 0.6 * len(palette)), layout="constrained")
    ax = fig.subplots()
    ok = runs[runs["status"] == Status.OK]
    common = dict(x=FINAL_FID, y="label", order=list(palette), ax=ax)
    if len(ok):
        sns.boxplot(ok, **common, hue="label", palette=palette, fill=False, showfliers=False)
    status_colors = {s: STATUS_COLORS.get(s, "gray") for s in runs["status"].unique()}
    with _fixed_global_numpy_seed():  # seaborn 0.13 jitters with np.random.uniform
        sns.stripplot(runs, **common, hue="status", palette=status_colors, size=7, jitter=0.15)
    ax.set(
        title=f"Final FID per model over seeds ({fid_n})",
        xlabel=f"final FID ({fid_n}), lower is better",
        ylabel="",
    )
    return fig


def plot_losses(data: ReportData) -> Figure | None:
    train = _with_status(data.metrics, data.runs)
    train = train[train["metric"].str.startswith(rt.TRAIN_PREFIX) & np.isfinite(train["value"])]
    train = train[train["status"] != Status.DIVERGED]
    if train.empty:
        return None
    terms = sorted(train["metric"].unique())
    ncols = min(3, len(terms))
    nrows = math.ceil(len(terms) / ncols)
    palette = _palette(data.order, train["label"])
    fig = Figure(figsize=(4.3 * ncols, 3.0 * nrows + 1.0), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, term in zip(axes, terms, strict=False):
        sub = train[train["metric"] == term]
        pal = {k: v for k, v in palette.items() if k in set(sub["label"])}
        sns.lineplot(
            sub,
            x="epoch",
            y="value",
            hue="label",
            hue_order=list(pal),
            palette=pal,
            errorbar="sd",
            legend=False,
            ax=ax,
        )
        ax.set(title=term, xlabel="epoch", ylabel="epoch mean")
        # Losses of different models can differ by orders of magnitude (sum vs mean NLL).
        if (sub["value"] > 0).all() and sub["value"].max() > 100 * sub["value"].min():
            ax.set_yscale("log")
    for ax in axes[len(terms) :]:
        ax.set_axis_off()
    handles = [Line2D([], [], color=c, label=lab) for lab, c in palette.items()]
    fig.legend(
        handles=handles, title="model", loc="outside lower center", ncols=min(5, len(handles))
    )
    fig.suptitle("Training losses per term: mean over seeds ± 1 std")
    return fig


def _pick_image(runs: pd.DataFrame, pattern: str) -> pd.Series | None:
    """The run whose image (a file name or glob pattern) is shown for a model: an ok run
    first, then the lowest seed."""
    runs = runs.assign(_not_ok=runs["status"] != Status.OK).sort_values(["_not_ok", "seed", "run"])
    for _, r in runs.iterrows():
        if any(p.is_file() for p in Path(r["path"]).glob(pattern)):
            return r
    return None


def plot_image_panels(data: ReportData, filename: str, title: str, metric: str) -> Figure | None:
    panels = []
    for label in data.order:
        r = _pick_image(data.per_run[data.per_run["label"] == label], filename)
        if r is None:
            continue
        try:
            image = np.asarray(Image.open(Path(r["path"]) / filename).convert("RGB"))
        except OSError:  # being written or truncated: skip this model for now
            continue
        value = fmt(r[metric]) if metric in r else "—"
        note = f"seed {int(r['seed'])} ({r['status']}), {registry.label(metric)} {value}"
        panels.append((f"{label}\n{note}", image))
    if not panels:
        return None
    rows = [panels[i : i + PANELS_PER_ROW] for i in range(0, len(panels), PANELS_PER_ROW)]
    return _image_grid(rows, title)


def plot_rate_distortion(data: ReportData) -> Figure | None:
    grid = cl.beta_grid(data.claim_inputs)
    if not {"kl_nats", "recon_mse"} <= set(grid.columns):
        return None
    grid = grid[
        (grid["status"] == Status.OK) & np.isfinite(grid[["kl_nats", "recon_mse"]]).all(axis=1)
    ]
    if grid.empty:
        return None
    betas = sorted(set(grid["beta"].astype(float)))
    colors = dict(zip(betas, sns.color_palette("viridis", len(betas)), strict=True))
    fig = Figure(figsize=(7.0, 4.8), layout="constrained")
    ax = fig.subplots()
    means = grid.groupby("beta")[["kl_nats", "recon_mse"]].mean().sort_index()
    ax.plot(means["kl_nats"], means["recon_mse"], color="gray", lw=1, zorder=1)
    for beta, g in grid.groupby("beta"):
        ax.scatter(g["kl_nats"], g["recon_mse"], color=colors[beta], s=18, alpha=0.6)
        m = means.loc[beta]
        ax.scatter(m["kl_nats"], m["recon_mse"], color=colors[beta], s=70, edgecolor="black")
        ax.annotate(f"β={beta:g}", (m["kl_nats"], m["recon_mse"]), xytext=(6, 4),
                    textcoords="offset points")  # fmt: skip
    try:
        ae_mse = cl.values(
            data.claim_inputs, cl.reference_label(data.claim_inputs, "ae"), "recon_mse"
        )
    except cl.Missing:
        ae_mse = None
    if ae_mse is not None:
        level = float(np.mean(ae_mse))
        ax.axhline(level, ls="--", color="black", lw=1, label=f"AE recon MSE {fmt(level)} (no KL)")
        ax.legend(loc="upper right")
    ax.set(
        title="Rate–distortion over β (one small dot per β and seed)",
        xlabel="rate: KL(q(z|x) ‖ p(z)), nats per image (held-out)",
        ylabel="distortion: recon MSE (held-out), lower is better",
    )
    return fig


def _sampler_images(run_dir: Path) -> dict[str, Path]:
    """{'prior': samples.png, 'gmm': samples@gmm.png, ...} of one run folder."""
    found = {"prior": run_dir / "samples.png"} if (run_dir / "samples.png").is_file() else {}
    for path in sorted(run_dir.glob("samples@*.png")):
        found[path.stem.partition("@")[2]] = path
    return found


def _read_image(path: Path) -> np.ndarray | None:
    try:
        return np.asarray(Image.open(path).convert("RGB"))
    except OSError:  # being written or truncated: skip it for now
        return None


def _image_grid(
    cells: list[list[tuple[str, np.ndarray | None]]], title: str, cell_width: float | None = None
) -> Figure:
    """Rows of (caption, image) cells; a None image leaves its cell empty, saying so. By
    default a cell is as wide as the widest image at DPI (at least MIN_CELL_INCHES, for the
    caption): pixels are drawn as they are, not resampled, which also keeps the PNG small."""
    widths = [im.shape[1] for r in cells for _, im in r if im is not None]
    if cell_width is None:
        cell_width = max(MIN_CELL_INCHES, max(widths, default=0) / DPI)
    nrows, ncols = len(cells), max(len(r) for r in cells)
    shapes = [im.shape for r in cells for _, im in r if im is not None]
    aspect = max((h / w for h, w, *_ in shapes), default=1.0)
    height = (cell_width * aspect + 0.5) * nrows + 0.4
    fig = Figure(figsize=(cell_width * ncols, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for row, ax_row in zip(cells, axes, strict=True):
        for (caption, image), ax in zip(row, ax_row, strict=False):
            if image is not None:
                ax.imshow(image, interpolation="nearest")
            else:
                ax.text(0.5, 0.5, "not recorded", ha="center", va="center", color="gray")
            ax.set_title(caption, fontsize=9)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.suptitle(title)
    return fig


def plot_samples_by_sampler(data: ReportData) -> Figure | None:
    """One row per model, one column per sampler; only when some run has samples@*.png."""
    picked = {}
    for label in data.order:
        runs = data.per_run[data.per_run["label"] == label]
        r = _pick_image(runs, "samples@*.png")
        r = r if r is not None else _pick_image(runs, "samples.png")
        if r is not None:
            picked[label] = (r, _sampler_images(Path(r["path"])))
    samplers = sorted({s for _, found in picked.values() for s in found} - {"prior"})
    if not samplers:
        return None
    cells = []
    for label, (r, found) in picked.items():
        row = []
        for sampler in ["prior", *samplers]:
            metric = "fid" if sampler == "prior" else f"fid@{sampler}"
            image = _read_image(found[sampler]) if sampler in found else None
            value = fmt(r[metric]) if metric in r else "—"
            row.append(
                (f"{label}, {sampler}" + (f"\nFID {value}" if image is not None else ""), image)
            )
        cells.append(row)
    return _image_grid(cells, f"Samples per model and sampler ({fid_n_label(data.metrics)})")


def plot_interpolations(data: ReportData) -> Figure | None:
    cells = []
    for label in data.order:
        r = _pick_image(data.per_run[data.per_run["label"] == label], "interpolation.png")
        image = _read_image(Path(r["path"]) / "interpolation.png") if r is not None else None
        if image is not None:
            cv = fmt(r["interp_cv"]) if "interp_cv" in r else "—"
            cells.append([(f"{label}, seed {int(r['seed'])}: interp_cv {cv}", image)])
    # Strips are wide (frames side by side): one full-width row per model.
    return _image_grid(cells, "Latent interpolations", cell_width=9.0) if cells else None


def make_figures(data: ReportData) -> dict[str, Figure | None]:
    return {
        "rate_distortion.png": plot_rate_distortion(data),
        "samples_by_sampler.png": plot_samples_by_sampler(data),
        "interpolations.png": plot_interpolations(data),
        "fid_vs_epoch.png": plot_fid_vs_epoch(data),
        "fid_vs_compute.png": plot_fid_vs_compute(data),
        "tracked_fid_vs_flops.png": plot_tracked_fid(
            data, CUM_TRAIN_FLOPS, "cumulative training FLOPs"
        ),
        "tracked_fid_vs_seconds.png": plot_tracked_fid(
            data,
            CUM_TRAIN_SECONDS,
            f"cumulative training seconds on {_distinct(data.runs['device'])}"
            f"{_threads_text(data.runs)}",
        ),
        "final_fid_by_model.png": plot_final_fid(data),
        "losses.png": plot_losses(data),
        "samples.png": plot_image_panels(data, "samples.png", "Samples", FINAL_FID),
        "reconstructions.png": plot_image_panels(
            data, "recon.png", "Reconstructions (rows: real / reconstruction)", "recon_mse"
        ),
    }


def save_figure(fig: Figure, path: Path) -> None:
    """PNG at DPI, as RGB (the figures are opaque: matplotlib's alpha channel only adds a
    quarter to sample grids, which barely compress), deflated as far as PIL goes."""

    def write(tmp: str) -> None:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=DPI)
        Image.open(buffer).convert("RGB").save(tmp, format="png", optimize=True)

    atomic_write(path, write)


# ---------------------------------------------------------------- command


def write_report(
    results_dir: str | Path,
    out_dir: str | Path | None = None,
    window: int = 5,
    tolerance: float = 0.10,
    longer: str | Path | None = None,
) -> list[Path]:
    """Write out_dir/REPORT.md and its PNG plots; returns the written paths. ``longer``: a
    repeat of some runs at a larger budget (bench.analysis.budget_check)."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise BenchError(
            f"results path {results_dir} is not a folder; expected a folder written by bench run --out"
        )
    out_dir = Path(out_dir) if out_dir is not None else results_dir
    check_writable_folder(out_dir, "--out")  # before the plots are drawn: one line, not a traceback
    data = collect(results_dir, window, tolerance, None if longer is None else Path(longer))
    written = []
    for name, fig in make_figures(data).items():
        if fig is not None:
            save_figure(fig, out_dir / name)
            written.append(name)
    write_text(out_dir / REPORT_NAME, render_markdown(data, written))
    return [out_dir / REPORT_NAME] + [out_dir / n for n in written]


@click.command("report")
@click.argument("results", default="results", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder for REPORT.md and the PNG plots  [default: RESULTS]",
)
@click.option(
    "--window",
    default=5,
    show_default=True,
    type=click.IntRange(min=2),
    help="Last epochs used for the loss-oscillation measure.",
)
@click.option(
    "--tolerance",
    default=0.10,
    show_default=True,
    type=click.FloatRange(min=0),
    help="A seed succeeds if its final FID is within this relative tolerance of the best seed.",
)
@bc.longer_option
def report_command(
    results: Path, out_dir: Path | None, window: int, tolerance: float, longer: Path | None
) -> None:
    """Summarise the runs under RESULTS (one sweep or a parent of several) into REPORT.md
    and PNG plots. Only reads RESULTS (and --longer); writes nothing there but the report
    files."""
    paths = write_report(results, out_dir, window, tolerance, longer)
    click.echo(f"wrote {paths[0]} and {len(paths) - 1} plots")
