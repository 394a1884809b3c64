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
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision.utils import save_image
from tqdm import tqdm

from bench.core import io
from bench.core.config import SweepConfig
from bench.data.images import ImageSet
from bench.data.pixels import to_model_space
from bench.harness import speed
from bench.metrics.evaluate import Evaluator
from bench.metrics.samplers import generate, reconstruct
from bench.results.write import MetricsLog, add_summary, load_checkpoint, save_checkpoint
from models import ModelSpec, build_model


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
        plan.dir / "status.json",
        {"status": status, "epoch": epoch, "step": step, "diverged_step": at, "reason": reason},
    )


def _save_pictures(plan: RunPlan, model, heldout: ImageSet, n: int, evaluator_pictures) -> None:
    def png(name, images, nrow):
        io.atomic_write(
            plan.dir / name, lambda tmp: save_image(images, tmp, nrow=nrow, padding=1, format="png")
        )

    png("samples.png", generate(model, n), int(math.sqrt(n)))
    for name, (images, nrow) in evaluator_pictures.items():  # samples@gmm, interpolation, ...
        png(f"{name}.png", images, nrow or int(math.sqrt(len(images))))
    real = heldout.images[: n // 2]
    recon = reconstruct(model, real)
    if recon is not None:  # rows alternate: 8 real images, then their reconstructions
        rows = torch.stack([real.float() / 255, recon]).view(2, -1, 8, *real.shape[1:])
        png("recon.png", rows.transpose(0, 1).reshape(-1, *real.shape[1:]), 8)


def _bad_terms(terms: dict, bound: float) -> list[str]:
    return [k for k, v in terms.items() if not math.isfinite(v) or abs(v) > bound]


def train_run(plan: RunPlan, train: ImageSet, evaluator: Evaluator, device, say=print) -> str:
    """Train (or resume) one run; returns its final status, 'ok' or 'diverged'."""
    cfg = plan.config
    _seed_all(plan.seed)
    layout = speed.memory_format(cfg.train.channels_last)
    model = build_model(plan.spec, asdict(cfg.backbone), cfg.data.image_size)
    model = model.to(device, memory_format=layout)
    speed.set_matmul_4x4(model, cfg.train.matmul_4x4)
    if cfg.train.compile:
        speed.compile_modules(model)
    log = MetricsLog(plan.dir / "metrics.csv", plan.run_id, plan.spec.label, plan.seed)
    shuffle = torch.Generator().manual_seed(plan.seed)
    epoch = step = 0
    if (plan.dir / "checkpoint.pt").exists():
        state = load_checkpoint(plan.dir / "checkpoint.pt", model)
        epoch, step = state["epoch"], state["step"]
        _set_rng_state(state["rng"])
        shuffle.set_state(state["rng"]["shuffle"])
        log.load_until(epoch)
        say(f"[{plan.run_id}] resuming after epoch {epoch} (step {step})")
    speed.set_fused_adam(model, device, cfg.train.fused_adam)  # after loading: it sets flags
    # eval.extras_every counts evaluations: continue this run's count, not the evaluator's (which
    # restarts at 0 after a resume and runs on across the runs of a sequential sweep).
    evaluator.evaluations = sum(
        1 for e in range(1, epoch + 1) if e % cfg.eval.every == 0 or e == cfg.train.epochs
    )
    images = train.images
    batch = cfg.train.batch_size
    steps_per_epoch = max(1, len(images) // batch)  # drop the last partial batch
    bar = tqdm(
        total=cfg.train.epochs * steps_per_epoch,
        initial=step,
        desc=plan.run_id,
        disable=not sys.stderr.isatty(),
        leave=False,
        dynamic_ncols=True,
    )
    while epoch < cfg.train.epochs:
        epoch += 1
        sums, t0, cpu0 = defaultdict(float), time.perf_counter(), time.process_time()
        order = torch.randperm(len(images), generator=shuffle)
        for i in range(steps_per_epoch):
            x = to_model_space(images[order[i * batch : (i + 1) * batch]], device)
            x = x.contiguous(memory_format=layout)
            if cfg.data.hflip:
                flip = torch.rand(len(x), generator=shuffle) < 0.5
                x[flip] = x[flip].flip(-1)
            with speed.step_context(cfg.train.precision, device):
                raw = model.train_step(x, epoch - 1 + i / steps_per_epoch)
            terms = {k: float(v) for k, v in raw.items()}
            step += 1
            bad = _bad_terms(terms, cfg.train.loss_bound)
            if bad:
                reason = f"{bad[0]}={terms[bad[0]]} at step {step}"
                for k, v in sums.items():
                    log.add(epoch, step, f"train/{k}", v / max(i, 1))
                log.flush()
                _write_status(plan, "diverged", epoch, step, reason, step)
                bar.close()
                say(f"[{plan.run_id}] diverged: {reason}")
                return "diverged"
            for k, v in terms.items():
                sums[k] += v
            bar.update(1)
            bar.set_postfix({k: f"{v:.3g}" for k, v in list(terms.items())[:3]}, refresh=False)
        train_s = time.perf_counter() - t0
        for k, v in sums.items():
            log.add(epoch, step, f"train/{k}", v / steps_per_epoch)
        log.add(epoch, step, "cost/train_seconds", train_s)
        # CPU-seconds of all this process's threads: the compute a CPU run actually used.
        log.add(epoch, step, "cost/train_cpu_seconds", time.process_time() - cpu0)
        log.add(epoch, step, "cost/train_images_per_s", steps_per_epoch * batch / train_s)
        line = f"[{plan.run_id}] epoch {epoch}/{cfg.train.epochs} " + " ".join(
            f"{k}={v / steps_per_epoch:.4g}" for k, v in list(sums.items())[:3]
        )
        if epoch % cfg.eval.every == 0 or epoch == cfg.train.epochs:
            t1 = time.perf_counter()
            line += " | eval:"
            for m in evaluator(model, final=epoch == cfg.train.epochs):
                log.add(epoch, step, m.metric, m.value, m.n)
                line += f" {m.metric}={m.value:.4g}"
            log.add(epoch, step, "cost/eval_seconds", time.perf_counter() - t1)
            _save_pictures(plan, model, evaluator.heldout, cfg.eval.grid_images, evaluator.pictures)
        log.add(epoch, step, "cost/epoch_wall_seconds", time.perf_counter() - t0)
        log.flush()
        every = cfg.train.checkpoint_every
        if epoch == cfg.train.epochs or (every and epoch % every == 0):
            save_checkpoint(
                plan.dir / "checkpoint.pt",
                model,
                epoch,
                step,
                {**_rng_state(), "shuffle": shuffle.get_state()},
            )
        _write_status(plan, "running", epoch, step)
        if bar.disable:
            say(line)
        else:
            bar.write(line)
    bar.close()
    # Summary rows are (re)written here, so a run killed after its last checkpoint still gets them.
    add_summary(log, epoch, step, evaluator.n_fid)
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux; process peak
    log.add(epoch, step, "cost/peak_rss_mib", rss_kib / 1024)
    log.flush()
    _write_status(plan, "ok", epoch, step)
    return "ok"
