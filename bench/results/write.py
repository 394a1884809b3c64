"""One folder per run; metrics in long format, one row per (run, epoch, metric).

Every file is written to a temporary name and renamed (bench.core.io), so a crash never
leaves a half-written file behind.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import torch

from bench.core import io

METRIC_COLUMNS = ["run", "model", "seed", "epoch", "step", "metric", "value", "n"]


def run_id(label: str, seed: int) -> str:
    return f"{label.replace(':', '_').replace(',', '_')}-seed{seed}"


class MetricsLog:
    """Rows of one run, flushed to ``metrics.csv`` after every epoch."""

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
            frame = frame[(frame["epoch"] <= epoch) & ~frame["metric"].isin(SUMMARY_METRICS)]
            self.rows = [
                {**r, "n": None if pd.isna(r["n"]) else int(r["n"])}
                for r in frame.to_dict("records")
            ]


SUMMARY_METRICS = ("best_fid", "best_fid_epoch", "final_fid", "cost/peak_rss_mib")


def add_summary(log: MetricsLog, epoch: int, step: int, fid_n: int | None) -> dict:
    """best_fid (and its epoch) and final_fid: how far training ended from its best point."""
    fids = [(e, v) for e, v in log.values("fid") if math.isfinite(v)]
    if not fids:
        return {}
    best_epoch, best = min(fids, key=lambda ev: ev[1])
    summary = {"best_fid": best, "best_fid_epoch": best_epoch, "final_fid": fids[-1][1]}
    for metric, value in summary.items():
        log.add(epoch, step, metric, value, fid_n if metric != "best_fid_epoch" else None)
    return summary


def save_checkpoint(path: Path, model, epoch: int, step: int, rng: dict) -> None:
    state = {
        "model": model.state_dict(),
        "optimizers": {k: o.state_dict() for k, o in model.optimizers().items()},
        "epoch": epoch,
        "step": step,
        "rng": rng,
    }
    io.atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path, model) -> dict:
    state = torch.load(path, map_location=model.device, weights_only=False)
    model.load_state_dict(state["model"])
    for name, opt in model.optimizers().items():
        opt.load_state_dict(state["optimizers"][name])
    return state
