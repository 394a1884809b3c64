import math

import pytest
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio as psnr_per_image
from torchmetrics.functional.image import structural_similarity_index_measure
from torchvision.transforms.functional import gaussian_blur

from bench.core.errors import BenchError
from bench.metrics import image_metrics as im


def _images(n: int = 6, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Smooth random structure plus fine texture, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.nn.functional.interpolate(
        torch.rand(n, 3, 8, 8, generator=g), size=size, mode="bilinear"
    )
    return (0.7 * coarse + 0.3 * torch.rand(n, 3, size, size, generator=g)).clamp(0, 1)


def test_recon_mse_and_psnr_by_hand():
    x = torch.zeros(2, 3, 4, 4)
    x_hat = x.clone()
    x_hat[0] += 0.1  # MSE 0.01 -> 20 dB
    x_hat[1] += 0.01  # MSE 1e-4 -> 40 dB
    assert im.recon_mse(x, x_hat) == pytest.approx((0.01 + 1e-4) / 2)
    assert im.psnr(x, x_hat) == pytest.approx(30.0, abs=1e-4)  # mean of per-image PSNRs
    assert im.psnr(x, x_hat) > 10 * math.log10(
        1 / im.recon_mse(x, x_hat)
    )  # PSNR of mean MSE is lower
    assert im.psnr(x, x) == math.inf
    u8 = (x_hat * 255).round().to(torch.uint8)
    assert im.recon_mse(x, u8) == pytest.approx(im.recon_mse(x, u8.float() / 255))


def test_ssim_is_torchmetrics_and_orders_quality():
    x = _images()
    noisy = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    assert im.ssim(x, x) == pytest.approx(1.0, abs=1e-6)
    assert im.ssim(x, noisy) == pytest.approx(
        float(structural_similarity_index_measure(noisy, x, data_range=1.0))
    )
    assert im.ssim(x, noisy) < 0.95


def test_metrics_over_slices_equal_the_whole_batch(monkeypatch):
    """Per-image metrics run on slices of images to bound memory (SSIM of 1000 images at
    128 px held 12 GiB whole); sliced, every value is the whole batch's."""
    x = _images(7, size=16)
    noisy = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    u8 = (noisy * 255).round().to(torch.uint8)
    whole = {
        "ssim": float(structural_similarity_index_measure(noisy, x, data_range=1.0)),
        "mse": float(((x - noisy) ** 2).mean()),
        "psnr": float(
            psnr_per_image(noisy, x, data_range=1.0, reduction="none", dim=(1, 2, 3)).mean()
        ),
        "lap": im.laplacian_variance(noisy),
    }
    monkeypatch.setattr(im, "_CHUNK_VALUES", 3 * 16 * 16 * 3)  # slices of 3, 3 and 1 image
    assert [len(s) for s in im._slices(x)] == [3, 3, 1]
    assert im.ssim(x, noisy) == pytest.approx(whole["ssim"], rel=1e-6)
    assert im.recon_mse(x, noisy) == pytest.approx(whole["mse"], rel=1e-6)
    assert im.psnr(x, noisy) == pytest.approx(whole["psnr"], rel=1e-6)
    assert torch.allclose(im.laplacian_variance(noisy), whole["lap"], rtol=1e-6)
    assert im.recon_mse(x, u8) == pytest.approx(im.recon_mse(x, u8.float() / 255))
    with pytest.raises(BenchError, match="shapes differ"):
        im.ssim(x, noisy[:4])  # the whole shapes are checked before slicing
    out_of_range = noisy.clone()
    out_of_range[0], out_of_range[6] = -0.5, 1.5  # in the first and the last slice
    with pytest.raises(BenchError, match=r"range \[-0.5, 1.5\]"):
        im.ssim(x, out_of_range)  # and the whole range, before any slice is computed


def test_range_and_shape_errors():
    x = _images(2)
    with pytest.raises(BenchError):
        im.recon_mse(x, x * 2 - 1)  # [-1, 1] images must be mapped first
    with pytest.raises(BenchError):
        im.psnr(x, x[:1])
    with pytest.raises(BenchError):
        im.sharpness_ratio(x, _images(2, size=16))


def test_laplacian_variance_by_hand():
    img = torch.zeros(1, 1, 5, 5)
    img[0, 0, 2, 2] = 1.0  # valid 3×3 Laplacian response: -4 at the centre, 1 at its 4 neighbours
    values = torch.tensor([-4.0, 1, 1, 1, 1, 0, 0, 0, 0])
    assert float(im.laplacian_variance(img)) == pytest.approx(float(values.var(unbiased=False)))
    gray = torch.rand(3, 1, 9, 9)
    assert torch.allclose(
        im.laplacian_variance(gray.expand(3, 3, 9, 9)), im.laplacian_variance(gray)
    )
    assert torch.all(im.laplacian_variance(torch.full((2, 3, 8, 8), 0.5)) == 0)


def test_sharpness_ratio_blur_and_identity():
    real = _images()
    assert im.sharpness_ratio(real, real.clone()) == pytest.approx(1.0)
    blurred = gaussian_blur(real, kernel_size=5, sigma=1.0)
    assert im.sharpness_ratio(blurred, real) < 0.5
    assert im.sharpness_ratio(real, blurred) > 2.0


def test_high_frequency_energy_noise_blur_and_flat():
    noise = torch.rand(8, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    f = torch.fft.fftfreq(64, dtype=torch.float64)
    radius = torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    bin_share = float((radius > 0.25).sum()) / float((radius > 0).sum())  # ≈ 1 - π/16
    assert float(im.high_frequency_energy(noise).mean()) == pytest.approx(bin_share, abs=0.03)
    blurred = gaussian_blur(noise, kernel_size=7, sigma=1.5)
    assert torch.all(im.high_frequency_energy(blurred) < 0.2 * im.high_frequency_energy(noise))
    assert torch.all(im.high_frequency_energy(torch.full((2, 3, 16, 16), 0.3)) == 0)


def test_latent_path_smoothness_crossfade_and_step():
    a, b = _images(2)
    t = torch.linspace(0, 1, 9).view(-1, 1, 1, 1)
    cv, length = im.latent_path_smoothness((1 - t) * a + t * b)
    assert cv < 1e-6
    assert length == pytest.approx(float((a - b).pow(2).mean().sqrt()), rel=1e-6)
    step = torch.stack([a] * 4 + [b] * 5)  # 8 steps, one jump
    cv, length = im.latent_path_smoothness(step)
    assert cv == pytest.approx(math.sqrt(7))
    assert length == pytest.approx(float((a - b).pow(2).mean().sqrt()), rel=1e-6)
    assert im.latent_path_smoothness(torch.stack([a] * 3)) == (0.0, 0.0)


def test_batch_diversity_by_hand_and_collapse():
    assert im.batch_diversity(torch.stack([_images(1)[0]] * 5)) == 0.0
    two = torch.stack([torch.zeros(3, 4, 4), torch.ones(3, 4, 4)])
    assert im.batch_diversity(two) == pytest.approx(1.0)
    three = torch.stack([torch.zeros(3, 4, 4), torch.zeros(3, 4, 4), torch.ones(3, 4, 4)])
    assert im.batch_diversity(three) == pytest.approx(2 / 3)  # pairs: 0, 1, 1
    assert im.batch_diversity(_images(8)) > im.batch_diversity(_images(8) * 0.1 + 0.45)
