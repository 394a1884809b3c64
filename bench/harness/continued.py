"""`bench run --continue-from SRC`: start runs from the finished runs of a shorter sweep.

The longer-budget convergence check (bench report --longer) trains one seed of each model at
twice the budget. Continued from the finished shorter run of the same model and seed instead
of from step 0, it costs only the extra budget: the shorter run's checkpoint (weights,
optimiser state, RNG streams, budget counters) and its rows are copied and training goes on
to the new budget. How it differs from a run trained in one go (README, "--continue-from"):
the shorter run's final evaluation stays, as an evaluation at its step; and when that run
stopped mid-epoch, the next batches come from a new epoch's shuffle and the epoch count
moves on by the rest of the interrupted epoch. Tracked points beyond the ones due by then
are spread over the rest of the new budget (bench.harness.budget.plan_budget).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from bench.core import io
from bench.core.config import TRAINING_LENGTH_KEYS, TrainConfig, from_dict
from bench.core.errors import BenchError
from bench.core.layout import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    CUM_TRAIN_FLOPS,
    CUM_TRAIN_SECONDS,
    METRICS_FILE,
    STATUS_FILE,
    Status,
)
from bench.harness.budget import max_steps
from bench.harness.train import RunPlan
from bench.results import table as rt


def _last(rows: pd.DataFrame, metric: str) -> float:
    values = rows.loc[rows["metric"] == metric, "value"]
    return float(values.iloc[-1]) if len(values) else 0.0


def _check_longer(source: Path, stopped: int, new: dict, steps_per_epoch: int) -> None:
    """The new budget stops the run later than step ``stopped``, where the source run
    stopped: at a later step (epochs, images, FLOPs at the FLOPs per step it counted) or at
    more seconds."""
    _, rows = rt.load_runs(source)
    flops = _last(rows, CUM_TRAIN_FLOPS) / stopped if stopped else 0.0
    train = from_dict(TrainConfig, new["train"], "train")
    if train.budget_flops and not flops:
        raise BenchError(
            f"--continue-from {source}: its rows have no {CUM_TRAIN_FLOPS}, so a FLOPs budget "
            "cannot be set against it; use train.budget_images"
        )
    steps = max_steps(train, steps_per_epoch, flops)
    seconds = train.budget_seconds
    later = steps is None or steps > stopped
    if not later or (seconds and seconds <= _last(rows, CUM_TRAIN_SECONDS)):
        raise BenchError(
            f"--continue-from {source}: the new {', '.join(TRAINING_LENGTH_KEYS)} stop the run "
            f"at step {steps} (or {seconds:g} s), no later than where it stopped (step "
            f"{stopped}); a continued run needs a longer budget"
        )


def _source(src: Path, plan: RunPlan, wanted: dict, steps_per_epoch: int) -> Path:
    """The finished run of SRC to continue ``plan`` from, checked (BenchError otherwise)."""
    source = src / plan.run_id
    if not (source / STATUS_FILE).is_file():
        raise BenchError(f"--continue-from {src} has no run {plan.run_id}")
    status_file = rt.read_run_json(source, STATUS_FILE)
    status = status_file.get("status")
    missing = [f for f in (CHECKPOINT_FILE, METRICS_FILE) if not (source / f).is_file()]
    if status != Status.OK or missing:
        raise BenchError(
            f"--continue-from {source}: status {status!r}{', no ' if missing else ''}"
            f"{' or '.join(missing)}; only a run that finished ok, with its {CHECKPOINT_FILE} "
            f"and {METRICS_FILE}, can be continued"
        )
    old = rt.read_run_json(source, CONFIG_FILE)
    differs = rt.first_difference(
        rt.settings_apart_from_length(old), rt.settings_apart_from_length(wanted)
    )
    if differs:
        raise BenchError(
            f"--continue-from {source} differs in {differs}; only how long it trains "
            f"({', '.join(TRAINING_LENGTH_KEYS)}) may change"
        )
    _check_longer(source, status_file.get("step") or 0, wanted, steps_per_epoch)
    return source


def _copy(source: Path, target: Path) -> None:
    io.atomic_write(target, lambda tmp: shutil.copyfile(source, tmp))


def continue_runs(
    src: Path, runs: list[tuple[RunPlan, dict]], steps_per_epoch: int, say=print
) -> None:
    """Seed every run not started yet with its finished counterpart in ``src``; ``runs``:
    (plan, the config.json it will get). All are checked before any file is copied, so a
    refusal leaves the results folder as it was."""
    if not src.is_dir():
        raise BenchError(f"--continue-from {src} is not a folder; expected a bench run --out")
    todo = []
    for plan, wanted in runs:
        if (plan.dir / CHECKPOINT_FILE).exists() or (plan.dir / STATUS_FILE).exists():
            say(f"[{plan.run_id}] already started in this folder: resumed, not continued")
            continue
        todo.append((plan, _source(src, plan, wanted, steps_per_epoch)))
    for plan, source in todo:
        # The checkpoint last: a run folder with one is a run that resumes from it.
        _copy(source / METRICS_FILE, plan.dir / METRICS_FILE)
        _copy(source / CHECKPOINT_FILE, plan.dir / CHECKPOINT_FILE)
        say(f"[{plan.run_id}] continuing from {source}")
