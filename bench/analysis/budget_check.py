"""The longer-budget check: would more training have changed a run's final FID?

A protocol shows its models converged by training one seed of each model again at a larger
budget (the standard protocol: twice its FLOPs) and comparing final FIDs.
``bench report RESULTS --longer LONGER`` pairs every finished run of LONGER with the finished
run of RESULTS of the same model and seed, checks that the two sweeps differ in nothing but
the training budget (and epochs), and reports the final FID at both budgets, the budget
ratio actually trained (cumulative training FLOPs, else images seen) and the relative
change. A change within LONGER_TOLERANCE says the model had converged at the shorter budget
(rt.CONVERGED); a larger one says it was still improving or degrading (as the tracked
verdicts name it), and a longer run that diverged says so.
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import pandas as pd

from bench.core.config import TRAINING_LENGTH_KEYS
from bench.core.errors import BenchError
from bench.core.layout import CONFIG_FILE, CUM_IMAGES, CUM_TRAIN_FLOPS, FINISHED, Status
from bench.results import table as rt

# Final FID moving by less than this at the longer budget counts as converged (issue 14:
# "one seed of each model at twice the budget changes final FID by less than 10%").
LONGER_TOLERANCE = 0.10
LONGER_COLUMNS = (
    "label", "seed", "budget_ratio", "fid", "fid_longer", "change_rel", "convergence",
    "convergence_longer", "verdict",
)  # fmt: skip
# The option of bench report and bench claims that adds this check.
longer_option = click.option(
    "--longer",
    type=click.Path(path_type=Path),
    default=None,
    help="Results of some of the same runs at a larger training budget (e.g. one seed at 2x): "
    "adds the convergence check of final FID against budget.",
)
# Training done, most telling first: FLOPs where counted, else images seen, else epochs
# (runs written before the cost counters).
TRAINED_COUNTERS = (CUM_TRAIN_FLOPS, CUM_IMAGES, "epochs_done")


def _settings(run_path: str) -> dict:
    return rt.settings_apart_from_length(rt.read_run_json(Path(run_path), CONFIG_FILE))


def _verdict_text(pair, column: str) -> str | None:
    """A run's tracked convergence verdict, None where it had no tracked points."""
    value = getattr(pair, column, None)
    return value if isinstance(value, str) else None


def _longer_runs(longer_dir: Path) -> pd.DataFrame:
    if not longer_dir.is_dir():
        raise BenchError(f"--longer {longer_dir} is not a folder; expected a folder of bench run")
    runs, metrics = rt.load_runs(longer_dir)
    per_run = rt.per_run_table(runs, metrics) if len(runs) else pd.DataFrame()
    if per_run.empty or not per_run["status"].isin(FINISHED).any():
        raise BenchError(f"--longer {longer_dir} has no finished run")
    return per_run[per_run["status"].isin(FINISHED)]


def _ratio_counter(pairs: pd.DataFrame) -> str:
    """The first of TRAINED_COUNTERS known for every paired run on both sides."""
    for counter in TRAINED_COUNTERS:
        both = [c for c in (counter, f"{counter}_longer") if c in pairs]
        if len(both) == 2 and pairs[both].notna().all().all():
            return counter
    raise BenchError(f"--longer: the runs record none of {', '.join(TRAINED_COUNTERS)}")


def _verdict(change: float, status_longer: str) -> str:
    if status_longer == Status.DIVERGED:
        return Status.DIVERGED
    if not np.isfinite(change):
        return "—"
    return rt.change_verdict(change, LONGER_TOLERANCE)


def longer_budget_table(per_run: pd.DataFrame, longer_dir: Path) -> pd.DataFrame:
    """One row per (model, seed) finished ok in ``per_run`` (rt.per_run_table of RESULTS;
    runs inside LONGER left out) and finished in LONGER: LONGER_COLUMNS. BenchError (one
    line) when LONGER is not a results folder, shares no such run, records no FID, was made
    with other settings than its training length, or did not train longer."""
    longer = _longer_runs(longer_dir)
    inside = per_run["path"].map(lambda p: Path(p).resolve().is_relative_to(longer_dir.resolve()))
    short = per_run[(per_run["status"] == Status.OK) & ~inside]
    pairs = longer.merge(short, on=["model", "seed"], suffixes=("_longer", ""))
    if pairs.empty:
        raise BenchError(
            f"--longer {longer_dir}: no finished (model, seed) also in the results; expected a "
            "repeat of some of its runs at a larger budget"
        )
    if "fid" not in pairs or "fid_longer" not in pairs:
        raise BenchError(f"--longer {longer_dir}: no final FID to compare (eval.fid_samples 0?)")
    counter = _ratio_counter(pairs)
    # Computed on the frame: itertuples renames columns that are not identifiers
    # (cost/cum_train_flops) to positional names.
    ratios = (pairs[f"{counter}_longer"] / pairs[counter]).tolist()
    rows = []
    for p, ratio in zip(pairs.itertuples(index=False), ratios, strict=True):
        differs = rt.first_difference(_settings(p.path), _settings(p.path_longer))
        if differs:
            raise BenchError(
                f"--longer {p.path_longer} differs from {p.path} in {differs}, not only in "
                f"how long it trains ({', '.join(TRAINING_LENGTH_KEYS)})"
            )
        if not ratio > 1:
            raise BenchError(
                f"--longer {p.path_longer} trained no longer than {p.path} ({counter} ratio "
                f"{ratio:.3g}); expected a repeat at a larger budget"
            )
        change = (p.fid_longer - p.fid) / p.fid
        rows.append(
            (
                p.label,
                p.seed,
                ratio,
                p.fid,
                p.fid_longer,
                change,
                _verdict_text(p, "convergence"),
                _verdict_text(p, "convergence_longer"),
                _verdict(change, p.status_longer),
            )
        )
    return pd.DataFrame(rows, columns=list(LONGER_COLUMNS))
