"""The seed's own VAE (models/dogvae.py): its shapes, its loss, its noise bug, under the harness."""

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from bench.cli import cli
from bench.core.errors import BenchError
from models import dogvae
from models.dogvae import DogVAEConfig, equivalent_sigma, seed_loss
from models.registry import ModelSpec, build_model, parse_model_spec
from models.vae import gaussian_nll_nats, kl_standard_normal_nats

LATENT = 8  # tiny latent: the convolutions are the seed's and fixed


def tiny(**params):
    torch.manual_seed(0)
    spec = ModelSpec(
        "dogvae", {"latent_dim": str(LATENT), **{k: str(v) for k, v in params.items()}}
    )
    return build_model(spec, {}, 128)


def batch(n: int = 4, seed: int = 1) -> torch.Tensor:
    """Harness images: 128 px in [-1, 1], smooth enough to be learnable in a few steps."""
    coarse = torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.interpolate(coarse, size=128, mode="bilinear") * 2 - 1


def test_shapes_at_127_inside_and_128_outside():
    model, x = tiny(), batch()
    x255 = dogvae.to_seed_space(x)
    assert x255.shape == (4, 3, 127, 127)
    convs = model.encoder[0]
    assert convs[:-1](x255).shape == (4, 128, 3, 3)  # before the flatten
    assert convs(x255).shape == (4, 1152)
    z = torch.randn(4, LATENT)
    assert model.decode_255(z).shape == (4, 3, 127, 127)
    assert model.decode(z).shape == (4, 3, 128, 128)
    mu, logvar = model.posterior(x)
    assert mu.shape == logvar.shape == model.encode(x).shape == (4, LATENT)
    assert model.reconstruct(x).shape == x.shape
    model.eval()  # as the harness samples: then one generator seed gives one set of images
    a, b = (model.sample(3, torch.Generator().manual_seed(7)) for _ in range(2))
    assert a.shape == (3, 3, 128, 128) and torch.equal(a, b)
    assert set(model.heldout_terms(x)) == {"kl_nats", "active_dims"}
    assert model.has_encoder and model.has_posterior
    assert DogVAEConfig().latent_dim == 256 and DogVAEConfig().lr == 5e-4


def test_128_to_127_crops_and_127_to_128_replicates():
    x = batch(2)
    x255 = dogvae.to_seed_space(x)
    torch.testing.assert_close(x255, (x[..., :127, :127] + 1) * 127.5)
    back = dogvae.to_harness_space(x255)
    torch.testing.assert_close(back[..., :127, :127], x[..., :127, :127])
    torch.testing.assert_close(back[..., 127, :], back[..., 126, :])  # replicated row
    torch.testing.assert_close(back[..., :, 127], back[..., :, 126])  # and column
    # decode is linear from 0-255 to [-1, 1] and not clamped (the harness clamps)
    out = dogvae.to_harness_space(torch.full((1, 3, 127, 127), 300.0))
    assert float(out.min()) == pytest.approx(300 / 127.5 - 1)


def test_augmentation_flips_and_crops(monkeypatch):
    x = dogvae.to_seed_space(batch(8))
    torch.manual_seed(3)
    out = dogvae.random_flip_resized_crop(x)
    assert out.shape == x.shape and not torch.allclose(out, x)
    assert float(out.min()) >= 0 and float(out.max()) <= 255
    # With a full-frame square crop only the flip is left: each image is x or its mirror.
    monkeypatch.setattr(dogvae, "CROP_SCALE", (1.0, 1.0))
    monkeypatch.setattr(dogvae, "CROP_RATIO", (1.0, 1.0))
    out = dogvae.random_flip_resized_crop(x)
    kinds = []
    for a, b in zip(out, x, strict=True):
        same, mirror = torch.allclose(a, b, atol=1e-2), torch.allclose(a, b.flip(-1), atol=1e-2)
        assert same or mirror
        kinds.append(mirror)
    assert 0 < sum(kinds) < len(kinds)  # p = 0.5 over 8 images: both happen for this seed


def test_a_few_steps_lower_the_loss_on_a_fixed_batch():
    model, x = tiny(), batch()
    x255 = dogvae.to_seed_space(x)

    def loss():
        with torch.no_grad():
            g = torch.Generator().manual_seed(5)
            return float(model.loss_terms(x255, generator=g)["seed_loss"])

    before = loss()
    torch.manual_seed(2)
    for _ in range(3):
        terms = model.train_step(x, 1.0)
    assert set(terms) == {"loss", "recon_mse", "kl_nats"}
    assert all(math.isfinite(float(v)) for v in terms.values())
    assert loss() < before


def test_both_noise_kinds_run_and_differ():
    eps = {kind: tiny(noise=kind)._eps(torch.zeros(20000, 1)) for kind in ("gaussian", "uniform")}
    assert float(eps["uniform"].min()) >= 0 and float(eps["uniform"].max()) < 1
    assert float(eps["uniform"].mean()) == pytest.approx(0.5, abs=0.01)  # the seed's bug
    assert float(eps["gaussian"].mean()) == pytest.approx(0.0, abs=0.03)
    assert float(eps["gaussian"].std()) == pytest.approx(1.0, abs=0.03)
    x = dogvae.to_seed_space(batch())
    losses = {}
    for kind in eps:  # same weights (same seed), same generator seed: only the noise differs
        model = tiny(noise=kind)
        with torch.no_grad():
            terms = model.loss_terms(x, generator=torch.Generator().manual_seed(5))
        losses[kind] = float(terms["seed_loss"])
        assert all(math.isfinite(float(v)) for v in model.train_step(batch(), 0.0).values())
    assert losses["gaussian"] != losses["uniform"]


def test_bad_settings_are_refused_in_one_line():
    with pytest.raises(
        BenchError, match=r"dogvae noise 'laplace' not understood; accepted: gaussian, uniform$"
    ):
        parse_model_spec("dogvae:noise=laplace")
    with pytest.raises(BenchError, match="kl_weight must be >= 0"):
        parse_model_spec("dogvae:kl_weight=-1")
    with pytest.raises(BenchError, match="dogvae needs data.image_size 128, got 64"):
        build_model(ModelSpec("dogvae", {}), {"latent_dim": LATENT}, 64)


@pytest.mark.parametrize("side", [127, 128])
def test_loss_over_w_is_the_gaussian_negative_elbo_at_the_stated_sigma(side):
    """MSE_255 + w KL, divided by w, = -log N(x; x_hat, sigma^2) on [0, 1] pixels - its
    constant + KL, with sigma = sqrt(D w / (2 255^2)) (models/dogvae.py docstring)."""
    g = torch.Generator().manual_seed(0)
    x255 = torch.rand(3, 3, side, side, generator=g, dtype=torch.float64) * 255
    recon255 = torch.rand(3, 3, side, side, generator=g, dtype=torch.float64) * 255
    mu, logvar = torch.randn(3, 16, generator=g), torch.randn(3, 16, generator=g)
    w, d = 0.00025, 3 * side * side
    loss, _, _ = seed_loss(x255, recon255, mu, logvar, w)
    log_sigma = torch.tensor(math.log(equivalent_sigma(d, w)), dtype=torch.float64)
    nll = gaussian_nll_nats(x255 / 255, recon255 / 255, log_sigma).mean()
    constant = d * (log_sigma + 0.5 * math.log(2 * math.pi))
    kl = kl_standard_normal_nats(mu, logvar).mean()
    assert float(loss) / w == pytest.approx(float(nll - constant + kl), rel=1e-5)
    expected = {127: 0.0096445, 128: 0.0097204}[side]  # the numbers in the docstring
    assert equivalent_sigma(d, w) == pytest.approx(expected, abs=1e-7)


def test_bench_run_trains_and_evaluates_dogvae_at_128(tmp_path):
    """The smallest harness run: a folder of 16 + 8 photos at 180 px, resized to 128."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 16), ("test", 8)):
        (tmp_path / "data" / split).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
            image = Image.fromarray(pixels).resize((180, 180), Image.Resampling.BILINEAR)
            image.save(tmp_path / "data" / split / f"{i}.png")
    args = [
        "run", "--models", "dogvae", "--dataset", f"folder:{tmp_path / 'data'}",
        "--image-size", "128", "--epochs", "1", "--batch-size", "8", "--fid-samples", "0",
        "--set", "backbone.latent_dim=8", "--set", "eval.heldout_images=8",
        "--set", "eval.grid_images=16", "--set", "eval.samplers=[prior]",
        "--out", str(tmp_path / "r"),
    ]  # fmt: skip
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    status = json.loads((tmp_path / "r" / "dogvae-seed0" / "status.json").read_text())
    assert status["status"] == "ok", status
