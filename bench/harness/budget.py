"""When a run stops and when it gets a tracked point: its training budget.

A run stops at the first limit reached: train.epochs, train.budget_images, train.budget_flops
(both turned into a step count when the run starts, so they stop every machine at the same
step) or train.budget_seconds (measured training time, machine-dependent). Progress is the
largest used fraction of any limit; tracked point k of P is due once progress >= k / P, so
the points are spread evenly over steps (or over elapsed time for a seconds budget), the last
one at the final step. The counters the run needs to continue exactly are ``state()``, saved
in every checkpoint.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.core.config import SweepConfig, TrainConfig
from bench.core.errors import BenchError
from bench.core.layout import CUM_IMAGES, CUM_TRAIN_FLOPS, CUM_TRAIN_SECONDS
from bench.harness.speed import step_context
from bench.metrics.evaluate import isolated_rng


@dataclass
class Budget:
    max_steps: int | None  # from epochs, images and FLOPs; None: only a seconds budget
    seconds: float  # 0 = no time limit
    flops_per_step: float
    batch_size: int
    track_points: int
    train_seconds: float = 0.0  # measured training time so far (tracked points excluded)
    tracked: int = 0  # tracked points done

    def _fraction_due(self, step: int, k: int, points: int) -> bool:
        """Has the run used k / points of some limit? Steps in integers: exact."""
        by_steps = self.max_steps is not None and step * points >= k * self.max_steps
        by_time = self.seconds > 0 and self.train_seconds * points >= k * self.seconds
        return by_steps or by_time

    def reached(self, step: int) -> bool:
        return self._fraction_due(step, 1, 1)

    def track_due(self, step: int) -> bool:
        """Is the next tracked point due? Marks as done every point due by now (more points
        than steps: one evaluation stands for all the points of its step)."""
        done = self.tracked
        while self.tracked < self.track_points and self._due(step, self.tracked + 1):
            self.tracked += 1
        return self.tracked > done

    def _due(self, step: int, k: int) -> bool:
        return self._fraction_due(step, k, self.track_points)

    def points_due(self, step: int) -> int:
        """How many tracked points are due by ``step`` (the last due point, as k of P)."""
        return sum(self._due(step, k) for k in range(1, self.track_points + 1))

    def cumulative(self, step: int) -> dict[str, float]:
        """Training used after ``step`` steps, as row name -> value."""
        return {
            CUM_IMAGES: step * self.batch_size,  # every step is a full batch (partial dropped)
            CUM_TRAIN_FLOPS: step * self.flops_per_step,
            CUM_TRAIN_SECONDS: self.train_seconds,
        }

    def state(self) -> dict:
        return {
            "flops_per_step": self.flops_per_step,
            "train_seconds": self.train_seconds,
            "tracked": self.tracked,
        }


def plan_budget(
    cfg: SweepConfig,
    steps_per_epoch: int,
    count_flops: Callable[[], float],
    saved: dict | None,
    track_points: int,
    step: int,
) -> Budget:
    """The run's budget; ``saved`` (a checkpoint's ``state()`` at ``step``) continues one,
    keeping the FLOPs per step it counted, so a resumed run stops at the same step.
    ``track_points``: eval.track_points, or 0 where the evaluator has no tracked metric (no
    FID). A run continued at a larger budget (bench run --continue-from) has done more points
    than its new budget has due by ``step``: its count is cut to those, so the remaining
    points are spread over the rest of the new budget."""
    saved = saved or {}
    flops = saved.get("flops_per_step") or count_flops()
    if cfg.train.budget_flops and flops <= 0:
        raise BenchError(
            "train.budget_flops: the model's train step counts no FLOPs; use budget_images"
        )
    budget = Budget(
        max_steps(cfg.train, steps_per_epoch, flops),
        cfg.train.budget_seconds,
        flops,
        cfg.train.batch_size,
        track_points,
        train_seconds=saved.get("train_seconds", 0.0),
        tracked=saved.get("tracked", 0),
    )
    budget.tracked = min(budget.tracked, budget.points_due(step))
    return budget


def steps_per_epoch(n_images: int, batch_size: int) -> int:
    """Full batches per epoch: the last partial batch is dropped."""
    return max(1, n_images // batch_size)


def max_steps(cfg: TrainConfig, steps_per_epoch: int, flops_per_step: float) -> int | None:
    """The step at which the epoch, images or FLOPs limit stops the run: the first step at
    which images seen (or FLOPs used) reach the budget."""
    limits = []
    if cfg.epochs:
        limits.append(cfg.epochs * steps_per_epoch)
    if cfg.budget_images:
        limits.append(math.ceil(cfg.budget_images / cfg.batch_size))
    if cfg.budget_flops:
        limits.append(max(1, math.ceil(cfg.budget_flops / flops_per_step)))
    return min(limits) if limits else None


def step_flops(model, x: torch.Tensor, precision: str, device) -> float:
    """FLOPs of one ``train_step`` on batch ``x`` (forward and backward of every network it
    updates, as torch.utils.flop_counter counts them: matmuls and convolutions), measured on a
    deep copy under isolated RNG, so the run's weights, optimiser state and random streams
    are untouched."""
    twin = copy.deepcopy(model)
    with isolated_rng(x.device), FlopCounterMode(display=False) as counter:
        with step_context(precision, device):
            twin.train_step(x, 0.0)
    return float(counter.get_total_flops())
