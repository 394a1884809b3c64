"""One folder per run; metrics in long format, one row per (run, epoch, metric).

Every file is written to a temporary name and renamed (bench.core.io), so a crash never
leaves a half-written file behind.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import pandas as pd
import torch

from bench.core import io
from bench.core.layout import BEST_FID, BEST_FID_EPOCH, END_OF_RUN_METRICS, FINAL_FID

METRIC_COLUMNS = ["run", "model", "seed", "epoch", "step", "metric", "value", "n"]


class MetricsLog:
    """Rows of one run, flushed to ``metrics.csv`` (layout.METRICS_FILE) after every epoch."""

    def __init__(self, path: Path, run: str, model: str, seed: int):
        self.path, self.run, self.model, self.seed = path, run, model, seed
        self.rows: list[dict] = []

    def add(self, epoch: int, step: int, metric: str, value: float, n: int | None = None):
        self.rows.append(
            {
                "run": self.run,
                "model": self.model,
                "seed": self.seed,
                "epoch": epoch,
                "step": step,
                "metric": metric,
                "value": float(value),
                "n": n,
            }
        )

    def values(self, metric: str) -> list[tuple[int, float]]:
        return [(r["epoch"], r["value"]) for r in self.rows if r["metric"] == metric]

    def flush(self) -> None:
        frame = pd.DataFrame(self.rows, columns=METRIC_COLUMNS)
        frame["n"] = frame["n"].astype("Int64")
        io.atomic_write(self.path, lambda tmp: frame.to_csv(tmp, index=False))

    def load_until(self, epoch: int) -> None:
        """Resume: keep the rows of epochs up to ``epoch`` (later ones are redone)."""
        if self.path.exists():
            frame = pd.read_csv(self.path)
            frame = frame[(frame["epoch"] <= epoch) & ~frame["metric"].isin(END_OF_RUN_METRICS)]
            self.rows = [
                {**r, "n": None if pd.isna(r["n"]) else int(r["n"])}
                for r in frame.to_dict("records")
            ]


def add_summary(log: MetricsLog, epoch: int, step: int, fid_n: int | None) -> dict:
    """best_fid (and its epoch) and final_fid: how far training ended from its best point."""
    fids = [(e, v) for e, v in log.values("fid") if math.isfinite(v)]
    if not fids:
        return {}
    best_epoch, best = min(fids, key=lambda ev: ev[1])
    summary = {BEST_FID: best, BEST_FID_EPOCH: best_epoch, FINAL_FID: fids[-1][1]}
    for metric, value in summary.items():
        log.add(epoch, step, metric, value, fid_n if metric != BEST_FID_EPOCH else None)
    return summary


def save_checkpoint(
    path: Path, model, epoch: int, step: int, rng: dict, budget: dict | None = None
) -> None:
    """``budget``: the training budget used so far (bench.harness.budget.Budget.state)."""
    state = {
        "model": model.state_dict(),
        "optimizers": {k: o.state_dict() for k, o in model.optimizers().items()},
        "epoch": epoch,
        "step": step,
        "rng": rng,
        "budget": budget or {},
    }
    io.atomic_write(path, lambda tmp: torch.save(state, tmp))


class CorruptCheckpoint(Exception):
    """A checkpoint file that cannot be read back (truncated, garbage, not ours)."""


CHECKPOINT_KEYS = ("model", "optimizers", "epoch", "step", "rng")  # what save_checkpoint writes


def read_checkpoint(path: Path, device) -> dict:
    """The saved state, or CorruptCheckpoint; nothing is loaded into a model yet."""
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except Exception as e:  # truncated zip: RuntimeError; garbage: UnpicklingError, EOFError...
        raise CorruptCheckpoint(f"{path} is unreadable ({type(e).__name__})") from None
    if not isinstance(state, dict) or any(k not in state for k in CHECKPOINT_KEYS):
        raise CorruptCheckpoint(f"{path} is not a checkpoint written by bench run")
    return state


def set_aside(path: Path) -> Path:
    """Rename a bad file to <name>.corrupt-<UTC time>: kept for a post-mortem, never read."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target, i = path.with_name(f"{path.name}.corrupt-{stamp}"), 1
    while target.exists():
        target, i = path.with_name(f"{path.name}.corrupt-{stamp}-{i}"), i + 1
    os.replace(path, target)
    return target


def load_checkpoint(path: Path, model) -> dict:
    """Weights and optimiser states into ``model``; CorruptCheckpoint leaves it untouched."""
    state = read_checkpoint(path, model.device)
    model.load_state_dict(state["model"])
    for name, opt in model.optimizers().items():
        opt.load_state_dict(state["optimizers"][name])
    return state
