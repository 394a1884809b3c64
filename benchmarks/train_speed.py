"""Training throughput: the harness's step vs a plain eager fp32 loop, in one run.

For each model and image size, times (a) ``model.train_step`` exactly as ``bench run`` calls
it (config switches: train.precision, channels_last, matmul_4x4, fused_adam, compile) and
(b) the same architecture, batch and optimiser stepped the way the PyTorch DCGAN / VAE
examples do it (NCHW, fp32, no autocast, nn.Conv2d layers, torch's default Adam). Prints images/s of both, the ratio, and the mean loss of the last
steps of both runs from the same initial weights, batches and noise, so a speed-up that
changes the optimisation shows up next to the number.

The two are timed in alternating blocks (plain, harness, harness, plain, ...) and each one's
median block is reported, so a slow spell of a shared machine hits both alike instead of
whichever ran second; the spread of the per-pair ratios is printed with the ratio.

    python benchmarks/train_speed.py                 # all models, 32 and 64
    python benchmarks/train_speed.py --models gan --sizes 32 --steps 10 --repeats 4
    python benchmarks/train_speed.py --models ae,dogvae --sizes 128 --width 32 --latent 256 \
        --batch 128                                  # configs/dogvae.yaml's setting
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from bench.core.config import BackboneConfig, TrainConfig
from bench.harness import speed
from models import build_model, parse_model_spec


class Contender:
    """One way of stepping a model, with its own RNG stream so interleaving changes nothing."""

    def __init__(self, model, precision, channels_last):
        self.model, self.precision = model, precision
        self.layout = speed.memory_format(channels_last)
        self.model.to(memory_format=self.layout)
        torch.manual_seed(2)  # the same GAN noise / VAE eps stream for both contenders
        self.rng_state = torch.get_rng_state()
        self.losses: list[float] = []

    def run(self, batches) -> float:
        """Steps through ``batches``; returns seconds per step."""
        saved = torch.get_rng_state()
        torch.set_rng_state(self.rng_state)
        start = time.perf_counter()
        for x in batches:
            x = x.contiguous(memory_format=self.layout)
            with speed.step_context(self.precision, torch.device("cpu")):
                terms = self.model.train_step(x, 1.0)
            self.losses.append(float(next(iter(terms.values()))))
        seconds = (time.perf_counter() - start) / len(batches)
        self.rng_state = torch.get_rng_state()
        torch.set_rng_state(saved)
        return seconds


def measure(name, size, args) -> dict:
    torch.manual_seed(0)
    backbone = {"width": args.width, "latent_dim": args.latent}
    reference = build_model(parse_model_spec(name), backbone, size)
    harness = copy.deepcopy(reference)
    speed.set_matmul_4x4(harness, bool(args.matmul_4x4))
    speed.set_fused_adam(harness, torch.device("cpu"), bool(args.fused_adam))
    if args.compile:  # compilation happens in the untimed warm-up block
        speed.compile_modules(harness)
    plain = Contender(reference, "fp32", False)
    fast = Contender(harness, args.precision, bool(args.channels_last))
    g = torch.Generator().manual_seed(1)
    blocks = [
        [torch.rand(args.batch, 3, size, size, generator=g) * 2 - 1 for _ in range(n)]
        for n in [3] + [args.steps] * args.repeats
    ]
    plain.run(blocks[0]), fast.run(blocks[0])  # warm-up: allocator, oneDNN primitives
    plain_s, fast_s = [], []
    for i, batches in enumerate(blocks[1:]):
        order = (plain, fast) if i % 2 == 0 else (fast, plain)  # ABBA: cancels drift
        times = {id(c): c.run(batches) for c in order}
        plain_s.append(times[id(plain)]), fast_s.append(times[id(fast)])
    ratios = sorted(p / f for p, f in zip(plain_s, fast_s, strict=True))
    tail = max(5, len(plain.losses) // 4)
    return {
        "plain_ips": args.batch / statistics.median(plain_s),
        "fast_ips": args.batch / statistics.median(fast_s),
        "ratio_lo": ratios[0],
        "ratio_hi": ratios[-1],
        "plain_loss": statistics.fmean(plain.losses[-tail:]),
        "fast_loss": statistics.fmean(fast.losses[-tail:]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="ae,vae,gan")
    parser.add_argument("--sizes", default="32,64")
    parser.add_argument("--steps", type=int, default=10, help="steps per timed block")
    parser.add_argument("--repeats", type=int, default=6, help="timed blocks per contender")
    parser.add_argument("--batch", type=int, default=TrainConfig().batch_size)
    parser.add_argument("--precision", default=TrainConfig().precision)
    parser.add_argument("--channels-last", type=int, default=int(TrainConfig().channels_last))
    parser.add_argument("--matmul-4x4", type=int, default=int(TrainConfig().matmul_4x4))
    parser.add_argument("--fused-adam", type=int, default=int(TrainConfig().fused_adam))
    parser.add_argument("--compile", type=int, default=int(TrainConfig().compile))
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--width", type=int, default=BackboneConfig().width)
    parser.add_argument("--latent", type=int, default=BackboneConfig().latent_dim)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = speed.autocast_dtype(args.precision, torch.device("cpu"))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{torch.backends.cpu.get_cpu_capability()}; harness: precision={args.precision} "
        f"({dtype or 'fp32'}), channels_last={bool(args.channels_last)}, "
        f"matmul_4x4={bool(args.matmul_4x4)}, fused_adam={bool(args.fused_adam)}, "
        f"compile={bool(args.compile)}; batch {args.batch}, {args.repeats} alternating blocks "
        f"of {args.steps} steps each; backbone width {args.width}, latent {args.latent}"
    )
    print(
        f"{'model':6} {'size':>4} {'plain img/s':>12} {'harness img/s':>14} {'ratio':>6} "
        f"{'(pair range)':>13} {'plain loss':>11} {'harness loss':>13}"
    )
    for name in args.models.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            r = measure(name, size, args)
            print(
                f"{name:6} {size:>4} {r['plain_ips']:>12.1f} {r['fast_ips']:>14.1f} "
                f"{r['fast_ips'] / r['plain_ips']:>5.2f}x "
                f"{r['ratio_lo']:>5.2f}-{r['ratio_hi']:<5.2f}  "
                f"{r['plain_loss']:>11.4g} {r['fast_loss']:>13.4g}",
                flush=True,
            )


if __name__ == "__main__":
    main()
