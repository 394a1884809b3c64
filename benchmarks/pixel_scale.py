"""How many Adam steps a decoder needs to reach the pixel scale of its data.

The seed's ``dogvae`` decodes straight to 0-255 pixels with no output scaling. Adam moves each
weight by about lr per step whatever the gradient's size, so the last layers' output grows
by roughly lr x fan-in x |input| per step from ~0 towards the data's mean of ~110: a
step count, not an image count, limits it (Kingma & Ba 2015, sec. 2.1: the effective step
is bounded by lr). Until then its reconstruction error is about E[x^2], worse than the
mean image's. This steps ``model.train_step`` as ``bench run`` does (the harness's linear
lr warm-up, speed switches, autocast), over the training images in a fixed random order,
and prints per window of steps: the mean training recon MSE on [0, 1] pixels, the mean
decoded pixel next to the data's, and the first step whose batch MSE falls below the
mean-image MSE (the data's per-pixel variance, what predicting the average photo costs).

A batch smaller than the seed's 128 reaches the scale in about the same number of steps
(Adam's step does not grow with the batch), at a fraction of the cost: compare its first
windows with a batch-128 run's per-epoch train/recon_mse.

    python benchmarks/pixel_scale.py --model dogvae:latent_dim=256 --batch 32 --steps 3000
"""

from __future__ import annotations

import argparse

import torch

from bench.core.paths import data_root
from bench.data.images import load_images
from bench.harness import speed
from bench.harness.train import optimizer_lrs, warm_up_lr
from models import build_model, parse_model_spec


def to_unit(x_uint8: torch.Tensor) -> torch.Tensor:
    return x_uint8.float() / 255


def mean_image_mse(images: torch.Tensor, chunk: int = 512) -> float:
    """The MSE on [0, 1] of predicting every image by the per-pixel mean image."""
    total = torch.zeros(images.shape[1:], dtype=torch.float64)
    square = torch.zeros_like(total)
    for start in range(0, len(images), chunk):
        x = to_unit(images[start : start + chunk]).double()
        total += x.sum(0)
        square += (x * x).sum(0)
    mean = total / len(images)
    return float((square / len(images) - mean * mean).mean())


def build(args) -> torch.nn.Module:
    torch.manual_seed(args.seed)
    backbone = {"width": args.width, "latent_dim": args.latent}
    model = build_model(parse_model_spec(args.model), backbone, args.size)
    return speed.with_default_switches(model, torch.device("cpu"))


@torch.no_grad()
def decoded_mean(model, x: torch.Tensor) -> float:
    """Mean pixel of the model's reconstructions of x, on the [0, 1] scale but not clamped
    to it (a decoder still far below the scale has negative pixels)."""
    model.eval()
    recon = model.reconstruct(x)
    model.train()
    return float((recon.float() + 1).mean() / 2)


def run(args, images: torch.Tensor, baseline: float, say=print) -> int | None:
    """Steps the model, prints one line per window; returns the first step (1-based) whose
    batch recon MSE is below ``baseline``, or None."""
    model = build(args)
    base = optimizer_lrs(model)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(args.seed))
    per_epoch = len(images) // args.batch
    window, first_below = [], None
    for step in range(args.steps):
        warm_up_lr(model, base, step, args.warmup)
        pick = order[(step % per_epoch) * args.batch :][: args.batch]
        x = (to_unit(images[pick]) * 2 - 1).contiguous(memory_format=torch.channels_last)
        with speed.step_context("auto", torch.device("cpu")):
            terms = model.train_step(x, step / per_epoch)
        mse = float(terms["recon_mse"])
        window.append(mse)
        if first_below is None and mse < baseline:
            first_below = step + 1
        if (step + 1) % args.every == 0:
            say(
                f"{step + 1:>6} {sum(window) / len(window):>10.4f} "
                f"{decoded_mean(model, x):>12.3f} {float(to_unit(images[pick]).mean()):>10.3f}",
            )
            window = []
    return first_below


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="dogvae:latent_dim=256")
    parser.add_argument("--dataset", default="petimages-dog")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--latent", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--every", type=int, default=100, help="steps per printed window")
    parser.add_argument("--warmup", type=int, default=100, help="lr warm-up steps")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    data = load_images(args.dataset, "train", args.size, data_root(), announce=lambda *a: None)
    baseline = mean_image_mse(data.images)
    print(
        f"{args.model} on {args.dataset} ({len(data.images)} train images) at {args.size} px, "
        f"batch {args.batch}, warm-up {args.warmup}, {torch.get_num_threads()} threads; "
        f"mean-image MSE {baseline:.4f}",
        flush=True,
    )
    print(f"{'step':>6} {'recon MSE':>10} {'decoded mean':>12} {'data mean':>10}")
    first = run(args, data.images, baseline, say=lambda s: print(s, flush=True))
    where = f"step {first}" if first else f"not within {args.steps} steps"
    print(f"first batch below the mean-image MSE: {where}")


if __name__ == "__main__":
    main()
