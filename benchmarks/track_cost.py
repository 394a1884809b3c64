"""What one tracked point costs, by part, against the libraries' own ways of computing it.

A tracked point (bench.metrics.evaluate.Evaluator.track) is N generated images through the
"fast" Inception path, FID against the first N real images and KID. This prints, for each N,
the seconds of each part and, for the two statistics, dogbench's computation against the
reference one on the same features, with the ratio and the relative difference of values:

- Fréchet distance: ``frechet_distance_of_features`` (the N×N Gram path for N < 2048) against
  ``frechet_distance`` on the covariances (the 2048² eigh path, used before) and pytorch-fid's
  ``calculate_frechet_distance`` (scipy sqrtm).
- KID: ``bench.metrics.feature_metrics.kid`` (one subset when a subset takes both whole sets)
  against torchmetrics' ``KernelInceptionDistance`` at the same subsets (100) and subset
  size (N), which computes the same subset 100 times.

Real images stand in for generated ones (CIFAR-10 dogs, test split vs train split), so the
timings do not depend on a trained model.

    python benchmarks/track_cost.py                      # N = 100, 200 on cifar10-dog
    python benchmarks/track_cost.py --n 100,200,500 --dataset petimages-dog --size 64
"""

from __future__ import annotations

import argparse
import inspect
import time
import warnings

import numpy as np
import torch
from pytorch_fid.fid_score import calculate_frechet_distance
from torchmetrics.image.kid import KernelInceptionDistance

from bench.core.paths import data_root
from bench.data.images import load_images
from bench.metrics import feature_metrics as fm
from bench.metrics import fid

# The evaluator's subsets (kid's default, as torchmetrics'); the reference gets the same.
KID_SUBSETS = inspect.signature(fm.kid).parameters["subsets"].default


def timed(fn, repeats: int):
    """(value of the last call, the fastest of `repeats` calls' seconds)."""
    best, value = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return value, best


def torchmetrics_kid(real: np.ndarray, fake: np.ndarray) -> float:
    metric = KernelInceptionDistance(
        feature=torch.nn.Identity(), subsets=KID_SUBSETS, subset_size=len(real)
    )
    metric.update(torch.from_numpy(real).double(), real=True)
    metric.update(torch.from_numpy(fake).double(), real=False)
    return float(metric.compute()[0])


def one_n(real_images, fake_images, n: int, repeats: int) -> list[str]:
    # Real first: it also builds the network, which a tracked point in training never pays.
    real_feats = fid.inception_features(real_images[:n], numerics="fast").astype(np.float64)
    fake_feats, t_inception = timed(
        lambda: fid.inception_features(fake_images[:n], numerics="fast"), 1
    )
    fake_feats = fake_feats.astype(np.float64)
    mu_r, s_r = fid.feature_stats(real_feats)
    fid.frechet_distance(mu_r, s_r, mu_r, s_r)  # warm the memoised real root, as training does
    ours, t_ours = timed(lambda: fid.frechet_distance_of_features(fake_feats, mu_r, s_r), repeats)
    eigh, t_eigh = timed(
        lambda: fid.frechet_distance(*fid.feature_stats(fake_feats), mu_r, s_r), repeats
    )
    mu_f, s_f = fid.feature_stats(fake_feats)
    try:
        sqrtm, t_sqrtm = timed(lambda: calculate_frechet_distance(mu_f, s_f, mu_r, s_r), 1)
    except ValueError:  # "Imaginary component": scipy's sqrtm on a rank-deficient product
        sqrtm, t_sqrtm = float("nan"), float("nan")
    kid, t_kid = timed(lambda: fm.kid(real_feats, fake_feats, subsets=KID_SUBSETS)[0], repeats)
    kid_tm, t_kid_tm = timed(lambda: torchmetrics_kid(real_feats, fake_feats), 1)

    def row(part, secs, ref_name, ref_secs, value, ref_value):
        return (
            f"| {n} | {part} | {secs:.3f} | {ref_name} | {ref_secs:.3f} | {ref_secs / secs:.1f}× "
            f"| {value:.6g} | {(value - ref_value) / abs(ref_value):+.1e} |"
        )

    return [
        f"| {n} | Inception (fast, {fid.feature_mode('cpu', 'fast')}) | {t_inception:.2f} "
        f"| — | — | — | — | — |",
        row("Fréchet (gram)", t_ours, "eigh on covariances", t_eigh, ours.fid, eigh.fid),
        row("Fréchet (gram)", t_ours, "pytorch-fid sqrtm", t_sqrtm, ours.fid, float(sqrtm)),
        row("KID", t_kid, "torchmetrics", t_kid_tm, kid, kid_tm),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", default="100,200", help="comma list of N (sample counts)")
    ap.add_argument("--dataset", default="cifar10-dog")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3, help="timed calls of the fast parts (best)")
    args = ap.parse_args()
    ns = [int(v) for v in args.n.split(",")]
    quiet = lambda *_: None  # noqa: E731
    real = load_images(args.dataset, "train", args.size, data_root(), announce=quiet).images
    fake = load_images(args.dataset, "test", args.size, data_root(), announce=quiet).images
    print(f"{args.dataset} {args.size} px; torch threads {torch.get_num_threads()}; "
          f"'fake' = test split, real = train split")  # fmt: skip
    print("| N | part | s | reference | reference s | speed-up | value | rel. diff |")
    print("|---|---|---|---|---|---|---|---|")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small-N FID warnings: expected here
        for n in ns:
            print("\n".join(one_n(real, fake, n, args.repeats)), flush=True)


if __name__ == "__main__":
    main()
