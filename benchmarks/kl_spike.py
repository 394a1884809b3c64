"""The VAE's KL in its first training steps, with and without a learning-rate warm-up.

Adam's first update moves every weight by ~lr, so a layer's output moves by ~lr x the sum of
its |inputs|: the VAE's log-variance head (fan-in 4096 at 32 px, 16384 at 128 px, width 64)
can jump its KL from ~200 to 1e5-1e6 nats at step 2 on photos (BENCHMARKS.md "Real photos").
This steps ``model.train_step`` as ``bench run`` does (speed switches on, the harness's
linear warm-up, bench.harness.train.warm_up_lr) on the first training images, same seed and
batches for every warm-up length, and prints the KL at chosen steps and the largest one.

    python benchmarks/kl_spike.py --size 64 --width 64 --warmup 0,100
    python benchmarks/kl_spike.py --size 128 --width 32 --batch 128 --warmup 0,100
"""

from __future__ import annotations

import argparse

import torch

from bench.core.paths import data_root
from bench.data.images import load_images
from bench.harness import speed
from bench.harness.train import optimizer_lrs, warm_up_lr
from models import build_model, parse_model_spec

SHOWN = (0, 1, 2, 5, 10, 20)  # steps whose KL is printed


def kl_over_steps(args, warmup: int) -> list[float]:
    images = load_images(args.dataset, "train", args.size, data_root(), announce=lambda *a: None)
    x_all = images.images[: args.batch * args.steps].float() / 127.5 - 1
    torch.manual_seed(args.seed)
    backbone = {"width": args.width, "latent_dim": args.latent}
    model = speed.with_default_switches(
        build_model(parse_model_spec(args.model), backbone, args.size), torch.device("cpu")
    )
    base = optimizer_lrs(model)
    kls = []
    for step in range(args.steps):
        warm_up_lr(model, base, step, warmup)
        x = x_all[step * args.batch : (step + 1) * args.batch]
        terms = model.train_step(x.contiguous(memory_format=torch.channels_last), 0.0)
        kls.append(float(terms["kl_nats"]))
    return kls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vae")
    parser.add_argument("--dataset", default="petimages-dog")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--latent", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", default="0,100", help="warm-up lengths to compare")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(
        f"{args.model} on {args.dataset} at {args.size} px, width {args.width}, batch "
        f"{args.batch}, {args.steps} steps, {torch.get_num_threads()} threads"
    )
    shown = [s for s in SHOWN if s < args.steps]
    print(
        f"{'warm-up':>8} " + " ".join(f"{'KL@' + str(s + 1):>9}" for s in shown) + f" {'max KL':>9}"
    )
    for warmup in (int(w) for w in args.warmup.split(",")):
        kls = kl_over_steps(args, warmup)
        cells = " ".join(f"{kls[s]:>9.4g}" for s in shown)
        print(f"{warmup:>8} {cells} {max(kls):>9.4g}", flush=True)


if __name__ == "__main__":
    main()
