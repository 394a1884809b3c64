"""The training loop. It knows nothing about the model it trains: the model owns its
optimisers and ``train_step``; the loop shuffles batches, records what the step returns,
evaluates on schedule, checkpoints, and stops a run whose loss becomes NaN/inf or
explodes past ``train.loss_bound`` (status "diverged", rows kept).
"""

from __future__ import annotations

import math
import random
import resource
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torchvision.utils import save_image
from tqdm import tqdm

from bench.core import io
from bench.core.config import SweepConfig
from bench.core.layout import (
    CHECKPOINT_FILE,
    EPOCH_WALL_SECONDS,
    EVAL_SECONDS,
    METRICS_FILE,
    PEAK_RSS,
    STATUS_FILE,
    TRACK_PREFIX,
    TRACK_SECONDS,
    TRAIN_CPU_SECONDS,
    TRAIN_IMAGES_PER_S,
    TRAIN_PREFIX,
    TRAIN_SECONDS,
    Status,
)
from bench.data.images import ImageSet
from bench.data.pixels import to_model_space
from bench.harness import speed
from bench.harness.budget import Budget, plan_budget, step_flops, steps_per_epoch
from bench.metrics.evaluate import Evaluator, drawing_mode
from bench.metrics.samplers import generate, reconstruct
from bench.results.write import (
    CorruptCheckpoint,
    MetricsLog,
    add_summary,
    load_checkpoint,
    save_checkpoint,
    set_aside,
)
from models import ModelSpec, build_model
from models.base import GenerativeModel


@dataclass
class RunPlan:
    run_id: str
    spec: ModelSpec
    seed: int
    config: SweepConfig
    dir: Path


def _rng_state() -> dict:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _write_status(plan: RunPlan, status: str, epoch: int, step: int, reason=None, at=None):
    io.write_json(
        plan.dir / STATUS_FILE,
        {"status": status, "epoch": epoch, "step": step, "diverged_step": at, "reason": reason},
    )


def _save_pictures(plan: RunPlan, model, heldout: ImageSet, n: int, pictures: dict) -> None:
    """samples.png and recon.png drawn as the evaluation draws: eval-mode BatchNorm (a
    train-mode forward would show batch-statistics samples and move the running statistics
    the checkpoint keeps) and isolated RNG (training's random streams stay as they were)."""

    def png(name, images, nrow):
        io.atomic_write(
            plan.dir / name, lambda tmp: save_image(images, tmp, nrow=nrow, padding=1, format="png")
        )

    with drawing_mode(model):
        png("samples.png", generate(model, n), int(math.sqrt(n)))
        real = heldout.images[: n // 2]
        recon = reconstruct(model, real) if len(real) else None
    for name, (images, nrow) in pictures.items():  # samples@gmm, interpolation, ...
        png(f"{name}.png", images, nrow or int(math.sqrt(len(images))))
    if recon is not None:
        png("recon.png", *recon_grid(real.float() / 255, recon))


def recon_grid(real: torch.Tensor, recon: torch.Tensor, width: int = 8):
    """(images, nrow) of rows that alternate: up to ``width`` real images, then their
    reconstructions; a short last pair of rows is padded with black (the grid's gap colour)."""
    nrow = min(width, len(real))
    rows = []
    for i in range(0, len(real), nrow):
        for part in (real[i : i + nrow], recon[i : i + nrow]):
            pad = part.new_zeros(nrow - len(part), *part.shape[1:])
            rows.append(torch.cat([part, pad]))
    return torch.cat(rows), nrow


def _loss_bound(cfg: SweepConfig, model: GenerativeModel) -> float:
    """train.loss_bound holds at 32 x 32 for a loss at unit scale; it grows with the pixel
    count, because per-image sums over pixels (a VAE's nats) do: at 128 px a healthy VAE's
    first loss is ~2e4; and with the model's own loss_scale (a fixed-sigma VAE's 1/sigma^2)."""
    return cfg.train.loss_bound * (cfg.data.image_size / 32) ** 2 * model.loss_scale()


def _bad_terms(terms: dict, bound: float) -> list[str]:
    return [k for k, v in terms.items() if not math.isfinite(v) or abs(v) > bound]


@dataclass
class _Run:
    """One call of train_run: what its steps hand each other."""

    plan: RunPlan
    model: GenerativeModel
    layout: torch.memory_format  # of every batch (channels_last or not)
    log: MetricsLog
    shuffle: torch.Generator  # batch order and flips; saved with the checkpoint
    steps_per_epoch: int
    epoch: int = 0  # the epoch in progress, or the last one finished between epochs
    step: int = 0
    bar: tqdm | None = None
    base_lrs: dict = field(default_factory=dict)  # each optimiser's lr per group, as built
    budget: Budget | None = None  # when the run stops and is tracked (bench.harness.budget)
    saved_budget: dict | None = None  # the checkpoint's budget state, when resuming
    done: bool = False  # the budget is reached: this epoch is the last


@dataclass
class _EpochTerms:
    """Sums of the loss terms of one epoch's first ``steps`` steps, and its timings."""

    started: float  # perf_counter at the start of the epoch
    sums: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    steps: int = 0
    train_s: float = 0.0
    cpu_s: float = 0.0
    track_s: float = 0.0  # wall and CPU seconds of tracked points: not training time
    track_cpu_s: float = 0.0
    diverged: str | None = None  # why the epoch stopped early


def train_run(plan: RunPlan, train: ImageSet, evaluator: Evaluator, device, say=print) -> str:
    """Train (or resume) one run; returns its final status, 'ok' or 'diverged'."""
    run = _build(plan, len(train.images), device)
    _resume(run, device, say)
    run.budget = _budget(run, train.images, device, evaluator)
    run.done = run.budget.reached(run.step)
    run.bar = _progress_bar(run)
    while not run.done:
        run.epoch += 1
        terms = _train_epoch(run, train.images, device, evaluator)
        if terms.diverged is not None:
            return _stop_diverged(run, terms, say)
        line = _record_training(run, terms)
        line += _evaluate_if_due(run, evaluator)
        _end_epoch(run, terms, line, say)
    return _finish(run, evaluator.n_fid)


def _build(plan: RunPlan, n_images: int, device) -> _Run:
    """The seeded model on ``device`` with the run's speed switches, and an empty log."""
    cfg = plan.config
    _seed_all(plan.seed)  # before the model: its initial weights draw from the global RNG
    layout = speed.memory_format(cfg.train.channels_last)
    model = build_model(plan.spec, asdict(cfg.backbone), cfg.data.image_size)
    model = model.to(device, memory_format=layout)
    speed.set_matmul_4x4(model, cfg.train.matmul_4x4)
    if cfg.train.compile:
        speed.compile_modules(model)
    log = MetricsLog(plan.dir / METRICS_FILE, plan.run_id, plan.spec.label, plan.seed)
    shuffle = torch.Generator().manual_seed(plan.seed)
    steps = steps_per_epoch(n_images, cfg.train.batch_size)
    # Before any checkpoint loads: a run saved mid-warm-up holds a reduced lr.
    return _Run(plan, model, layout, log, shuffle, steps, base_lrs=optimizer_lrs(model))


def optimizer_lrs(model: GenerativeModel) -> dict[str, list[float]]:
    """Each optimiser's lr per parameter group, by the name model.optimizers() gives it."""
    return {k: [g["lr"] for g in o.param_groups] for k, o in model.optimizers().items()}


def warm_up_lr(model: GenerativeModel, base_lrs: dict, step: int, warmup_steps: int) -> None:
    """Step s (0-based) of the first ``warmup_steps`` uses (s + 1) / N of each optimiser's
    lr in base_lrs; from step N on, that lr itself. A function of the step alone, so a
    resumed run continues the same ramp."""
    if not warmup_steps or step > warmup_steps:
        return
    factor = min(1.0, (step + 1) / warmup_steps)
    for name, opt in model.optimizers().items():
        for group, lr in zip(opt.param_groups, base_lrs[name], strict=True):
            group["lr"] = lr * factor


def _resume(run: _Run, device, say) -> None:
    """Continue after the last checkpoint, if any: weights, optimisers, epoch and step, every
    RNG stream, and the log's rows up to that epoch (later ones are redone)."""
    path = run.plan.dir / CHECKPOINT_FILE
    io.remove_stray_temp_files(run.plan.dir)  # half-written files of a killed earlier attempt
    state = _load_or_set_aside(run, path, say) if path.exists() else None
    if state is not None:
        run.epoch, run.step = state["epoch"], state["step"]
        _set_rng_state(state["rng"])
        run.shuffle.set_state(state["rng"]["shuffle"])
        run.log.load_until(run.epoch)
        run.saved_budget = state.get("budget")
        say(f"[{run.plan.run_id}] resuming after epoch {run.epoch} (step {run.step})")
    # After loading, which restores the optimisers' saved flags; a fresh run needs it as well.
    speed.set_fused_adam(run.model, device, run.plan.config.train.fused_adam)


def _load_or_set_aside(run: _Run, path: Path, say) -> dict | None:
    """The checkpoint loaded into the run's model; None (a fresh start) when it is corrupt,
    after renaming it aside. The model is untouched then, so the restart equals a new run."""
    try:
        return load_checkpoint(path, run.model)
    except CorruptCheckpoint as e:
        kept = set_aside(path)
        say(f"[{run.plan.run_id}] {e}: moved to {kept.name}; restarting this run from scratch")
        return None


def _budget(run: _Run, images: torch.Tensor, device, evaluator: Evaluator) -> Budget:
    """The run's budget; FLOPs per step counted on the first batch (a copy of the model)."""
    cfg = run.plan.config

    def count():
        x = to_model_space(images[: cfg.train.batch_size], device)
        return step_flops(
            run.model, x.contiguous(memory_format=run.layout), cfg.train.precision, device
        )

    points = cfg.eval.track_points if evaluator.n_track else 0
    return plan_budget(cfg, run.steps_per_epoch, count, run.saved_budget, points, run.step)


def _progress_bar(run: _Run) -> tqdm:
    return tqdm(
        total=run.budget.max_steps,
        initial=run.step,
        desc=run.plan.run_id,
        disable=not sys.stderr.isatty(),
        leave=False,
        dynamic_ncols=True,
    )


def _train_epoch(run: _Run, images: torch.Tensor, device, evaluator: Evaluator) -> _EpochTerms:
    """One pass over the shuffled images, or less: stops after the step that reaches the
    budget (run.done), and at the first step whose terms are not finite or exceed
    train.loss_bound. Tracked points fall between steps; their time is not training time."""
    cfg, budget = run.plan.config.train, run.budget
    out, cpu0 = _EpochTerms(time.perf_counter()), time.process_time()
    spent = budget.train_seconds  # before this epoch
    order = torch.randperm(len(images), generator=run.shuffle)
    for i in range(run.steps_per_epoch):
        x = _batch(run, images, order, i, device)
        warm_up_lr(run.model, run.base_lrs, run.step, cfg.lr_warmup_steps)
        with speed.step_context(cfg.precision, device):
            raw = run.model.train_step(x, run.epoch - 1 + i / run.steps_per_epoch)
        terms = {k: float(v) for k, v in raw.items()}
        run.step += 1
        bad = _bad_terms(terms, _loss_bound(run.plan.config, run.model))
        if bad:
            out.diverged = f"{bad[0]}={terms[bad[0]]} at step {run.step}"
            return out
        for k, v in terms.items():
            out.sums[k] += v
        out.steps += 1
        budget.train_seconds = spent + time.perf_counter() - out.started - out.track_s
        run.done = budget.reached(run.step)
        if budget.track_due(run.step):
            _track(run, evaluator, out, epoch_end=run.done or i == run.steps_per_epoch - 1)
        run.bar.update(1)
        run.bar.set_postfix({k: f"{v:.3g}" for k, v in list(terms.items())[:3]}, refresh=False)
        if run.done:
            break
    out.train_s = time.perf_counter() - out.started - out.track_s
    # CPU-seconds of all this process's threads: the compute a CPU run actually used.
    out.cpu_s = time.process_time() - cpu0 - out.track_cpu_s
    return out


def _track(run: _Run, evaluator: Evaluator, out: _EpochTerms, epoch_end: bool) -> None:
    """A tracked point's rows at the current (epoch, step): track/*, the cumulative counters
    (those of the epoch's end stand for them there) and its evaluation time."""
    t0, cpu0 = time.perf_counter(), time.process_time()
    for m in evaluator.track(run.model):
        run.log.add(run.epoch, run.step, TRACK_PREFIX + m.metric, m.value, m.n)
    if not epoch_end:
        _log_cumulative(run)
    run.log.add(run.epoch, run.step, TRACK_SECONDS, time.perf_counter() - t0)
    out.track_s += time.perf_counter() - t0
    out.track_cpu_s += time.process_time() - cpu0


def _log_cumulative(run: _Run) -> None:
    for name, value in run.budget.cumulative(run.step).items():
        run.log.add(run.epoch, run.step, name, value)


def _batch(run: _Run, images: torch.Tensor, order: torch.Tensor, i: int, device):
    """Batch ``i`` of this epoch's order, in model space; flips draw from the shuffle stream."""
    batch = run.plan.config.train.batch_size
    x = to_model_space(images[order[i * batch : (i + 1) * batch]], device)
    x = x.contiguous(memory_format=run.layout)
    if run.plan.config.data.hflip:
        flip = torch.rand(len(x), generator=run.shuffle) < 0.5
        x[flip] = x[flip].flip(-1)
    return x


def _log_term_means(run: _Run, terms: _EpochTerms) -> None:
    for k, v in terms.sums.items():
        run.log.add(run.epoch, run.step, f"{TRAIN_PREFIX}{k}", v / max(terms.steps, 1))


def _stop_diverged(run: _Run, terms: _EpochTerms, say) -> str:
    """Keep the means of the steps before the bad one, and mark the run diverged."""
    _log_term_means(run, terms)
    run.log.flush()
    _write_status(run.plan, Status.DIVERGED, run.epoch, run.step, terms.diverged, run.step)
    run.bar.close()
    say(f"[{run.plan.run_id}] diverged: {terms.diverged}")
    return Status.DIVERGED


def _record_training(run: _Run, terms: _EpochTerms) -> str:
    """Rows of the epoch's mean terms and training cost; returns the epoch's progress line."""
    cfg, log, epoch, step = run.plan.config, run.log, run.epoch, run.step
    _log_term_means(run, terms)
    log.add(epoch, step, TRAIN_SECONDS, terms.train_s)
    log.add(epoch, step, TRAIN_CPU_SECONDS, terms.cpu_s)
    images = terms.steps * cfg.train.batch_size  # a budget may end the epoch early
    log.add(epoch, step, TRAIN_IMAGES_PER_S, images / terms.train_s)
    _log_cumulative(run)
    of = f"/{cfg.train.epochs}" if cfg.train.epochs else ""
    return f"[{run.plan.run_id}] epoch {epoch}{of} " + " ".join(
        f"{k}={v / terms.steps:.4g}" for k, v in list(terms.sums.items())[:3]
    )


def _eval_due(cfg: SweepConfig, epoch: int, last: bool) -> bool:
    """Every eval.every-th epoch (0: none) and the run's last, which its budget decides."""
    return last or (cfg.eval.every > 0 and epoch % cfg.eval.every == 0)


def _evaluate_if_due(run: _Run, evaluator: Evaluator) -> str:
    """Evaluate at every eval.every-th epoch and the last: rows and pictures. Returns the
    progress line's part."""
    cfg, epoch = run.plan.config, run.epoch
    if not _eval_due(cfg, epoch, run.done):
        return ""
    t1 = time.perf_counter()
    # The run's own evaluation count (eval.extras_every counts it), from its epochs: the same
    # after a resume, and independent of other runs the evaluator served before.
    index = 1 + sum(_eval_due(cfg, e, False) for e in range(1, epoch))
    result = evaluator(run.model, final=run.done, index=index)
    for m in result.metrics:
        run.log.add(epoch, run.step, m.metric, m.value, m.n)
    run.log.add(epoch, run.step, EVAL_SECONDS, time.perf_counter() - t1)
    _save_pictures(run.plan, run.model, evaluator.heldout, cfg.eval.grid_images, result.pictures)
    return " | eval:" + "".join(f" {m.metric}={m.value:.4g}" for m in result.metrics)


def _end_epoch(run: _Run, terms: _EpochTerms, line: str, say) -> None:
    """Epoch wall time, rows to disk, a checkpoint when due (always after the last epoch),
    status 'running', the progress line."""
    cfg, plan, epoch = run.plan.config, run.plan, run.epoch
    run.log.add(epoch, run.step, EPOCH_WALL_SECONDS, time.perf_counter() - terms.started)
    run.log.flush()
    every = cfg.train.checkpoint_every
    if run.done or (every and epoch % every == 0):
        rng = {**_rng_state(), "shuffle": run.shuffle.get_state()}
        state = run.budget.state()  # budget used so far: a resumed run stops where this one would
        save_checkpoint(plan.dir / CHECKPOINT_FILE, run.model, epoch, run.step, rng, state)
    _write_status(plan, Status.RUNNING, epoch, run.step)
    if run.bar.disable:
        say(line)
    else:
        run.bar.write(line)


def _finish(run: _Run, n_fid: int) -> str:
    run.bar.close()
    # Summary rows are (re)written here, so a run killed after its last checkpoint still gets them.
    add_summary(run.log, run.epoch, run.step, n_fid)
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux; process peak
    run.log.add(run.epoch, run.step, PEAK_RSS, rss_kib / 1024)
    run.log.flush()
    _write_status(run.plan, Status.OK, run.epoch, run.step)
    return Status.OK
