"""The one reader of results folders, and the aggregation of its tables over seeds.

Reads the layout `bench run` writes (bench.core.layout). Every command (report, claims,
baseline, check, the sweep summary) finds runs with `find_run_dirs`, takes "the final value
of a metric" from `final_metrics` and treats unfinished runs (`unfinished`) alike: listed,
never part of a final value. Everything after `load_runs` is a pure function of DataFrames,
so the numbers in REPORT.md can be recomputed and unit-tested without files.
"""

import math
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

from bench.core.config import TRAINING_LENGTH_KEYS, with_new_defaults
from bench.core.errors import BenchError
from bench.core.io import read_json
from bench.core.layout import (
    BEST_FID,
    BEST_FID_EPOCH,
    BUDGET_REPRODUCIBLE,
    CONFIG_FILE,
    COST_PREFIX,
    CUM_IMAGES,
    CUM_TRAIN_FLOPS,
    CUM_TRAIN_SECONDS,
    CUMULATIVE_PREFIX,
    ENV_FILE,
    EPOCH_WALL_SECONDS,
    ERROR_FILE,
    EVAL_SECONDS,
    EVAL_SHARE,
    FINAL_FID,
    FINISHED,
    METRICS_FILE,
    RUN_SECONDS,
    STATUS_FILE,
    SUMMARY_METRICS,
    TRACK_FID,
    TRACK_PREFIX,
    TRACK_RECON,
    TRACK_SECONDS,
    TRAIN_PREFIX,
    TRAIN_SECONDS,
    Status,
)

ID_COLUMNS = ("run", "label", "model", "model_name", "seed", "status")
METRICS_COLUMNS = ("run", "label", "model", "model_name", "seed", "epoch", "step", "metric")
# Keys looked up (anywhere in the nested dicts) for header facts; first hit wins.
COMMIT_KEYS = ("git_commit", "commit", "git_sha", "sha")
FID_WEIGHTS_KEYS = ("fid_weights", "fid_weights_source", "weights_source", "inception_weights")


def find_run_dirs(results_dir: Path) -> list[Path]:
    """Run folders anywhere under results_dir (a sweep folder or a parent of sweeps): a
    config.json next to a metrics.csv, a status.json or an error file.

    status.json or the error file alone count too, so a run that started but has not
    finished its first epoch (or crashed in it) is listed instead of being silently absent.
    """
    found = {
        p.parent
        for p in Path(results_dir).rglob(CONFIG_FILE)
        if any((p.parent / f).is_file() for f in (METRICS_FILE, STATUS_FILE, ERROR_FILE))
    }
    return sorted(found)


def find_key(obj, keys: tuple[str, ...]):
    """First value stored under one of `keys` in nested dicts (breadth first), else None."""
    queue = [obj]
    while queue:
        d = queue.pop(0)
        if not isinstance(d, dict):
            continue
        for k in keys:
            if d.get(k) not in (None, ""):
                return d[k]
        queue.extend(v for v in d.values() if isinstance(v, dict))
    return None


def read_run_json(run_dir: Path, name: str) -> dict:
    """A run folder's JSON file (CONFIG_FILE, STATUS_FILE, ENV_FILE) or {} if absent."""
    path = Path(run_dir) / name
    if not path.is_file():
        return {}
    try:
        obj = read_json(path)
    except ValueError as e:
        raise BenchError(
            f"{path} is not valid JSON ({e}); expected a file written by bench run"
        ) from e
    if not isinstance(obj, dict):
        raise BenchError(f"{path} is not a JSON object; expected a file written by bench run")
    return obj


def settings_apart_from_length(config: dict) -> dict:
    """A run's config.json without what names the run and what sets how long it trains
    (TRAINING_LENGTH_KEYS and the flag derived from them): what two runs must share to be
    the same run at two budgets."""
    config = with_new_defaults(config)
    train = {k: v for k, v in (config.get("train") or {}).items() if k not in TRAINING_LENGTH_KEYS}
    drop = {"run", "train", BUDGET_REPRODUCIBLE}
    return {**{k: v for k, v in config.items() if k not in drop}, "train": train}


def first_difference(a: dict, b: dict, prefix: str = "") -> str | None:
    """'section.key=a vs b' of the first (sorted, nested) key whose values differ, else None."""
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            found = first_difference(x, y, f"{prefix}{key}.")
            if found:
                return found
        elif x != y:
            return f"{prefix}{key}={x!r} vs {y!r}"
    return None


def run_status(run_dir: Path, status: dict) -> Status | str:
    """status.json's status, UNKNOWN without one; CRASHED when an unfinished run left an
    error file (the executor writes it on a crash and removes it when the run is retried)."""
    value = status.get("status") or Status.UNKNOWN
    if value not in FINISHED and (Path(run_dir) / ERROR_FILE).is_file():
        return Status.CRASHED
    return value


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# What env.json says about how a run's numbers were made (bench.metrics.fid.provenance and
# bench.core.env.environment write them); None where an older run did not record it.
PROVENANCE_KEYS = (
    "fid_weights_sha1",
    "fid_numerics",
    "device",
    "device_name",
    "cpu_name",
    "threads",
)


def run_provenance(env: dict) -> dict:
    """The PROVENANCE_KEYS of a run's env.json (found anywhere in its nested dicts)."""
    return {k: find_key(env, (k,)) for k in PROVENANCE_KEYS}


def _run_row(run_dir: Path, results_dir: Path) -> dict:
    config = read_run_json(run_dir, CONFIG_FILE)
    status = read_run_json(run_dir, STATUS_FILE)
    env = read_run_json(run_dir, ENV_FILE)
    data, train = config.get("data") or {}, config.get("train") or {}
    rel = run_dir.relative_to(results_dir).as_posix()
    row = {
        # The relative path, not config["run"]: ids repeat across sweeps under one parent.
        "run": run_dir.name if rel == "." else rel,
        "run_id": config.get("run", run_dir.name),
        "path": str(run_dir),
        "model": config.get("model", run_dir.name),
        "model_name": config.get("model_name"),
        "seed": config.get("seed"),
        "status": run_status(run_dir, status),
        "diverged_step": status.get("diverged_step"),
        "reason": status.get("reason"),
        "epochs_done": status.get("epoch"),
        "step": status.get("step"),
        "dataset": data.get("dataset", data.get("name")),
        "image_size": data.get("image_size"),
        "epochs": train.get("epochs"),
        "budget": budget_text(train),
        # Older configs lack the flag: only a seconds budget depends on the machine.
        "budget_reproducible": config.get(BUDGET_REPRODUCIBLE, not train.get("budget_seconds")),
        "data_source": env.get("data_source"),
        "fid_split": (config.get("eval") or {}).get("fid_split"),
        "fid_exact": (config.get("eval") or {}).get("fid_exact"),
        "fid_weights": find_key({"env": env, "eval": config.get("eval")}, FID_WEIGHTS_KEYS),
        "commit": find_key(env, COMMIT_KEYS),
        **run_provenance(env),
    }
    for k, v in _flatten(config.get("model_params") or {}).items():
        row[k if k not in row else f"param_{k}"] = v
    return row


def budget_text(train: dict) -> str | None:
    """'budget_flops=2e+12, budget_seconds=600' from config.json's train.budget_* (0 = none)."""
    set_ = {k: v for k, v in train.items() if k.startswith("budget_") and v}
    return ", ".join(f"{k}={v:g}" for k, v in sorted(set_.items())) or None


def _natural_key(text: str) -> tuple:
    """Sort 'vae:beta=0.5' < 'vae:beta=4' < 'vae:beta=10' (numbers compared as numbers)."""
    parts = re.split(r"(\d+(?:\.\d+)?)", str(text))
    return tuple((0, float(p), "") if i % 2 else (1, 0.0, p) for i, p in enumerate(parts))


def _add_labels(runs: pd.DataFrame) -> pd.DataFrame:
    """label = model label, plus the data/training settings that differ between runs.

    Runs from sweeps on different datasets/sizes/epochs must not be averaged together, and
    a (model, seed) found in several sweep folders gets the folder name added.
    """
    varying = [c for c in ("dataset", "image_size", "epochs") if runs[c].nunique(dropna=False) > 1]
    label = runs["model"].astype(str)
    for c in varying:
        label = label + f" {c}=" + runs[c].astype(str)
    # The same model and seed in two sweeps is a repeat, not another seed: keep them apart.
    repeated = label.isin(label[pd.DataFrame({"l": label, "s": runs["seed"]}).duplicated()])
    folder = runs["run"].map(lambda r: r.rpartition("/")[0] or ".")
    return runs.assign(label=label.where(~repeated, label + " [" + folder + "]"))


def model_order(runs_df: pd.DataFrame) -> list[str]:
    """Labels in a stable reading order: by model name, then numerically by parameters."""
    labels = runs_df[["label", "model_name"]].drop_duplicates("label")
    keyed = sorted(labels.itertuples(index=False), key=lambda r: (str(r[1]), _natural_key(r[0])))
    return [r[0] for r in keyed]


def _read_metrics(run_dir: Path, run: dict) -> pd.DataFrame | None:
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return None
    try:
        # A sweep in progress may be appending to the file: skip a torn last line.
        df = pd.read_csv(path, on_bad_lines="skip")
    except pd.errors.EmptyDataError:
        return None
    missing = {"epoch", "metric", "value"} - set(df.columns)
    if missing:
        raise BenchError(
            f"{path} lacks columns {sorted(missing)}; expected run,model,seed,epoch,step,metric,value,n"
        )
    for c in ("epoch", "step", "value", "n"):
        df[c] = pd.to_numeric(df[c], errors="coerce") if c in df else np.nan
    ids = {k: run[k] for k in ("run", "label", "model", "model_name", "seed")}
    return df.assign(**ids)[[*METRICS_COLUMNS, "value", "n"]]


def load_runs(results_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs_df, metrics_df) for every run folder under results_dir (one sweep or several).

    runs_df: one row per run (run, label, model, model_name, seed, status, diverged_step,
    reason, epochs_done, dataset, image_size, epochs, commit, device, model params...).
    metrics_df: all metrics.csv rows, long format, with the run's id columns.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise BenchError(f"results folder {results_dir} not found; give a bench run --out folder")
    run_dirs = find_run_dirs(results_dir)
    if not run_dirs:
        raise BenchError(
            f"no runs found under {results_dir}; expected <run>/config.json with metrics.csv "
            "or status.json (as written by bench run --out)"
        )
    return read_runs(run_dirs, results_dir)


def read_runs(run_dirs: list[Path], results_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """load_runs for given run folders (at least one) under results_dir."""
    runs = _add_labels(pd.DataFrame([_run_row(d, Path(results_dir)) for d in run_dirs]))
    frames = [_read_metrics(d, r) for d, r in zip(run_dirs, runs.to_dict("records"), strict=True)]
    frames = [f for f in frames if f is not None and len(f)]
    numeric = ("seed", "epoch", "step", "value", "n")
    empty = pd.DataFrame(
        {
            c: pd.Series(dtype=float if c in numeric else str)
            for c in [*METRICS_COLUMNS, "value", "n"]
        }
    )
    metrics = pd.concat(frames, ignore_index=True) if frames else empty
    return runs, metrics


def _is_train(metric: pd.Series) -> pd.Series:
    return metric.astype(str).str.startswith(TRAIN_PREFIX)


def _is_eval(metric: pd.Series) -> pd.Series:
    """Evaluation metrics: neither train/*, cost/*, track/* (small-N points during training,
    see tracked_fid) nor the end-of-run summary rows."""
    m = metric.astype(str)
    return ~m.str.startswith((TRAIN_PREFIX, COST_PREFIX, TRACK_PREFIX)) & ~m.isin(SUMMARY_METRICS)


def _id_cols(df: pd.DataFrame) -> list[str]:
    return [c for c in ID_COLUMNS if c in df.columns]


def _last_per_run(rows: pd.DataFrame, values: str = "value") -> pd.DataFrame:
    """`values` of each (run, metric) at its last epoch/step; a NaN there stays NaN."""
    rows = rows.sort_values(["epoch", "step"], na_position="first", kind="stable")
    last = rows.drop_duplicates(["run", "metric"], keep="last")
    return last.pivot(index="run", columns="metric", values=values)


def _fid_summary_from_curve(fid: pd.DataFrame) -> pd.DataFrame:
    """best/final FID from the per-epoch fid rows, for runs without summary rows yet.

    Same rule as bench.results.write.add_summary: only finite FIDs count, final = last finite one.
    """
    out = {}
    fid = fid[np.isfinite(fid["value"])].sort_values(["epoch", "step"], kind="stable")
    for run, g in fid.groupby("run", sort=False):
        best = g.iloc[g["value"].to_numpy().argmin()]
        out[run] = {
            BEST_FID: best["value"],
            BEST_FID_EPOCH: best["epoch"],
            FINAL_FID: g["value"].iloc[-1],
        }
    return pd.DataFrame.from_dict(out, orient="index", columns=list(SUMMARY_METRICS))


def final_metrics(metrics_df: pd.DataFrame) -> pd.DataFrame:
    """One row per run: id columns + every eval metric at its last eval epoch
    + best_fid, best_fid_epoch, final_fid (the run's summary rows; computed from the
    fid curve when the run has not written them yet, e.g. while it is still running).
    """
    ids = metrics_df[_id_cols(metrics_df)].drop_duplicates("run").set_index("run")
    is_summary = metrics_df["metric"].isin(SUMMARY_METRICS)
    evals = metrics_df[_is_eval(metrics_df["metric"])]
    wide = _last_per_run(evals)
    summary = _last_per_run(metrics_df[is_summary])
    computed = _fid_summary_from_curve(evals[evals["metric"] == "fid"])
    summary = summary.combine_first(computed).reindex(columns=list(SUMMARY_METRICS))
    out = ids.join(wide.astype(float), how="left").join(summary.astype(float), how="left")
    return out.reset_index()


def final_values(metrics_df: pd.DataFrame) -> dict[str, dict[str, float]]:
    """run -> {metric: final value (final_metrics)} for the eval and summary metrics that
    run recorded: no NaN filler for metrics that only other runs have."""
    final = final_metrics(metrics_df).set_index("run")
    recorded = metrics_df.groupby("run")["metric"].agg(set)
    out = {}
    for run, row in final.iterrows():
        names = recorded.get(run, set())
        if "fid" in names:  # summary rows are computed from the curve until written
            names = names | set(SUMMARY_METRICS)
        out[run] = {m: float(row[m]) for m in final.columns if m in names}
    return out


def final_counts(metrics_df: pd.DataFrame) -> pd.DataFrame:
    """Samples (column n) behind each final value: run x metric, as final_metrics picks it."""
    evals = metrics_df[_is_eval(metrics_df["metric"])]
    summary = metrics_df[metrics_df["metric"].isin(SUMMARY_METRICS)]
    return _last_per_run(evals, "n").join(_last_per_run(summary, "n"), how="outer")


def unfinished(runs_df: pd.DataFrame) -> pd.DataFrame:
    """Runs without final values (running, crashed, unknown): every command lists them and
    leaves them out of final means, claims, baselines and checks."""
    return runs_df[~runs_df["status"].isin(FINISHED)]


def unfinished_note(runs_df: pd.DataFrame) -> str | None:
    """'2 unfinished runs left out of final values: vae-seed1 (running), ...' or None."""
    left = unfinished(runs_df)
    if left.empty:
        return None
    names = ", ".join(f"{r.run} ({r.status})" for r in left.itertuples())
    plural = "s" if len(left) > 1 else ""
    return f"{len(left)} unfinished run{plural} left out of final values: {names}"


def loss_oscillation(metrics_df: pd.DataFrame, window: int = 5) -> pd.DataFrame:
    """Per run and train/* term: std / mean|value| of the epoch means over the last `window`
    epochs (coefficient of variation; sample std, ddof=1, so NaN with fewer than 2 epochs).
    Columns 'osc/<term>'. A converged run is near 0; GAN d_loss/g_loss that swing are not.
    """
    train = metrics_df[_is_train(metrics_df["metric"])]
    epoch_means = train.groupby(["run", "metric", "epoch"], as_index=False)["value"].mean()
    epoch_means = epoch_means.sort_values("epoch", kind="stable")

    def cv(values: pd.Series) -> float:
        last = values.to_numpy(dtype=float)[-window:]
        scale = np.abs(last).mean() if len(last) else np.nan
        if len(last) < 2 or not np.isfinite(scale) or scale == 0:
            return np.nan
        return float(np.std(last, ddof=1) / scale)

    osc = epoch_means.groupby(["run", "metric"])["value"].agg(cv).unstack("metric")
    osc.columns = ["osc/" + c.removeprefix(TRAIN_PREFIX) for c in osc.columns]
    return osc


EVAL_COSTS = (EVAL_SECONDS, TRACK_SECONDS)


def run_costs(metrics_df: pd.DataFrame) -> pd.DataFrame:
    """Per run, the mean over epochs of each cost/* metric (seconds, images/s, peak MiB), the
    last value of each cumulative cost/cum_* counter (total images, training FLOPs, training
    seconds: a mean of running totals means nothing), and RUN_SECONDS: the sum over epochs
    of cost/epoch_wall_seconds (training, evaluation and pictures; setup and checkpoint
    writes excluded) or, for epochs recorded before that row existed, of
    cost/train_seconds + cost/eval_seconds; and EVAL_SHARE: the sum of every evaluation's
    and tracked point's seconds over RUN_SECONDS.
    """
    metric = metrics_df["metric"].astype(str)
    cost = metrics_df[
        metric.str.startswith(COST_PREFIX) & ~metric.str.startswith(CUMULATIVE_PREFIX)
    ]
    out = cost.groupby(["run", "metric"])["value"].mean().unstack("metric").astype(float)
    totals = metrics_df[metric.str.startswith(CUMULATIVE_PREFIX)]
    if len(totals):
        out = out.join(_last_per_run(totals).astype(float), how="outer")
    per_epoch = cost.pivot_table("value", ["run", "epoch"], "metric", aggfunc="sum")
    if TRAIN_SECONDS in per_epoch:  # epoch by epoch: a run may have resumed across versions
        wall = per_epoch[TRAIN_SECONDS] + per_epoch.get(EVAL_SECONDS, 0.0)
        wall = wall.fillna(per_epoch[TRAIN_SECONDS])  # epochs without an evaluation
        if EPOCH_WALL_SECONDS in per_epoch:
            wall = per_epoch[EPOCH_WALL_SECONDS].fillna(wall)
        out[RUN_SECONDS] = wall.groupby(level="run").sum(min_count=1).astype(float)
        # Only epochs with a wall time: a diverged epoch's tracked points have none.
        evaluating = per_epoch.reindex(columns=list(EVAL_COSTS)).sum(axis=1)[wall.notna()]
        evaluating = evaluating.groupby(level="run").sum()
        out[EVAL_SHARE] = evaluating.reindex(out.index).fillna(0.0) / out[RUN_SECONDS]
    return out


def per_run_stability(
    metrics_df: pd.DataFrame, runs_df: pd.DataFrame, window: int = 5
) -> pd.DataFrame:
    """One row per run of runs_df: id columns, diverged_step, best_fid, best_fid_epoch,
    final_fid, fid_gap = final − best, fid_gap_rel = gap / best, osc/<term> for every
    train/* term (see loss_oscillation), the collapse indicators, and the TRACK_COLUMNS
    (tracked_stability; NaN and UNKNOWN for runs without tracked points).

    The gap of a run with tracked points is that of its tracked FID (all at one N, >= 10
    points); only runs without them take it from the per-epoch evaluations, which are often
    just two (then the gap is 0 by construction).
    """
    cols = [*_id_cols(runs_df), "diverged_step"]
    fid = final_metrics(metrics_df).set_index("run")[list(SUMMARY_METRICS)]
    out = runs_df[cols].set_index("run").join(fid, how="left")
    out["fid_gap"] = out[FINAL_FID] - out[BEST_FID]
    out["fid_gap_rel"] = out["fid_gap"] / out[BEST_FID]
    tracked = tracked_stability(metrics_df, window, out[FINAL_FID])
    if len(tracked):
        out = out.join(tracked, how="left")
        has = out["track_points"].notna()
        out.loc[has, "fid_gap"] = out.loc[has, "track_final_fid"] - out.loc[has, "track_best_fid"]
        out.loc[has, "fid_gap_rel"] = out.loc[has, "fid_gap"] / out.loc[has, "track_best_fid"]
        out["convergence"] = out["convergence"].fillna(UNKNOWN_CONVERGENCE)
    out = out.join(loss_oscillation(metrics_df, window).astype(float), how="left")
    out = out.join(collapse_indicators(metrics_df), how="left")
    return out.reset_index()


COLLAPSE_SIGNALS = ("recall", "coverage", "diversity")
COLLAPSE_DROP = 0.5  # a signal at its last evaluation below half its best value
# Tracked FID ending 50% above its best: far beyond the sampling noise of one small-N FID
# (a few %, see CONVERGENCE_TOLERANCE), so the generator really got worse, as a GAN that
# drops modes or oscillates away from its best does.
COLLAPSE_FID_RISE = 0.5


def collapse_indicators(
    metrics_df: pd.DataFrame, drop: float = COLLAPSE_DROP, rise: float = COLLAPSE_FID_RISE
) -> pd.DataFrame:
    """Per run: ``collapse`` = True when recall, coverage (Naeem et al. 2020: coverage falls
    when modes are dropped) or within-batch sample diversity ends below ``drop`` x its best
    value over the evaluations, i.e. training lost variety it once had, or when the tracked
    FID (track/fid, tracked_fid) ends above (1 + ``rise``) x its best tracked value;
    ``collapse_signal`` names the signals that fell (or rose). Needs >= 2 evaluations of a
    signal whose best is above 0.05, or >= 2 tracked points.
    """
    rows = metrics_df[metrics_df["metric"].isin(COLLAPSE_SIGNALS)].sort_values("epoch")
    out = {}
    for run, group in rows.groupby("run"):
        fell = []
        for signal, values in group.groupby("metric")["value"]:
            values = values[np.isfinite(values)]
            if len(values) >= 2 and values.max() > 0.05 and values.iloc[-1] < drop * values.max():
                fell.append(signal)
        out[run] = {"collapse": bool(fell), "collapse_signal": ",".join(fell)}
    for run, fid in tracked_fid(metrics_df).groupby("run")["value"]:
        entry = out.setdefault(run, {"collapse": False, "collapse_signal": ""})
        if len(fid) >= 2 and fid.iloc[-1] > (1 + rise) * fid.min():
            signals = [s for s in entry["collapse_signal"].split(",") if s] + [TRACK_FID]
            entry.update(collapse=True, collapse_signal=",".join(signals))
    return pd.DataFrame.from_dict(out, orient="index", columns=["collapse", "collapse_signal"])


# ---------------------------------------------------------------- tracked points

CUMULATIVE_COUNTERS = (CUM_IMAGES, CUM_TRAIN_FLOPS, CUM_TRAIN_SECONDS)


def tracked_fid(metrics_df: pd.DataFrame) -> pd.DataFrame:
    """tracked_points of track/fid."""
    return tracked_points(metrics_df, TRACK_FID)


def tracked_points(metrics_df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The finite rows of one track/* metric in training order, each run's at one N (column
    n): that of its last tracked point, so gaps and verdicts compare equal-N values only (FID
    is biased upward at small N; a resume with another eval.track_n would otherwise mix two
    biases). With columns CUMULATIVE_COUNTERS: the run's counters at the same (epoch, step),
    if any.
    """
    rows = metrics_df[(metrics_df["metric"] == metric) & np.isfinite(metrics_df["value"])]
    if rows.empty:
        return rows.reindex(columns=[*rows.columns, *CUMULATIVE_COUNTERS])
    rows = rows.sort_values(["epoch", "step"], kind="stable")
    n = rows["n"].fillna(-1)
    rows = rows[n == n.groupby(rows["run"]).transform("last")]
    cum = metrics_df[metrics_df["metric"].isin(CUMULATIVE_COUNTERS)]
    wide = cum.pivot_table("value", ["run", "epoch", "step"], "metric", aggfunc="last")
    out = rows.merge(wide, left_on=["run", "epoch", "step"], right_index=True, how="left")
    return out.reindex(columns=[*rows.columns, *CUMULATIVE_COUNTERS])


# A run is "converged" when its tracked FID moved by less than this fraction of its final
# FID over the last quarter of its training. The change is that of a least-squares line
# through the >= 3 points of the quarter, so one noisy point cannot decide. It is taken in
# FID units and divided by the run's final (published, large-N) FID, not by the tracked FIDs:
# FID at small N carries a roughly additive bias, FID_N ~ FID_inf + k/N (Chong & Forsyth
# 2020, "Effectively unbiased FID and Inception Score"), so a change in units carries across
# N, while a ratio to a DCGAN's FID@200 (~3x its FID@5000) would make 5% mean ~14%. The noise
# stays small on that scale because every tracked point draws the same latents and compares
# with the same real images: on the standard protocol's reference runs the fitted change's
# standard error is a few % of final FID or less, except for a GAN still moving between
# points (BENCHMARKS.md, "The tracked verdict's scale", has the figures).
CONVERGENCE_TOLERANCE = 0.05
LAST_SHARE = 0.25  # the last quarter of the run's training (images seen, else steps)
MIN_LAST_POINTS = 3
CONVERGED, IMPROVING, DEGRADING = "converged", "still improving", "degrading"
UNKNOWN_CONVERGENCE = "unknown (too few tracked points)"


class QuarterFit(NamedTuple):
    """A least-squares line through the tracked points of the last quarter, relative to a
    scale (the run's final FID): change = slope x span / scale; change_se = its standard
    error (s / sqrt(sum (x - mean x)^2) x span / scale, s the residual sd with n - 2 degrees
    of freedom; NaN with 2 points); residual_sd = s / scale, the points' scatter around it."""

    change: float
    change_se: float
    residual_sd: float
    n: int


NO_FIT = QuarterFit(np.nan, np.nan, np.nan, 0)


def line_fit(progress, fid, span: float, scale: float | None = None) -> QuarterFit:
    """The least-squares line through (progress, fid): its change over `span` of progress
    relative to scale (slope x span / scale, negative = falling; scale defaults to the mean
    FID), with its standard error and the residual scatter (QuarterFit)."""
    x, y = np.asarray(progress, dtype=float), np.asarray(fid, dtype=float)
    if len(x) < 2 or np.ptp(x) == 0:
        return NO_FIT  # no line through points at one x
    scale = y.mean() if scale is None else scale
    slope, intercept = np.polyfit(x, y, 1)
    dof = len(x) - 2
    s = np.sqrt(np.sum((y - (slope * x + intercept)) ** 2) / dof) if dof > 0 else np.nan
    se = s / np.sqrt(np.sum((x - x.mean()) ** 2))
    return QuarterFit(
        float(slope * span / scale), float(se * span / scale), float(s / scale), len(x)
    )


def last_quarter_fit(progress, fid, total: float | None = None, scale: float | None = None):
    """line_fit over the last LAST_SHARE of the run's training, or NO_FIT with fewer than
    MIN_LAST_POINTS points there (or all at one x: line_fit).

    progress: training done at each tracked point (images seen or steps), from 0;
    total: the run's training in the same unit (default: the last point's);
    scale: the FID the change is relative to (the run's final FID; default the points' mean).
    """
    x, y = np.asarray(progress, dtype=float), np.asarray(fid, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < MIN_LAST_POINTS:
        return NO_FIT
    total = float(x.max()) if total is None else total
    last = x >= (1 - LAST_SHARE) * total
    if last.sum() < MIN_LAST_POINTS:
        return NO_FIT
    return line_fit(x[last], y[last], LAST_SHARE * total, scale)


def last_quarter_change(progress, fid, total: float | None = None, scale: float | None = None):
    """last_quarter_fit's change (NaN with too few points)."""
    return last_quarter_fit(progress, fid, total, scale).change


def convergence_verdict(
    progress,
    fid,
    total: float | None = None,
    tolerance: float = CONVERGENCE_TOLERANCE,
    scale: float | None = None,
) -> str:
    """change_verdict(last_quarter_change(progress, fid, total, scale), tolerance)."""
    return change_verdict(last_quarter_change(progress, fid, total, scale), tolerance)


def tracked_verdict(
    fid_change: float, recon_change: float = np.nan, tolerance: float = CONVERGENCE_TOLERANCE
) -> str:
    """change_verdict of the tracked FID's change; where that says converged, the tracked
    held-out recon MSE's change (relative to its last-quarter mean) decides instead when
    it has one. A FID that has flattened while the decoder is still fitting its data is not
    convergence: the seed's dogvae at 1e14 FLOPs has a flat FID@200 (-0.7% over the last
    quarter, README "dogvae reference result") while its epoch-mean training recon MSE fell
    7.4% from epoch 5 to 6, towards a pixel scale it had not reached (BENCHMARKS.md, "The
    seed's unscaled output costs it ~1,300 steps")."""
    verdict = change_verdict(fid_change, tolerance)
    if verdict == CONVERGED and np.isfinite(recon_change):
        return change_verdict(recon_change, tolerance)
    return verdict


def change_verdict(change: float, tolerance: float = CONVERGENCE_TOLERANCE) -> str:
    """CONVERGED, IMPROVING (falling), DEGRADING (rising: worse than its best earlier) or
    UNKNOWN_CONVERGENCE (NaN: too few tracked points) for a last-quarter change."""
    if not np.isfinite(change):
        return UNKNOWN_CONVERGENCE
    if abs(change) < tolerance:
        return CONVERGED
    return IMPROVING if change < 0 else DEGRADING


def _progress(points: pd.DataFrame, run_rows: pd.DataFrame) -> tuple[pd.Series, float]:
    """(progress per tracked point, the run's total): images seen when every point has the
    counter, else the step; the total is the run's last value of the same."""
    if points[CUM_IMAGES].notna().all():
        done = run_rows.loc[run_rows["metric"] == CUM_IMAGES, "value"]
        return points[CUM_IMAGES], float(np.nanmax([done.max(), points[CUM_IMAGES].max()]))
    return points["step"], float(np.nanmax([run_rows["step"].max(), points["step"].max()]))


def _recon_fit(points: pd.DataFrame, run_rows: pd.DataFrame) -> QuarterFit:
    """last_quarter_fit of one run's track/recon_mse points (NO_FIT without any)."""
    if points.empty:
        return NO_FIT
    progress, total = _progress(points, run_rows)
    return last_quarter_fit(progress, points["value"].to_numpy(dtype=float), total)


TRACK_COLUMNS = (
    "track_points",
    "track_n",
    "track_best_fid",
    "track_final_fid",
    "track_fid_osc",
    "track_change",
    "track_change_se",
    "track_residual_sd",
    "track_recon_change",
    "track_recon_change_se",
)


def verdict_scale(final_fid: float) -> float | None:
    """The FID a run's tracked change is relative to: its final (published) FID when it has
    one; None (the last-quarter tracked FIDs' mean, line_fit's default) for a run that has
    none yet, e.g. still running (see CONVERGENCE_TOLERANCE)."""
    return float(final_fid) if np.isfinite(final_fid) and final_fid > 0 else None


def tracked_stability(
    metrics_df: pd.DataFrame, window: int = 5, final_fid: pd.Series | None = None
) -> pd.DataFrame:
    """Per run with tracked FID points (tracked_fid): TRACK_COLUMNS (count, N, best and
    final tracked FID, track_fid_osc = std (ddof=1) / mean of its last `window` tracked
    FIDs, as loss_oscillation, and track_change, track_change_se, track_residual_sd =
    last_quarter_fit relative to verdict_scale; track_recon_change, track_recon_change_se:
    the same fit of track/recon_mse relative to its last-quarter mean, NaN without one) and
    ``convergence`` (tracked_verdict of the two changes). Empty without any.
    final_fid: run -> final FID (default: from final_metrics).
    """
    points, recon = tracked_fid(metrics_df), tracked_points(metrics_df, TRACK_RECON)
    if final_fid is None and len(points):
        final_fid = final_metrics(metrics_df).set_index("run")[FINAL_FID]
    out = {}
    for run, g in points.groupby("run", sort=False):
        fid = g["value"].to_numpy(dtype=float)
        last = fid[-window:]
        run_rows = metrics_df[metrics_df["run"] == run]
        progress, total = _progress(g, run_rows)
        osc = float(np.std(last, ddof=1) / last.mean()) if len(last) > 1 else np.nan
        scale = verdict_scale(final_fid.get(run, np.nan))
        fit = last_quarter_fit(progress, fid, total, scale)
        recon_fit = _recon_fit(recon[recon["run"] == run], run_rows)
        values = (len(g), g["n"].iloc[-1], fid.min(), fid[-1], osc, *fit[:3], *recon_fit[:2])
        out[run] = dict(zip(TRACK_COLUMNS, values, strict=True))
        out[run]["convergence"] = tracked_verdict(fit.change, recon_fit.change)
    table = pd.DataFrame.from_dict(out, orient="index", columns=[*TRACK_COLUMNS, "convergence"])
    return table.astype(dict.fromkeys(TRACK_COLUMNS, float))


RUN_FACTS = ("path", "epochs_done", "epochs", "reason")  # per_run_table columns, not metrics


def per_run_table(runs_df: pd.DataFrame, metrics_df: pd.DataFrame, window: int = 5) -> pd.DataFrame:
    """One row per run of runs_df: per_run_stability + every final metric (final_metrics)
    + the mean of each cost/* metric + RUN_FACTS (path, epochs_done, epochs, reason).
    The table `bench report` and `bench claims` both start from.
    """
    stability = per_run_stability(metrics_df, runs_df, window)
    final = final_metrics(metrics_df)
    extra = [c for c in final.columns if c not in stability.columns]
    out = stability.merge(final[["run", *extra]], on="run", how="left")
    out = out.merge(run_costs(metrics_df), left_on="run", right_index=True, how="left")
    return out.merge(runs_df[["run", *RUN_FACTS]], on="run")


def mean_ci(values, confidence: float = 0.95) -> dict:
    """n, mean, std (ddof=1), Student-t confidence interval of the mean, median of the
    finite values. With n < 2 the std and the interval are undefined (NaN)."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    mean = x.mean() if n else np.nan
    std = x.std(ddof=1) if n > 1 else np.nan
    # Half-width t_{(1+c)/2, n-1} * s / sqrt(n): the usual t interval for a mean.
    half = stats.t.ppf((1 + confidence) / 2, n - 1) * std / math.sqrt(n) if n > 1 else np.nan
    median = float(np.median(x)) if n else np.nan
    return {
        "n": n,
        "mean": mean,
        "std": std,
        "ci_low": mean - half,
        "ci_high": mean + half,
        "ci_half": half,
        "median": median,
    }


def _metric_columns(df: pd.DataFrame) -> list[str]:
    skip = {*ID_COLUMNS, "diverged_step"}
    return [c for c in df.columns if c not in skip and pd.api.types.is_numeric_dtype(df[c])]


def _success(group: pd.DataFrame, tolerance: float) -> dict:
    ok = group[group["status"] == Status.OK]
    finished = group[group["status"].isin(FINISHED)]
    best = ok[FINAL_FID].min() if FINAL_FID in ok else np.nan
    n_success = int((ok[FINAL_FID] <= best * (1 + tolerance)).sum()) if np.isfinite(best) else 0
    return {
        "n_runs": len(group),
        "n_ok": len(ok),
        "n_diverged": int((group["status"] == Status.DIVERGED).sum()),
        "n_running": int((group["status"] == Status.RUNNING).sum()),
        "n_finished": len(finished),
        "n_success": n_success,
        "success_rate": n_success / len(finished) if len(finished) else np.nan,
        "best_final_fid": best,
        "median_fid_gap": ok["fid_gap"].median() if "fid_gap" in ok else np.nan,
        "median_fid_gap_rel": ok["fid_gap_rel"].median() if "fid_gap_rel" in ok else np.nan,
    }


def aggregate_over_seeds(
    per_run_df: pd.DataFrame,
    by: str = "model",
    tolerance: float = 0.10,
    statuses: tuple[str, ...] = (Status.OK,),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Aggregate a per-run table (final_metrics and/or per_run_stability rows) over seeds.

    Returns (metric_stats, model_stats):
    - metric_stats: one row per (`by`, metric) over the runs whose status is in `statuses`
      (finished ones by default: a diverged or still-running run has no final value):
      n, mean, std, ci_low, ci_high, ci_half (95% Student t), median.
    - model_stats: one row per `by`: n_runs, n_ok, n_diverged, n_running, n_finished,
      n_success, success_rate, best_final_fid, median_fid_gap(_rel). A run succeeds when its
      status is ok and final_fid <= best ok seed's final_fid * (1 + tolerance); the rate is
      over finished runs (ok + diverged), since a running run has not failed yet.
    """
    metrics = _metric_columns(per_run_df)
    kept = per_run_df[per_run_df["status"].isin(statuses)]
    rows = []
    for key in per_run_df[by].unique():
        sel = kept[kept[by] == key]
        rows += [{by: key, "metric": m, **mean_ci(sel[m])} for m in metrics]
    metric_stats = pd.DataFrame(
        rows, columns=[by, "metric", "n", "mean", "std", "ci_low", "ci_high", "ci_half", "median"]
    )
    model_stats = pd.DataFrame(
        [{by: key, **_success(g, tolerance)} for key, g in per_run_df.groupby(by, sort=False)]
    )
    return metric_stats, model_stats
