"""Metrics on image tensors (N×C×H×W, float in [0, 1] or uint8 0..255): reconstruction error,
sharpness, smoothness of latent interpolations and within-batch diversity.

Pure functions; every function returns plain floats or a per-image tensor.
"""

import math

import torch
import torch.nn.functional as F
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

from bench.core.errors import BenchError

_RANGE_TOL = 1e-6  # slack for float rounding around [0, 1]
# ITU-R BT.601 luma, the weights of PIL's convert("L") and OpenCV's RGB2GRAY.
_LUMA = (0.299, 0.587, 0.114)
# 3×3 Laplacian (4-neighbour), OpenCV's Laplacian(ksize=1) kernel.
_LAPLACIAN = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))
_CHUNK_ROWS = 256
# Per-image metrics run on slices of about this many values (images x channels x pixels):
# SSIM holds ~250 bytes of temporaries per value, so a slice costs ~0.5 GiB at any size
# (42 images at 128 px, 682 at 32 px). Whole, 1000 held-out images at 128 px peaked at
# 15.5 GiB of RSS in configs/dogvae.yaml (BENCHMARKS.md "Peak memory").
_CHUNK_VALUES = 2**21


def _check_unit_images(name: str, images: torch.Tensor, min_size: int = 1) -> None:
    """Refuse anything but N×C×H×W uint8 (0..255) or float images in [0, 1]: floats outside
    [0, 1] (model outputs in [-1, 1] must be mapped with (x + 1) / 2 first) are an error, so
    a range mistake cannot silently skew a metric. Checks the whole tensor, copying nothing."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or min(images.shape[2:]) < min_size:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise BenchError(f"{name}: expected an N×C×H×W tensor with H, W >= {min_size}, got {shape}")
    if images.dtype == torch.uint8:
        return
    if not images.is_floating_point():
        raise BenchError(
            f"{name}: dtype {images.dtype} not supported; pass uint8 (0..255) or float in [0, 1]"
        )
    lo, hi = (float(v) for v in images.aminmax())
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo < -_RANGE_TOL or hi > 1 + _RANGE_TOL:
        raise BenchError(
            f"{name}: float images must lie in [0, 1], got range [{lo:.4g}, {hi:.4g}]; map [-1, 1] with (x + 1) / 2"
        )


def _to_unit(images: torch.Tensor) -> torch.Tensor:
    """Checked images as float (float64 kept, else float32) in [0, 1]; uint8 divided by 255."""
    if images.dtype == torch.uint8:
        return images.float() / 255.0
    x = images if images.dtype == torch.float64 else images.float()
    return x.clamp(0.0, 1.0)


def _as_unit_images(name: str, images: torch.Tensor, min_size: int = 1) -> torch.Tensor:
    _check_unit_images(name, images, min_size)
    return _to_unit(images)


def _per_image_pairs(per_image, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """``per_image(x, x_hat)`` (one value per image, both as float of one dtype in [0, 1]) over
    slices of images: the same values, with the float copies and filtered maps of one slice
    at a time. Shapes and ranges are checked on the whole tensors first."""
    _check_unit_images("x", x)
    _check_unit_images("x_hat", x_hat)
    if x.shape != x_hat.shape:
        raise BenchError(
            f"x and x_hat shapes differ: {tuple(x.shape)} vs {tuple(x_hat.shape)}; pass an image and its reconstruction"
        )
    # _to_unit keeps float64 and makes everything else float32; the pair shares the wider.
    dtype = torch.float64 if torch.float64 in (x.dtype, x_hat.dtype) else torch.float32
    return torch.cat(
        [
            per_image(_to_unit(a).to(dtype), _to_unit(b).to(dtype))
            for a, b in zip(_slices(x), _slices(x_hat), strict=True)
        ]
    )


def _slices(images: torch.Tensor) -> list[torch.Tensor]:
    """``images`` in consecutive slices of about _CHUNK_VALUES values (at least one slice)."""
    rows = max(1, _CHUNK_VALUES // max(math.prod(images.shape[1:]), 1))
    return list(images.split(rows)) or [images]


def recon_mse(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Per-pixel (and per-channel) squared error, averaged over pixels then images, [0, 1] scale."""
    per_image = _per_image_pairs(
        lambda a, b: ((a - b) ** 2).mean(dim=(1, 2, 3), dtype=torch.float64), x, x_hat
    )
    return float(per_image.mean())


def psnr(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Mean over images of per-image PSNR in dB, data range 1: mean_i 10·log10(1 / MSE_i).

    Mean of per-image PSNRs (not PSNR of the mean MSE), the usual convention in VAE papers;
    it is >= the PSNR of the mean MSE (Jensen). An exact reconstruction gives +inf.
    torchmetrics' peak_signal_noise_ratio with dim=(1, 2, 3) gives the per-image values.
    """
    per_image = _per_image_pairs(
        lambda a, b: peak_signal_noise_ratio(b, a, data_range=1.0, reduction="none", dim=(1, 2, 3)),
        x,
        x_hat,
    )
    return float(per_image.mean())


def ssim(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Mean SSIM (Wang et al. 2004) over images: torchmetrics' structural_similarity_index_measure,
    data_range=1, its defaults (11×11 Gaussian window, σ=1.5, k1=0.01, k2=0.03), per image
    (reduction "none"), then the mean: torchmetrics' own "elementwise_mean"."""
    per_image = _per_image_pairs(
        lambda a, b: structural_similarity_index_measure(b, a, data_range=1.0, reduction="none"),
        x,
        x_hat,
    )
    return float(per_image.mean())


def _gray(images: torch.Tensor) -> torch.Tensor:
    """N×1×H×W luma of N×3×H×W RGB (or N×1×H×W passed through)."""
    if images.shape[1] == 1:
        return images
    if images.shape[1] != 3:
        raise BenchError(
            f"expected 1 or 3 channels, got {images.shape[1]}; pass RGB or grayscale images"
        )
    weights = torch.tensor(_LUMA, dtype=images.dtype).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def laplacian_variance(images: torch.Tensor) -> torch.Tensor:
    """Per-image variance of the 3×3 Laplacian of the luma image (Pech-Pacheco et al. 2000,
    "Diatom autofocusing in brightfield microscopy"): a focus measure, lower = blurrier.

    Valid convolution (no padding, so borders add nothing), population variance, [0, 1] scale.
    Depends on resolution: compare only images of the same size.
    """
    _check_unit_images("images", images, min_size=3)

    def of_slice(rows: torch.Tensor) -> torch.Tensor:
        gray = _gray(_to_unit(rows))
        kernel = torch.tensor(_LAPLACIAN, dtype=gray.dtype).view(1, 1, 3, 3)
        return F.conv2d(gray, kernel).var(dim=(1, 2, 3), unbiased=False)

    return torch.cat([of_slice(rows) for rows in _slices(images)])


def high_frequency_energy(images: torch.Tensor, cutoff: float = 0.25) -> torch.Tensor:
    """Per-image share of spectral energy at radial frequency > `cutoff` cycles/pixel.

    Frequencies are torch.fft.fftfreq units (Nyquist = 0.5), so the default 0.25 is half
    Nyquist. The luma image is mean-subtracted and Hann-windowed (so the wrap-around edge of
    the DFT does not add false high frequencies), and the DC bin is excluded from the total.
    White noise gives ≈ the share of frequency bins above the cutoff (~0.80 at 0.25); blur
    lowers it. A constant image has no AC energy and gives 0.
    """
    if not 0.0 < cutoff < 0.5 * math.sqrt(2):
        raise BenchError(
            f"high_frequency_energy: cutoff={cutoff}; must be in (0, 0.707) cycles/pixel"
        )
    gray = _gray(_as_unit_images("images", images, min_size=4))[:, 0].double()
    h, w = gray.shape[1:]
    window = torch.outer(
        torch.hann_window(h, periodic=False, dtype=gray.dtype),
        torch.hann_window(w, periodic=False, dtype=gray.dtype),
    )
    centred = (gray - gray.mean(dim=(1, 2), keepdim=True)) * window
    power = torch.fft.fft2(centred).abs() ** 2
    radius = torch.sqrt(
        torch.fft.fftfreq(h, dtype=gray.dtype)[:, None] ** 2
        + torch.fft.fftfreq(w, dtype=gray.dtype)[None, :] ** 2
    )
    total = (power * (radius > 0)).sum(dim=(1, 2))
    high = (power * (radius > cutoff)).sum(dim=(1, 2))
    return (high / total.clamp_min(torch.finfo(gray.dtype).tiny)).float()


def sharpness_ratio(generated: torch.Tensor, real: torch.Tensor) -> float:
    """mean Laplacian variance of generated / of real: 1.0 = as sharp as real, < 1 blurrier,
    > 1 sharper or noisier. Both sets must have the same H×W (the measure depends on scale)."""
    if generated.shape[2:] != real.shape[2:]:
        raise BenchError(
            f"sharpness_ratio: image sizes differ ({tuple(generated.shape[2:])} vs {tuple(real.shape[2:])}); resize to the same H×W first"
        )
    real_sharpness = float(laplacian_variance(real).mean())
    if real_sharpness <= 0.0:
        raise BenchError(
            "sharpness_ratio: the real images are all flat (Laplacian variance 0); cannot normalise"
        )
    return float(laplacian_variance(generated).mean()) / real_sharpness


def _rms(diff: torch.Tensor) -> torch.Tensor:
    """Per-pixel L2 (root mean square over C×H×W) of each row of an N×C×H×W difference."""
    return diff.pow(2).mean(dim=(1, 2, 3)).sqrt()


def latent_path_smoothness(frames: torch.Tensor) -> tuple[float, float]:
    """Evenness of a decoded interpolation path of T frames (T×C×H×W, T >= 3).

    Steps are per-pixel L2 (RMS) distances between consecutive frames. Returns
    (coefficient of variation of the steps = std/mean with ddof=0, path length = sum of steps).
    CV 0 = the image changes at a constant rate; a single jump among S steps gives sqrt(S - 1).
    A path that never changes has length 0 and CV reported as 0.
    """
    x = _as_unit_images("frames", frames).double()
    if x.shape[0] < 3:
        raise BenchError(
            f"latent_path_smoothness: got {x.shape[0]} frames; need >= 3 (two steps) to measure evenness"
        )
    steps = _rms(x[1:] - x[:-1])
    length = float(steps.sum())
    mean = float(steps.mean())
    cv = float(steps.std(unbiased=False)) / mean if mean > 0 else 0.0
    return cv, length


def batch_diversity(images: torch.Tensor) -> float:
    """Mean per-pixel L2 (RMS) distance over all pairs i < j of a batch of samples.

    A mode-collapse indicator: 0 when all samples are identical. Pixel distance, not
    perceptual, so it also counts noise as diversity; compare models at the same resolution.
    """
    x = _as_unit_images("images", images).double()
    n = x.shape[0]
    if n < 2:
        raise BenchError(f"batch_diversity: got {n} image(s); need >= 2")
    flat = x.reshape(n, -1)
    # Direct differences, not the |a|²+|b|²-2ab shortcut, so identical images give exactly 0.
    total = sum(
        float(
            torch.cdist(
                flat[s : s + _CHUNK_ROWS], flat, compute_mode="donot_use_mm_for_euclid_dist"
            ).sum()
        )
        for s in range(0, n, _CHUNK_ROWS)
    )
    return total / (n * (n - 1)) / math.sqrt(flat.shape[1])
