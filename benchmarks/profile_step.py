"""Where a training step's time goes, and how far it is from the CPU's peak, in one run.

For each model, profiles (torch.profiler) steps of the training loop as ``bench run`` runs
them: batch assembly from the in-memory uint8 images (data), the model's ``train_step``
split into forward (incl. loss), backward (autograd engine) and optimiser (Adam step and
zero_grad), and the per-step loss read-out (sync). Forward is what remains of the profiled
loop's wall time after the other four, so Python time between its ops counts where it is
spent. It does this twice: "before" = the plain eager fp32 NCHW loop, "after" = the
harness's switches (train.precision, channels_last, compile as given; matmul_4x4 and
fused_adam as configured by default). Then it counts the step's FLOPs (convolutions and matmuls, forward + backward:
torch.utils.flop_counter) and divides by the unprofiled step time, next to the best GEMM
rate this machine reaches in fp32 and bf16 at the same thread count (the practical peak; the
bf16 one is used for any autocast precision).

Evaluation's share of a whole run is not here: every run records cost/train_seconds and
cost/eval_seconds (see BENCHMARKS.md for the standard sweep's split).

    python benchmarks/profile_step.py                       # ae,vae,gan at 32x32
    python benchmarks/profile_step.py --size 64 --models gan --steps 20
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile, record_function
from torch.utils.flop_counter import FlopCounterMode

from bench.core.config import BackboneConfig, TrainConfig
from bench.data.pixels import to_model_space
from bench.harness import speed
from models import build_model, parse_model_spec

PHASES = ("data", "forward", "backward", "optimizer", "sync")


def phase_of(name: str) -> str:
    """Which phase a top-level profiler event belongs to (names torch itself emits)."""
    if name in ("data", "sync"):
        return name
    if name.startswith("autograd::engine::evaluate_function"):
        return "backward"
    if name.startswith(("Optimizer.step#", "Optimizer.zero_grad#")):
        return "optimizer"
    return "forward"


def make_model(name, size, layout, compiled, tricks=False):
    """The model; ``tricks``: the harness's matmul_4x4 and fused_adam switches as configured."""
    torch.manual_seed(0)
    model = build_model(parse_model_spec(name), vars(BackboneConfig()), size)
    model = model.to(memory_format=layout)
    speed.set_matmul_4x4(model, tricks and TrainConfig().matmul_4x4)
    speed.set_fused_adam(model, torch.device("cpu"), tricks and TrainConfig().fused_adam)
    if compiled:
        speed.compile_modules(model)
    return model


def loop(model, images, steps, batch, precision, layout, gen):
    """The body of bench.harness.train.train_run's inner loop (data, step, read-out), ``steps`` times."""
    device = torch.device("cpu")
    for _ in range(steps):
        with record_function("data"):
            idx = torch.randint(len(images), (batch,), generator=gen)
            x = to_model_space(images[idx], device).contiguous(memory_format=layout)
        with speed.step_context(precision, device):
            terms = model.train_step(x, 1.0)
        with record_function("sync"):
            {k: float(v) for k, v in terms.items()}


def step_flops(model, images, batch, precision, layout) -> int:
    x = to_model_space(images[:batch], torch.device("cpu")).contiguous(memory_format=layout)
    counter = FlopCounterMode(display=False)
    with counter, speed.step_context(precision, torch.device("cpu")):
        model.train_step(x, 1.0)
    return counter.get_total_flops()


def profile_variant(name, size, images, args, label, precision, channels_last, compiled):
    layout = speed.memory_format(channels_last)
    model = make_model(name, size, layout, compiled, tricks=label == "after")
    gen = torch.Generator().manual_seed(1)
    loop(model, images, args.warmup, args.batch, precision, layout, gen)  # incl. compilation
    start = time.perf_counter()
    loop(model, images, args.steps, args.batch, precision, layout, gen)
    step_s = (time.perf_counter() - start) / args.steps
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        loop(model, images, args.steps, args.batch, precision, layout, gen)
        wall_us = (time.perf_counter() - start) * 1e6
    totals = defaultdict(float)
    for event in prof.events():
        # Top level (children are inside its time already); async events have no parent.
        if event.cpu_parent is None and not event.is_async:
            totals[phase_of(event.name)] += event.cpu_time_total
    totals["forward"] = wall_us - sum(v for k, v in totals.items() if k != "forward")
    return step_s, totals, wall_us


def gemm_peak(dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    """FLOP/s of an n x n x n matrix product in ``dtype``, best of ``reps``."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    best = float("inf")
    for _ in range(reps + 1):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def training_images(size: int, n: int = 2048) -> torch.Tensor:
    from bench.core import paths
    from bench.data import images as data

    try:
        return data.load_images("cifar10-dog", "train", size, paths.data_root(), print).images[:n]
    except Exception as e:  # no local dogs: same shapes and dtype, random pixels
        print(f"(CIFAR dogs not found: {e}; random uint8 images)")
        return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="ae,vae,gan")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch", type=int, default=TrainConfig().batch_size)
    parser.add_argument("--precision", default=TrainConfig().precision)
    parser.add_argument("--channels-last", type=int, default=int(TrainConfig().channels_last))
    parser.add_argument("--compile", type=int, default=int(TrainConfig().compile))
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    images = training_images(args.size)
    peak32, peak16 = gemm_peak(torch.float32), gemm_peak(torch.bfloat16)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{torch.backends.cpu.get_cpu_capability()}; batch {args.batch}, {args.size}x{args.size}; "
        f"practical peak (2048^3 GEMM): fp32 {peak32 / 1e9:.0f} GFLOP/s, "
        f"bf16 {peak16 / 1e9:.0f} GFLOP/s"
    )
    after = f"precision={args.precision} channels_last={bool(args.channels_last)}"
    after += f" compile={bool(args.compile)} matmul_4x4={TrainConfig().matmul_4x4}"
    after += f" fused_adam={TrainConfig().fused_adam}"
    print(f"before = plain fp32 NCHW eager; after = {after}")
    head = " ".join(f"{p:>9}" for p in PHASES)
    print(
        f"{'model':6} {'variant':7} {'img/s':>7} {head}  {'GFLOP/step':>10} {'GFLOP/s':>8} of peak"
    )
    for name in args.models.split(","):
        variants = (("before", "fp32", False, False),
                    ("after", args.precision, bool(args.channels_last), bool(args.compile)))  # fmt: skip
        # The same architecture and batch in both variants: the same FLOPs (shape formulas).
        layout = speed.memory_format(False)
        flops = step_flops(
            make_model(name, args.size, layout, False), images, args.batch, "fp32", layout
        )
        for label, precision, channels_last, compiled in variants:
            step_s, totals, wall_us = profile_variant(
                name, args.size, images, args, label, precision, channels_last, compiled
            )
            shares = " ".join(f"{100 * totals[p] / wall_us:>8.1f}%" for p in PHASES)
            low = speed.autocast_dtype(precision, torch.device("cpu")) is not None
            rate, peak = flops / step_s, peak16 if low else peak32
            print(
                f"{name:6} {label:7} {args.batch / step_s:>7.0f} {shares}  "
                f"{flops / 1e9:>10.2f} {rate / 1e9:>8.1f} {100 * rate / peak:>4.0f}%",
                flush=True,
            )


if __name__ == "__main__":
    main()
