"""Quality at equal training time: dogbench's models against the textbook loops, side by side.

    python benchmarks/equal_time.py                          # gan and vae, 12 min, seeds 0,1,2
    python benchmarks/equal_time.py --models gan --minutes 12 --seeds 0,1,2 --n 1000

For each model and seed, two contenders train for the same ``--minutes`` of training time on
the CIFAR-10 dog training split (5000 images, 32 px) on this machine, one after the other
(textbook first, then dogbench, seed by seed, so a slow spell of a shared machine hits both):

- **dogbench**: ``bench run --models M`` with its defaults and the time as its budget
  (``train.budget_seconds``; tracked points off, final evaluation: N(0, I) samples only).
- **textbook** for ``gan``: the PyTorch DCGAN example's loop (pytorch/examples dcgan/main.py):
  nz 100, ngf = ndf = 64, weights N(0, 0.02), BatchNorm weights N(1, 0.02), Adam 2e-4 with
  β1 0.5, batch 64, BCE on D's sigmoid, D on a real and a fake batch then G with real labels,
  fp32, NCHW; its 64 px networks with one doubling stage fewer for 32 px images; samples
  drawn with G in train mode, in batches of 64, as the example draws ``netG(fixed_noise)``.
- **textbook** for ``vae``: the PyTorch VAE example's loss and optimiser (pytorch/examples
  vae/main.py: BCE summed over pixels + KL, Adam 1e-3, batch 128, fp32) on a convolutional
  encoder / decoder of the same DCGAN shape (width 64, latent 128); samples are N(0, I)
  decoded in eval mode, as the example samples.

Both are scored by the same FID@N against the first N CIFAR-dog **test** images (the folded
fp32 Inception path every published dogbench FID uses, one set of real statistics). Prints
one row per run (images seen, epochs, FID), then per model the mean ± std over seeds and
whether dogbench's mean FID is no worse than the textbook's (issue 14, item 8).
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from bench.core.config import EvalConfig
from bench.core.layout import CUM_IMAGES
from bench.core.paths import data_root
from bench.data.images import load_images
from bench.metrics import fid
from bench.metrics.evaluate import Evaluator
from bench.results.table import load_runs

DATASET = "cifar10-dog"
SIZE = 32


# ---------------------------------------------------------------- textbook networks


def dcgan_init(module: nn.Module) -> None:
    """The DCGAN example's weights_init: conv N(0, 0.02), BatchNorm weight N(1, 0.02), bias 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def example_generator(nz: int, ngf: int, out: nn.Module) -> nn.Sequential:
    """DCGAN example's G at 32 px: 1 -> 4 -> 8 -> 16 -> 32 (its 64 px net minus one stage)."""
    return nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 4, 4, 1, 0, bias=False),
        nn.BatchNorm2d(ngf * 4),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ngf * 2),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ngf),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf, 3, 4, 2, 1, bias=False),
        out,
    )


def example_discriminator(ndf: int, outputs: int, out: nn.Module) -> nn.Sequential:
    """DCGAN example's D at 32 px: 32 -> 16 -> 8 -> 4 -> 1."""
    return nn.Sequential(
        nn.Conv2d(3, ndf, 4, 2, 1, bias=False),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ndf * 2),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ndf * 4),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 4, outputs, 4, 1, 0, bias=False),
        out,
    )


# ---------------------------------------------------------------- textbook loops


class TextbookGAN:
    """pytorch/examples dcgan/main.py's training step, unchanged but for the image size."""

    batch_size, nz = 64, 100

    def __init__(self, width: int = 64):
        self.netG = example_generator(self.nz, width, nn.Tanh())
        self.netD = example_discriminator(width, 1, nn.Sigmoid())
        self.netG.apply(dcgan_init), self.netD.apply(dcgan_init)
        self.optD = torch.optim.Adam(self.netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.optG = torch.optim.Adam(self.netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.criterion = nn.BCELoss()

    def step(self, real: torch.Tensor) -> float:  # real in [-1, 1]; returns D's loss
        b = real.shape[0]
        self.netD.zero_grad()
        err_real = self.criterion(self.netD(real).view(-1), torch.ones(b))
        err_real.backward()
        fake = self.netG(torch.randn(b, self.nz, 1, 1))
        err_fake = self.criterion(self.netD(fake.detach()).view(-1), torch.zeros(b))
        err_fake.backward()
        self.optD.step()
        self.netG.zero_grad()
        self.criterion(self.netD(fake).view(-1), torch.ones(b)).backward()
        self.optG.step()
        return float((err_real + err_fake).detach())

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:  # in [0, 1]; G in train mode, as the example
        self.netG.train()
        chunks = [self.netG(torch.randn(min(64, n - i), self.nz, 1, 1)) for i in range(0, n, 64)]
        return (torch.cat(chunks) + 1) / 2


class TextbookVAE:
    """pytorch/examples vae/main.py's loss and optimiser on DCGAN-shaped conv networks."""

    batch_size, latent = 128, 128

    def __init__(self, width: int = 64):
        self.encoder = example_discriminator(width, 2 * self.latent, nn.Flatten())
        self.decoder = example_generator(self.latent, width, nn.Sigmoid())
        params = [*self.encoder.parameters(), *self.decoder.parameters()]
        self.opt = torch.optim.Adam(params, lr=1e-3)

    def step(self, real: torch.Tensor) -> float:  # returns the loss before the update
        x = (real + 1) / 2  # the example's pixels are in [0, 1]
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        recon = self.decoder(z[:, :, None, None])
        bce = nn.functional.binary_cross_entropy(recon, x, reduction="sum")
        kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        self.opt.zero_grad()
        loss = bce + kld
        loss.backward()
        self.opt.step()
        return float(loss.detach())

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        self.decoder.eval()
        return self.decoder(torch.randn(n, self.latent, 1, 1))


TEXTBOOK = {"gan": TextbookGAN, "vae": TextbookVAE}


def train_textbook(model_name: str, seed: int, seconds: float, train: torch.Tensor):
    """(model, images seen, epochs) after ``seconds`` of the textbook loop on ``train``
    (uint8): shuffled batches each epoch, the last one partial (the examples' DataLoader,
    drop_last=False), the clock read after every step. One untimed step on a copy first:
    dogbench's run also steps a copy before its clock starts (its FLOPs count), so neither
    pays for the first step's oneDNN set-up."""
    torch.manual_seed(seed)
    model = TEXTBOOK[model_name]()
    data = train.float().div(127.5).sub(1)
    copy.deepcopy(model).step(data[: model.batch_size])
    b, seen, start = model.batch_size, 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        order = torch.randperm(len(data))
        for i in range(0, len(data), b):
            batch = data[order[i : i + b]]
            model.step(batch)
            seen += len(batch)
            if time.perf_counter() - start >= seconds:
                break
    return model, seen, seen / len(data)


# ---------------------------------------------------------------- the dogbench contender


def bench_cli(*args: str) -> None:
    """`bench ARGS` in a fresh process, as a user runs it; its output goes to stderr."""
    command = [sys.executable, "-c", "from bench.cli import main; main()", *args]
    subprocess.run(command, check=True, stdout=2)  # fd 2: progress stays off the table


def train_dogbench(
    model_name: str, seed: int, seconds: float, n: int, out: Path, root: Path
) -> dict:
    """Final FID, images seen and epochs of `bench run` given ``seconds`` of training."""
    bench_cli(
        "run", "--models", model_name, "--dataset", DATASET, "--image-size", str(SIZE),
        "--device", "cpu",  # where the textbook loops run
        "--data-root", str(root),
        "--seeds", f"{seed},", "--fid-samples", str(n), "--out", str(out),
        "--set", "train.epochs=0", "--set", f"train.budget_seconds={seconds}",
        "--set", "eval.fid_split=test", "--set", "eval.track_points=0",
        "--set", "eval.samplers=prior", "--set", "eval.extras=",
    )  # fmt: skip
    _, metrics = load_runs(out)
    last = metrics.sort_values("step").groupby("metric")["value"].last()
    # A diverged run has no final evaluation: NaN, and the summary says so.
    return {"seen": float(last.get(CUM_IMAGES, math.nan)), "fid": float(last.get("fid", math.nan))}


# ---------------------------------------------------------------- scoring


class Scorer:
    """FID@n against the first n test images, exactly as a dogbench run with
    eval.fid_split=test scores its samples (the same cached real statistics)."""

    def __init__(self, n: int, root: Path):
        self.test = load_images(DATASET, "test", SIZE, root, announce=lambda *_: None)
        cfg = EvalConfig(fid_samples=n, fid_split="test")
        self.evaluator = Evaluator(cfg, self.test, self.test, torch.device("cpu"))
        self.n = self.evaluator.n_fid

    def fid(self, images01: torch.Tensor) -> float:
        mu, sigma, _ = self.evaluator.real_statistics()
        feats = fid.inception_features(fid.to_uint8(images01[: self.n]), numerics=fid.PUBLISHED)
        return float(fid.frechet_distance(*fid.feature_stats(feats), mu, sigma))  # as a run


def summary(rows: list[dict], model_name: str) -> str:
    def stats(who):
        values = [r["fid"] for r in rows if r["model"] == model_name and r["who"] == who]
        if not all(math.isfinite(v) for v in values):  # a diverged run: no FID
            return math.nan, math.nan, len(values)
        spread = statistics.stdev(values) if len(values) > 1 else float("nan")
        return statistics.fmean(values), spread, len(values)

    (ours, ours_sd, k), (book, book_sd, _) = stats("dogbench"), stats("textbook")
    verdict = "no worse: met" if ours <= book else "WORSE: not met"
    if not (math.isfinite(ours) and math.isfinite(book)):
        verdict = "undecided: a run diverged (FID nan)"
    return (
        f"{model_name}: dogbench FID {ours:.1f} ± {ours_sd:.1f} vs textbook {book:.1f} ± "
        f"{book_sd:.1f} over {k} seeds (mean ± std): dogbench {verdict}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="gan,vae", help=f"of {', '.join(TEXTBOOK)}")
    parser.add_argument("--minutes", type=float, default=12.0, help="training time per run")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--n", type=int, default=1000, help="FID samples (test split: 1000)")
    parser.add_argument("--out", type=Path, help="keep dogbench's runs here (default: temp)")
    parser.add_argument("--data-root", type=Path, help="as bench run's (default: its default)")
    args = parser.parse_args()
    models = [m for m in args.models.split(",") if m]
    unknown = sorted(set(models) - set(TEXTBOOK))
    if unknown:
        parser.error(
            f"--models {unknown[0]!r} has no textbook loop; accepted: {', '.join(TEXTBOOK)}"
        )
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    seconds = args.minutes * 60
    root = data_root(args.data_root)
    scorer = Scorer(args.n, root)
    train = load_images(DATASET, "train", SIZE, root, announce=lambda *_: None).images
    print(
        f"torch {torch.__version__}, CPU, {torch.get_num_threads()} threads, "
        f"{torch.backends.cpu.get_cpu_capability()}; {args.minutes:g} min of training per run; "
        f"FID@{scorer.n} vs {DATASET} test, {fid.feature_mode('cpu', fid.PUBLISHED)}"
    )
    print(f"{'model':5} {'seed':>4} {'loop':9} {'images':>8} {'epochs':>7} {'FID':>7}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out_root = args.out or Path(tmp)
        for model_name in models:
            for seed in seeds:
                net, seen, _ = train_textbook(model_name, seed, seconds, train)
                book_fid = scorer.fid(net.sample(scorer.n))
                rows.append(
                    dict(model=model_name, seed=seed, who="textbook", seen=seen, fid=book_fid)
                )
                del net
                ours = train_dogbench(
                    model_name,
                    seed,
                    seconds,
                    scorer.n,
                    out_root / f"{model_name}-seed{seed}-{args.minutes:g}min",
                    root,
                )
                rows.append(dict(model=model_name, seed=seed, who="dogbench", **ours))
                for r in rows[-2:]:
                    print(
                        f"{r['model']:5} {r['seed']:>4} {r['who']:9} {r['seen']:>8.0f} "
                        f"{r['seen'] / len(train):>7.1f} {r['fid']:>7.1f}",
                        flush=True,
                    )
    for model_name in models:
        print(summary(rows, model_name))


if __name__ == "__main__":
    main()
