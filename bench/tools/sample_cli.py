"""Pictures from a finished run: `bench sample`, `bench interpolate`, `bench traverse`.

Each reads RESULTS/<run>/{config.json, checkpoint.pt} and writes one PNG (atomically);
data, when needed, is loaded as the run's config says (dataset, image size, train_limit).
"""

from __future__ import annotations

import math
from pathlib import Path

import click
import numpy as np
import torch
from torchvision.utils import save_image

from bench.core import io, paths
from bench.core.env import resolve_device
from bench.core.errors import BenchError
from bench.data.images import ImageSet, limit_train_images, load_images
from bench.data.pixels import to_model_space
from bench.metrics import samplers
from bench.metrics.image_metrics import latent_path_smoothness
from bench.metrics.samplers import CHUNK
from bench.results.trained import TrainedRun, load_trained_run

TRAVERSE_IMAGES = 1000  # held-out images that rank dimensions (and score MIG)


def _load(run: Path, device: str) -> TrainedRun:
    return load_trained_run(run, resolve_device(device))


def run_images(config: dict, split: str, data_root: Path) -> ImageSet:
    """The run's images for ``split``; train keeps the subset bench/sweep.run_sweep trained on."""
    data = config["data"]
    images = load_images(data["dataset"], split, data["image_size"], data_root, click.echo)
    if split == "train":
        limit_train_images(images, data.get("train_limit", 0))
    return images


def check_png(path: Path) -> Path:
    if path.suffix.lower() != ".png":
        raise BenchError(f"--out {str(path)!r}: only PNG is written; give a name ending in .png")
    return path


def write_png(path: Path, images01: torch.Tensor, nrow: int) -> None:
    """A grid (1 px black gaps, as samples.png) or, for one image, the image itself."""
    check_png(path)
    grid = images01[0] if len(images01) == 1 else images01
    io.atomic_write(path, lambda tmp: save_image(grid, tmp, nrow=nrow, padding=1, format="png"))


def _describe(trained: TrainedRun) -> str:
    return f"{trained.config['model']} (epoch {trained.epoch})"


def _common(f):
    """Options every generation command takes."""
    f = click.option(
        "--device",
        default="cpu",
        show_default=True,
        type=click.Choice(["auto", "cpu", "cuda", "mps"]),
    )(f)
    f = click.option(
        "--data-root",
        type=click.Path(file_okay=False, path_type=Path),
        help="Where datasets live (default: $DOGBENCH_DATA, else the user cache).",
    )(f)
    f = click.option(
        "--seed", default=0, show_default=True, type=int, help="Same seed, same picture."
    )(f)
    return click.argument("run", type=click.Path(path_type=Path))(f)


@click.command("sample")
@_common
@click.option("--n", "n", default=64, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--sampler",
    default="prior",
    show_default=True,
    help="prior | gaussian, gmm (AE/VAE: fitted to the training codes, Ghosh et al. 2020) "
    "| trunc<T>, e.g. trunc0.5 (truncated prior, Brock et al. 2019).",
)
@click.option("--out", default="dogs.png", show_default=True, type=click.Path(path_type=Path))
@click.option(
    "--individual",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also write one PNG per image into this folder.",
)
def sample_command(run, seed, data_root, device, n, sampler, out, individual):
    """New images from the run in RUN: a grid, and optionally one PNG per image."""
    check_png(out)
    kind, _ = samplers.parse_sampler_name(sampler)
    trained = _load(run, device)
    model = trained.model
    train = None
    if kind in samplers.FITTED and model.has_encoder:
        train = run_images(trained.config, "train", paths.data_root(data_root)).images
    fitted = samplers.fit_sampler(sampler, model, train, seed)
    images = samplers.sample_images(model, fitted, n, seed)
    write_png(out, images, math.ceil(math.sqrt(n)))
    if individual is not None:
        for i, image in enumerate(images):
            write_png(individual / f"{i:05d}.png", image[None], 1)
    fit = ", ".join(f"{k}={v}" for k, v in fitted.info.items())
    click.echo(
        f"wrote {out}: {n} samples of {_describe(trained)}, sampler {fitted.name}"
        + (f" ({fit})" if fit else "")
        + (f"; one PNG each in {individual}" if individual is not None else "")
    )


def _endpoints(trained: TrainedRun, pairs: int, g: torch.Generator, data_root):
    """2 x pairs latents (rows 2i, 2i+1 are pair i) and their real images (None for a GAN)."""
    model = trained.model
    if not model.has_encoder:
        return torch.randn(2 * pairs, model.config.latent_dim, generator=g), None
    test = run_images(trained.config, "test", paths.data_root(data_root)).images
    if len(test) < 2 * pairs:
        raise BenchError(
            f"--pairs {pairs} needs {2 * pairs} held-out images; there are {len(test)}"
        )
    real = test[torch.randperm(len(test), generator=g)[: 2 * pairs]]
    return samplers.encode_latents(model, real), real.float() / 255


@click.command("interpolate")
@_common
@click.option("--pairs", default=4, show_default=True, type=click.IntRange(min=1))
@click.option("--steps", default=8, show_default=True, type=click.IntRange(min=3))
@click.option("--spherical", is_flag=True, help="slerp instead of a straight line (White 2016).")
@click.option("--out", default="strips.png", show_default=True, type=click.Path(path_type=Path))
def interpolate_command(run, seed, data_root, device, pairs, steps, spherical, out):
    """Decoded paths between two latents, one strip per pair: AE/VAE between the codes of two
    held-out images (shown at the ends), GAN between two prior draws. Prints each strip's
    smoothness: CV of the consecutive-frame distances (0 = the image changes evenly)."""
    check_png(out)
    trained = _load(run, device)
    z, real = _endpoints(trained, pairs, torch.Generator().manual_seed(seed), data_root)
    rows = []
    for i in range(pairs):
        path = samplers.latent_path(z[2 * i], z[2 * i + 1], steps, spherical)
        frames = samplers.decode_latents(trained.model, path)
        cv, length = latent_path_smoothness(frames)
        click.echo(f"strip {i + 1}: cv={cv:.4f} length={length:.4f}")
        rows.append(
            frames
            if real is None
            else torch.cat([real[2 * i, None], frames, real[2 * i + 1, None]])
        )
    write_png(out, torch.cat(rows), len(rows[0]))
    how = "spherical" if spherical else "linear"
    click.echo(f"wrote {out}: {pairs} {how} strips of {steps} frames, {_describe(trained)}")


@torch.no_grad()
def posterior_codes(model, images_uint8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(codes, log-variances) of uint8 images; log-variances only for a VAE-style posterior."""
    if not model.has_posterior:
        return samplers.encode_latents(model, images_uint8), None
    parts = [
        model.posterior(to_model_space(images_uint8[i : i + CHUNK], model.device))
        for i in range(0, len(images_uint8), CHUNK)
    ]
    mu, logvar = (torch.cat([p[k].cpu().flatten(1) for p in parts]) for k in (0, 1))
    return mu, logvar


def traverse_rows(model, code: torch.Tensor, dims, spread: torch.Tensor, span: float, steps: int):
    """One row per dim: ``code`` with that dim moved over code_d + t * spread_d, t in
    [-span, span]; every other dim stays at the image's code."""
    t = torch.linspace(-span, span, steps)
    rows = []
    for d in dims:
        codes = code.repeat(steps, 1)
        codes[:, d] = code[d] + t * spread[d]
        rows.append(samplers.decode_latents(model, codes))
    return rows


def _report_mig(mu: torch.Tensor, test: ImageSet) -> None:
    from bench.metrics.disentangle import mig

    factors = {k: np.asarray(v[: len(mu)]) for k, v in test.factors.items()}
    score, per_factor = mig(mu.numpy(), factors)
    parts = ", ".join(f"{k} {v:.3f}" for k, v in per_factor.items())
    click.echo(f"MIG {score:.3f} over {len(mu)} held-out images ({parts}); Chen et al. 2018")


@click.command("traverse")
@_common
@click.option("--dims", default=8, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--range",
    "span",
    default=3.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Each dim moves +-RANGE times its spread (std) over held-out codes.",
)
@click.option("--steps", default=9, show_default=True, type=click.IntRange(min=2))
@click.option("--out", default="traverse.png", show_default=True, type=click.Path(path_type=Path))
def traverse_command(run, seed, data_root, device, dims, span, steps, out):
    """Vary one latent dimension at a time around a held-out image's code (AE/VAE): one row
    per dimension, most used first (VAE: largest mean KL per dim; AE: largest code
    variance). The real image leads each row. On the synthetic set, also prints MIG."""
    check_png(out)
    trained = _load(run, device)
    model = trained.model
    if not model.has_encoder:
        raise BenchError(
            f"{run}: traverse needs a model with an encoder (ae, vae), this run is "
            f"{trained.config['model']!r}; for a GAN use bench interpolate"
        )
    if dims > model.config.latent_dim:
        raise BenchError(f"--dims {dims}: the model has {model.config.latent_dim} latent dims")
    from bench.metrics.disentangle import latent_activity

    test = run_images(trained.config, "test", paths.data_root(data_root))
    mu, logvar = posterior_codes(model, test.images[:TRAVERSE_IMAGES])
    activity = latent_activity(mu.numpy(), None if logvar is None else logvar.numpy())
    order = [int(d) for d in np.argsort(-activity, kind="stable")[:dims]]
    which = int(torch.randint(len(mu), (1,), generator=torch.Generator().manual_seed(seed)))
    rows = traverse_rows(model, mu[which], order, mu.std(0), span, steps)
    real = test.images[which, None].float() / 255
    write_png(out, torch.cat([torch.cat([real, r]) for r in rows]), steps + 1)
    unit = "nats KL" if logvar is not None else "code variance"
    listed = ", ".join(f"{d} ({activity[d]:.3g})" for d in order)
    click.echo(f"dims by activity ({unit}): {listed}")
    if test.dataset == "synthetic" and test.factors:
        _report_mig(mu, test)
    click.echo(f"wrote {out}: {dims} dims x {steps} steps, {_describe(trained)}")
