"""Training throughput: the harness's step vs a plain eager fp32 loop, in one run.

For each model and image size, times (a) ``model.train_step`` exactly as ``bench run`` calls
it (config switches: train.precision, train.channels_last, train.compile) and (b) the same architecture,
batch and optimiser stepped the way the PyTorch DCGAN / VAE examples do it (NCHW, fp32, no
autocast). Prints images/s of both, the ratio, and the mean loss of the last steps of both
runs from the same initial weights and batches, so a speed-up that changes the optimisation
shows up next to the number.

    python benchmarks/train_speed.py                 # all models, 32 and 64
    python benchmarks/train_speed.py --models gan --sizes 32 --steps 40
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from bench import speed
from bench.config import BackboneConfig, TrainConfig
from models import build_model, parse_model_spec


def time_steps(model, batches, context, layout) -> tuple[float, list[float]]:
    """Seconds per step over ``batches`` (after 3 warm-up steps) and the first loss term."""
    losses = []
    for i, x in enumerate(batches):
        if i == 3:
            start = time.perf_counter()
        x = x.contiguous(memory_format=layout)
        with context():
            terms = model.train_step(x, 1.0)
        losses.append(float(next(iter(terms.values()))))
    return (time.perf_counter() - start) / (len(batches) - 3), losses


def measure(name, size, steps, batch, precision, channels_last, compiled):
    torch.manual_seed(0)
    spec = parse_model_spec(name)
    backbone = vars(BackboneConfig())
    device = torch.device("cpu")
    reference = build_model(spec, backbone, size)
    harness = copy.deepcopy(reference)
    if compiled:  # compilation happens in the untimed warm-up steps
        speed.compile_modules(harness)
    g = torch.Generator().manual_seed(1)
    batches = [torch.rand(batch, 3, size, size, generator=g) * 2 - 1 for _ in range(steps + 3)]
    results = {}
    for label, model, ctx, layout in (
        ("plain fp32", reference, lambda: speed.step_context("fp32", device),
         torch.contiguous_format),
        ("harness", harness.to(memory_format=speed.memory_format(channels_last)),
         lambda: speed.step_context(precision, device), speed.memory_format(channels_last)),
    ):  # fmt: skip
        torch.manual_seed(2)  # same GAN noise / VAE eps stream for both
        seconds, losses = time_steps(model, batches, ctx, layout)
        tail = losses[-max(5, steps // 4) :]
        results[label] = (batch / seconds, sum(tail) / len(tail))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="ae,vae,gan")
    parser.add_argument("--sizes", default="32,64")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=TrainConfig().batch_size)
    parser.add_argument("--precision", default=TrainConfig().precision)
    parser.add_argument("--channels-last", type=int, default=int(TrainConfig().channels_last))
    parser.add_argument("--compile", type=int, default=int(TrainConfig().compile))
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = speed.autocast_dtype(args.precision, torch.device("cpu"))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{torch.backends.cpu.get_cpu_capability()}; harness: precision={args.precision} "
        f"({dtype or 'fp32'}), channels_last={bool(args.channels_last)}, "
        f"compile={bool(args.compile)}; batch {args.batch}, "
        f"backbone {vars(BackboneConfig())}"
    )
    print(
        f"{'model':6} {'size':>4} {'plain img/s':>12} {'harness img/s':>14} {'ratio':>6} "
        f"{'plain loss':>11} {'harness loss':>13}"
    )
    for name in args.models.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            r = measure(
                name,
                size,
                args.steps,
                args.batch,
                args.precision,
                bool(args.channels_last),
                bool(args.compile),
            )
            (p_ips, p_loss), (h_ips, h_loss) = r["plain fp32"], r["harness"]
            print(
                f"{name:6} {size:>4} {p_ips:>12.1f} {h_ips:>14.1f} {h_ips / p_ips:>5.2f}x "
                f"{p_loss:>11.4g} {h_loss:>13.4g}",
                flush=True,
            )


if __name__ == "__main__":
    main()
