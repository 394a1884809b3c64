"""`bench fid PATH_A PATH_B`: FID between two folders of images or .npz statistics files.

Same usage as ``python -m pytorch_fid`` (and the same numbers with --exact), plus: folders are
searched recursively, images of different sizes are allowed (batched by size), the weights are
found offline (bench.metrics.fid), and the default is the folded fp32 network runs publish
(pytorch-fid's numbers to fp32 rounding; --fast for bf16 where the CPU has it natively).
"""

from __future__ import annotations

import sys
import warnings
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import click
import numpy as np
import torch
from PIL import Image

from bench.core.errors import BenchError
from bench.core.io import atomic_write
from bench.metrics import fid

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def image_files(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive, extension case ignored), sorted."""
    return sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    )


def _load_rgb(path: Path) -> torch.Tensor:
    """3×H×W uint8, decoded as pytorch-fid does: PIL ``.convert('RGB')`` at full resolution."""
    try:
        with Image.open(path) as img:
            array = np.array(img.convert("RGB"))
    except OSError as err:
        raise BenchError(f"cannot read image {path}: {err}") from err
    return torch.from_numpy(array).permute(2, 0, 1)


def image_batches(files: list[Path], batch_size: int) -> Iterator[torch.Tensor]:
    """uint8 batches of equal-sized images; Inception resizes each to 299×299 itself, but a
    batch must share one size. Sizes come from the file headers (PIL opens lazily)."""
    by_size: dict[tuple[int, int], list[Path]] = defaultdict(list)
    for path in files:
        try:
            with Image.open(path) as img:
                by_size[img.size].append(path)
        except OSError as err:
            raise BenchError(f"cannot read image {path}: {err}") from err
    for group in by_size.values():
        for start in range(0, len(group), batch_size):
            yield torch.stack([_load_rgb(p) for p in group[start : start + batch_size]])


def load_stats_file(path: Path) -> tuple[np.ndarray, np.ndarray, int | None, str]:
    """(mu, sigma, n or None, mode or "") from a pytorch-fid style .npz (keys mu, sigma; n
    and mode when written by --save-stats)."""
    try:
        with np.load(path) as f:
            mu, sigma = f["mu"], f["sigma"]
            n = int(f["n"]) if "n" in f.files else None
            mode = str(f["mode"]) if "mode" in f.files else ""
    except (OSError, ValueError, KeyError) as err:
        raise BenchError(f"{path}: not a statistics file with arrays mu and sigma ({err})") from err
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
        raise BenchError(f"{path}: mu must be D and sigma D×D, got {mu.shape} and {sigma.shape}")
    return mu, sigma, n, mode


def check_path(path: Path, dims: int) -> list[Path] | None:
    """Validate one PATH before any Inception pass: a folder's image files, None for a .npz."""
    if not path.exists():
        raise BenchError(f"{path} does not exist; expected a folder of images or a .npz file")
    if path.is_file():
        if path.suffix.lower() != ".npz":
            raise BenchError(f"{path} is a file but not .npz; expected a folder or a .npz file")
        mu = load_stats_file(path)[0]
        if len(mu) != dims:
            raise BenchError(
                f"{path} holds {len(mu)}-d statistics but --dims is {dims}; pass --dims {len(mu)}"
            )
        return None
    files = image_files(path)
    if len(files) < 2:
        raise BenchError(
            f"{path}: found {len(files)} images, need >= 2 "
            f"(searched recursively for {', '.join(IMAGE_EXTENSIONS)})"
        )
    return files


def path_statistics(
    path: Path, device: torch.device, numerics: str, batch_size: int | None, dims: int
) -> tuple[np.ndarray, np.ndarray, int | None, str]:
    """(mu, sigma, n, what) of a folder of images or a .npz statistics file."""
    files = check_path(path, dims)
    if files is None:
        mu, sigma, n, mode = load_stats_file(path)
        return mu, sigma, n, f"statistics file, {mode or 'mode not recorded'}"
    size = batch_size or fid.default_batch_size(device, numerics)
    feats = fid.inception_features(
        image_batches(files, size),
        device=device,
        numerics=numerics,
        batch_size=size,
        dims=dims,
        progress=sys.stderr.isatty(),
    )
    mu, sigma = fid.feature_stats(feats)
    return mu, sigma, len(feats), f"folder, {fid.feature_mode(device, numerics)}"


def resolve_device(name: str) -> torch.device:
    """auto = cuda, else mps, else cpu; an unavailable device is a user error."""
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
    }
    if name == "auto":
        return torch.device(next(d for d in ("cuda", "mps", "cpu") if available[d]))
    if name not in available:
        raise BenchError(f"--device {name!r} unknown; accepted: auto, cpu, cuda, mps")
    if not available[name]:
        raise BenchError(f"--device {name} is not available on this machine; use auto or cpu")
    return torch.device(name)


def _save_stats(
    src: Path, dst: Path, device: torch.device, numerics: str, batch_size: int | None, dims: int
) -> None:
    if dst.suffix.lower() != ".npz" or dst.exists():
        raise BenchError(
            f"--save-stats writes PATH_B as a new .npz file; got {dst} "
            f"({'exists' if dst.exists() else 'not .npz'})"
        )
    if not src.is_dir():
        raise BenchError(f"--save-stats needs PATH_A to be a folder of images; got {src}")
    mu, sigma, n, what = path_statistics(src, device, numerics, batch_size, dims)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # keys mu, sigma as pytorch-fid; the rest for traceability
            np.savez_compressed(
                f,
                mu=mu,
                sigma=sigma,
                n=n,
                weights=fid.WEIGHTS_ID,
                mode=fid.feature_mode(device, numerics),
            )

    atomic_write(dst, write)
    click.echo(f"saved statistics of {src} (N={n}, {what}) to {dst}")


@click.command("fid")
@click.argument("path_a", type=click.Path(path_type=Path))
@click.argument("path_b", type=click.Path(path_type=Path))
@click.option(
    "--batch-size",
    type=int,
    default=None,
    help=f"Images per Inception batch [default: {fid.EXACT_BATCH} with --exact, else "
    f"{fid.FOLDED_BATCH['cpu']} on CPU ({fid.FAST_BATCH['cpu']} with --fast), "
    f"{fid.FAST_BATCH['cuda']} on CUDA].",
)
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | mps.")
@click.option(
    "--dims",
    type=int,
    default=2048,
    show_default=True,
    help="Inception feature layer: 64, 192, 768 or 2048 (pool3), as pytorch-fid.",
)
@click.option(
    "--folded",
    "numerics",
    flag_value="folded",
    default=True,
    help="BatchNorm folded, channels_last, fp32: what runs publish [default].",
)
@click.option(
    "--exact",
    "numerics",
    flag_value="exact",
    help="pytorch-fid's own network and sqrtm, unchanged (the reference).",
)
@click.option(
    "--fast",
    "numerics",
    flag_value="fast",
    help="Folded plus bf16 autocast on CPUs with native bf16 (what tracked points use).",
)
@click.option(
    "--save-stats",
    is_flag=True,
    help="Save the statistics of folder PATH_A to the new file PATH_B (.npz).",
)
def fid_command(
    path_a: Path,
    path_b: Path,
    batch_size: int | None,
    device: str,
    dims: int,
    numerics: str,
    save_stats: bool,
) -> None:
    """FID between PATH_A and PATH_B: folders of images or .npz statistics (mu, sigma)."""
    numerics = numerics or fid.PUBLISHED  # some click releases give None for the default flag
    if dims not in fid.DIMS:
        raise BenchError(f"--dims {dims} not supported; accepted: {', '.join(map(str, fid.DIMS))}")
    if batch_size is not None and batch_size < 1:
        raise BenchError(f"--batch-size must be >= 1, got {batch_size}")
    dev = resolve_device(device)
    if save_stats:
        _save_stats(path_a, path_b, dev, numerics, batch_size, dims)
        return
    for path in (path_a, path_b):
        check_path(path, dims)  # fail on bad input before minutes of Inception
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sides = [path_statistics(p, dev, numerics, batch_size, dims) for p in (path_a, path_b)]
        # exact: pytorch-fid's sqrtm; else the same trace from symmetric eigenvalues (~5× faster)
        method = "sqrtm" if numerics == "exact" else "eigh"
        (mu_a, sigma_a, _, _), (mu_b, sigma_b, _, _) = sides
        result = fid.frechet_distance(mu_a, sigma_a, mu_b, sigma_b, method=method)
    click.echo(f"FID: {result.fid:.6f}")
    click.echo(f"  Tr sqrt(S1 S2) by {result.method}")
    for path, (_, _, n, what) in zip((path_a, path_b), sides, strict=True):
        click.echo(f"  {path}: N={n if n is not None else '?'} ({what})")
    known_n = [s[2] for s in sides if s[2] is not None]
    if known_n and min(known_n) < fid.SMALL_N:
        click.echo(
            f"note: {fid.fid_label(min(known_n))}: N < {fid.SMALL_N}, FID is biased "
            "upward; compare only values with the same N",
            err=True,
        )
    for w in caught:
        if issubclass(w.category, RuntimeWarning) and str(w.message).startswith("FID:"):
            click.echo(f"warning: {w.message}", err=True)
