"""Which BatchNorm mode to sample in: eval, train, or statistics recomputed after training.

    python benchmarks/bn_sampling.py results/smoke            # every finished run of the sweep
    python benchmarks/bn_sampling.py results/smoke --n 1000 --models gan

A decoder with BatchNorm can generate in three ways (issue 14, item 4):
- ``eval``: the running statistics kept during training (an exponential average, momentum
  0.1, of the last few hundred training batches), what dogbench has always used;
- ``train``: each generated batch normalised by its own statistics, as the PyTorch DCGAN
  example samples (``netG(fixed_noise)`` in train mode), batches of ``--batch`` latents;
- ``recomputed``: the running statistics reset and re-estimated from ``--recompute-batches``
  batches of fresh prior latents with the final weights (a cumulative average, momentum
  None), then eval mode. This removes the lag of the running average behind weights that
  were still moving, the usual suspect for eval mode being worse for GANs.

Every mode decodes the same latents (N drawn at once from the evaluation's sample seed, so
not the run's own chunked draw: eval-mode FIDs differ from the run's by sample noise), in
batches of ``--batch``; FID is against the first N images of the run's FID reference split,
on the published (folded fp32) Inception path, N = ``--n`` per side. Copies of the model are
used, so the checkpoint and its running statistics are not touched. Prints one row per run
and mode, then the mean rank and mean FID of each mode per model.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import pandas as pd
import torch

from bench.core.layout import CHECKPOINT_FILE, CONFIG_FILE
from bench.core.paths import data_root
from bench.data.images import load_images
from bench.data.pixels import to_unit
from bench.metrics import fid
from bench.metrics.samplers import SAMPLE_SEED
from bench.results.table import read_run_json
from bench.results.trained import load_trained_run

MODES = ("eval", "train", "recomputed")


def batchnorms(model: torch.nn.Module) -> list[torch.nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recompute_statistics(model, batches: int, batch: int, seed: int) -> None:
    """Re-estimate every BatchNorm's running mean/var from prior samples (in place)."""
    for bn in batchnorms(model):
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average: every batch weighs the same
    model.train()
    g = torch.Generator().manual_seed(seed)
    for _ in range(batches):
        model.sample(batch, g)
    model.eval()


@torch.no_grad()
def decode_in_mode(model, mode: str, z: torch.Tensor, batch: int, recompute_batches: int):
    model = copy.deepcopy(model)
    if mode == "recomputed":
        recompute_statistics(model, recompute_batches, batch, seed=SAMPLE_SEED + 1)
    model.train(mode == "train")
    return torch.cat(
        [to_unit(model.decode(part.to(model.device))).cpu() for part in z.split(batch)]
    )


def real_stats(config: dict, n: int, cache: dict):
    data, split = config["data"], config["eval"].get("fid_split", "train")
    key = (data["dataset"], split, data["image_size"], n)
    if key not in cache:
        images = load_images(data["dataset"], split, data["image_size"], data_root()).images[:n]
        cache[key] = fid.feature_stats(fid.inception_features(images, numerics=fid.PUBLISHED))
    return cache[key]


def measure(run_dir: Path, args, cache: dict) -> list[dict]:
    run = load_trained_run(run_dir)
    if not batchnorms(run.model):
        return []
    mu, sigma = real_stats(run.config, args.n, cache)
    z = torch.randn(
        args.n, run.model.config.latent_dim, generator=torch.Generator().manual_seed(SAMPLE_SEED)
    )
    rows = []
    for mode in MODES:
        fake = decode_in_mode(run.model, mode, z, args.batch, args.recompute_batches)
        feats = fid.inception_features(fake, numerics=fid.PUBLISHED)
        value = fid.frechet_distance(*fid.feature_stats(feats), mu, sigma).fid
        rows.append({"run": run_dir.name, "model": run.config["model"], "mode": mode, "fid": value})
        print(f"{run_dir.name:24s} {mode:10s} FID@{args.n} {value:8.2f}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", nargs="+", type=Path, help="sweep folders of finished runs")
    parser.add_argument("--n", type=int, default=500, help="samples and real images for FID")
    parser.add_argument("--batch", type=int, default=64, help="latents per decoded batch")
    parser.add_argument("--recompute-batches", type=int, default=40)
    parser.add_argument("--models", default="", help="comma list of model labels to keep")
    args = parser.parse_args()
    keep = set(filter(None, args.models.split(",")))
    cache: dict = {}
    rows = []
    for sweep in args.sweeps:
        for run_dir in sorted(p.parent for p in sweep.glob(f"*/{CHECKPOINT_FILE}")):
            label = read_run_json(run_dir, CONFIG_FILE).get("model")
            if keep and label not in keep:
                continue
            rows += measure(run_dir, args, cache)
    if not rows:
        raise SystemExit("no finished run with BatchNorm layers found")
    table = pd.DataFrame(rows)
    table["rank"] = table.groupby("run")["fid"].rank()
    summary = table.groupby(["model", "mode"]).agg(
        runs=("fid", "size"),
        fid_mean=("fid", "mean"),
        fid_std=("fid", "std"),
        mean_rank=("rank", "mean"),
    )
    print(summary.round(2).to_string())
    best = table.loc[table.groupby("run")["fid"].idxmin(), "mode"].value_counts()
    print("best mode per run:", dict(best), f"(of {table['run'].nunique()} runs)")


if __name__ == "__main__":
    main()
