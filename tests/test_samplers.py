"""Latent samplers (prior, fitted Gaussian / GMM, truncation), latent paths, and the
per-sampler and interpolation metrics of the final evaluation."""

import math
from dataclasses import asdict

import pytest
import torch

from bench.core.config import BackboneConfig, EvalConfig
from bench.core.errors import BenchError
from bench.data.images import ImageSet
from bench.data.synthetic import make_synthetic
from bench.metrics import fid, samplers
from bench.metrics.evaluate import Evaluator
from bench.metrics.samplers import generate
from models import build_model, parse_model_spec


def tiny_model(name: str, seed: int = 0):
    torch.manual_seed(seed)
    backbone = asdict(BackboneConfig(width=16, latent_dim=8))
    return build_model(parse_model_spec(name), backbone, 32).eval()


def two_clusters(n: int = 2000, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, 2, generator=g) * 0.5 + torch.tensor([5.0, 0.0])
    b = torch.randn(n, 2, generator=g) + torch.tensor([-5.0, 2.0])
    return torch.cat([a, b])


def test_gaussian_fit_recovers_mean_and_covariance():
    g = torch.Generator().manual_seed(0)
    mean = torch.tensor([1.0, -2.0, 0.5])
    chol = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [-0.3, 0.2, 0.5]])
    x = mean + torch.randn(20000, 3, generator=g) @ chol.T
    fitted = samplers.fit_gaussian(x)
    assert torch.allclose(fitted.means[0].float(), mean, atol=0.03)
    cov = (fitted.chols[0] @ fitted.chols[0].T).float()
    assert torch.allclose(cov, chol @ chol.T, atol=0.05)
    # and what it samples has those moments too
    z = fitted.sample(20000, torch.Generator().manual_seed(1))
    assert torch.allclose(z.mean(0), mean, atol=0.05)
    assert torch.allclose(torch.cov(z.T), chol @ chol.T, atol=0.08)


def test_gmm_finds_both_clusters_and_beats_one_gaussian():
    x = two_clusters()
    two = samplers.fit_gmm(x, k=2, seed=0)
    found = sorted(two.means.float().tolist())
    assert torch.allclose(torch.tensor(found), torch.tensor([[-5.0, 2.0], [5.0, 0.0]]), atol=0.1)
    assert torch.allclose(two.weights.float(), torch.tensor([0.5, 0.5]), atol=0.01)
    ten = samplers.fit_gmm(x, seed=0)  # the default 10 components split the mass by cluster
    assert ten.info["components"] == 10 and ten.info["iterations"] <= samplers.GMM_MAX_ITER
    right = ten.weights[ten.means[:, 0] > 0].sum()
    assert abs(float(right) - 0.5) < 0.02
    single = samplers.fit_gaussian(x).log_likelihood(x)
    assert two.log_likelihood(x) > single + 1.0 and ten.log_likelihood(x) > single + 1.0


def test_gmm_iterations_are_capped():
    x = two_clusters(500)
    fitted = samplers.fit_gmm(x, seed=0, max_iter=2)
    assert fitted.info["iterations"] == 2 and not fitted.info["converged"]


def test_gmm_survives_fewer_codes_than_components_and_dims():
    x = torch.randn(6, 16, generator=torch.Generator().manual_seed(0))
    fitted = samplers.fit_gmm(x, seed=0)
    assert fitted.info["components"] == 6
    assert torch.isfinite(fitted.sample(50, torch.Generator().manual_seed(0))).all()


def test_samplers_are_deterministic_given_a_seed():
    x = two_clusters(500)
    a, b = samplers.fit_gmm(x, seed=3), samplers.fit_gmm(x, seed=3)
    assert torch.equal(a.means, b.means) and torch.equal(a.chols, b.chols)
    for s in (a, samplers.TruncatedSampler(4, 0.5), samplers.PriorSampler(4)):
        z1 = s.sample(64, torch.Generator().manual_seed(7))
        z2 = s.sample(64, torch.Generator().manual_seed(7))
        z3 = s.sample(64, torch.Generator().manual_seed(8))
        assert torch.equal(z1, z2) and not torch.equal(z1, z3)


def test_truncation_stays_inside_the_threshold():
    z = samplers.TruncatedSampler(16, 0.5).sample(4000, torch.Generator().manual_seed(0))
    assert float(z.abs().max()) <= 0.5 and float(z.abs().max()) > 0.49
    # N(0, 1) truncated to [-0.5, 0.5] has variance 1 - 2 t phi(t) / (2 Phi(t) - 1) ~ 0.0793
    t = torch.tensor(0.5)
    phi = torch.exp(-(t**2) / 2) / math.sqrt(2 * math.pi)
    var = 1 - 2 * t * phi / (2 * torch.special.ndtr(t) - 1)
    assert abs(float(z.var()) - float(var)) < 0.003


def test_prior_sampler_reproduces_generate():
    model = tiny_model("vae")
    prior = samplers.fit_sampler("prior", model, None)
    assert torch.equal(samplers.sample_images(model, prior, 10, 1234), generate(model, 10, 1234))


def test_fitted_samplers_encode_the_training_images():
    model = tiny_model("ae")
    images, _ = make_synthetic(64, 32, seed=0)
    gauss = samplers.fit_sampler("gaussian", model, images)
    codes = samplers.encode_latents(model, images).double()
    assert torch.allclose(gauss.means[0], codes.mean(0), atol=1e-6)
    out = samplers.sample_images(model, samplers.fit_sampler("gmm", model, images, 0), 5, 0)
    assert out.shape == (5, 3, 32, 32) and 0 <= float(out.min()) and float(out.max()) <= 1


@pytest.mark.parametrize(
    "name, fragment",
    [("gmm", "needs a model with an encoder"), ("trunc", "unknown sampler"), ("trunc0", "unknown")],
)
def test_bad_sampler_requests_are_refused(name, fragment):
    with pytest.raises(BenchError, match=fragment):
        samplers.fit_sampler(name, tiny_model("gan"), None)


def test_parse_sampler_name():
    assert samplers.parse_sampler_name("trunc0.5") == ("trunc", 0.5)
    assert samplers.parse_sampler_name("gmm") == ("gmm", None)
    with pytest.raises(BenchError, match="accepted: prior, gaussian, gmm, trunc"):
        samplers.parse_sampler_name("flow")


def test_latent_paths():
    a, b = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 3.0])
    line = samplers.latent_path(a, b, 5)
    assert torch.equal(line[0], a) and torch.allclose(line[-1], b) and line.shape == (5, 2)
    assert torch.allclose(line[2], torch.tensor([1.5, 1.5]))
    arc = samplers.latent_path(a, b, 5, spherical=True)
    assert torch.allclose(arc.norm(dim=1), torch.full((5,), 3.0))  # slerp keeps the norm
    assert torch.allclose(arc[-1], b, atol=1e-6)
    same = samplers.latent_path(a, a, 3, spherical=True)  # parallel: falls back to a line
    assert torch.allclose(same, a.expand(3, 2))


def _evaluator(samplers_list, train_images, n=20):
    cfg = EvalConfig(fid_samples=n, heldout_images=16, extras=["prdc", "sharpness"])
    cfg.samplers = samplers_list  # the lead adds this field to EvalConfig
    train, _ = make_synthetic(64, 32, seed=0)
    test, _ = make_synthetic(16, 32, seed=1)
    real = ImageSet(train, "synthetic", "train", "test")
    heldout = ImageSet(test, "synthetic", "test", "test")
    return Evaluator(cfg, real, heldout, "cpu", train_images=train if train_images else None)


@pytest.fixture
def pixel_features(monkeypatch, tmp_path):
    """Inception replaced by 12 pooled-pixel features: the wiring under test is the same, and
    a 2048-d Frechet distance of 20 samples takes ~30 s on one core (singular sqrtm)."""
    monkeypatch.setenv("DOGBENCH_CACHE", str(tmp_path))  # no 12-d stats in the shared cache
    seen = []

    def features(images, device="cpu", numerics="folded", dims=2048, **_):
        x = fid.to_uint8(images).float() / 255
        seen.append(len(x))
        pooled = torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)
        return (pooled + 0.01 * torch.randn(pooled.shape, generator=torch.Generator())).numpy()

    monkeypatch.setattr(fid, "inception_features", features)
    return seen


def test_final_evaluation_adds_per_sampler_and_interpolation_metrics(pixel_features):
    evaluator = _evaluator(["prior", "gaussian", "gmm", "trunc0.5"], train_images=True)
    vae = tiny_model("vae")
    during = evaluator(vae, final=False)
    assert not any("@" in m.metric for m in during.metrics) and during.pictures == {}
    pixel_features.clear()
    final = evaluator(vae, final=True)
    values = {m.metric: m for m in final.metrics}
    assert pixel_features == [20, 20, 20]  # prior, gaussian, gmm: one feature pass each
    for metric in ("fid", "fid@gaussian", "fid@gmm", "precision@gmm", "sharpness@gaussian"):
        assert math.isfinite(values[metric].value) and values[metric].n == 20
    assert "fid@trunc0.5" not in values  # truncation is for models without an encoder
    assert values["fid@gmm"].value != values["fid"].value
    assert values["interp_cv"].n == 8 and values["interp_cv"].value >= 0
    assert values["interp_length"].value > 0
    assert set(final.pictures) == {"samples@gaussian", "samples@gmm", "interpolation"}
    images, nrow = final.pictures["interpolation"]
    assert nrow == 10 and images.shape[0] == 4 * nrow  # 4 strips of 10 frames
    assert final.pictures["samples@gmm"][0].shape[0] == 20  # grid_images (64) capped by N
    gan = {m.metric for m in evaluator(tiny_model("gan"), final=True).metrics}
    assert {"fid@trunc0.5", "precision@trunc0.5", "interp_cv"} <= gan
    assert not any(m.endswith(("@gmm", "@gaussian")) for m in gan)


def test_fitted_samplers_skipped_without_training_images(pixel_features):
    evaluator = _evaluator(["prior", "gaussian", "gmm"], train_images=False)
    values = {m.metric for m in evaluator(tiny_model("ae"), final=True).metrics}
    assert "fid" in values and "interp_cv" in values and not any("@" in m for m in values)


def test_extras_follow_the_index_the_caller_passes(pixel_features):
    """The evaluator keeps no count of its own: eval.extras_every applies to ``index``, so
    one evaluator serves many runs (and a resumed run) without carrying a count between them."""
    evaluator = _evaluator(["prior"], train_images=False)
    evaluator.cfg.extras_every = 2
    model = tiny_model("ae")

    def names(index):
        return {m.metric for m in evaluator(model, index=index).metrics}

    assert "precision" not in names(1) and "precision" in names(2)
    assert "precision" not in names(3) and "precision" not in names(1)  # no hidden state
    assert "precision" in {m.metric for m in evaluator(model, final=True, index=1).metrics}


def test_unknown_sampler_in_config_fails_at_construction():
    with pytest.raises(BenchError, match="unknown sampler 'flow'"):
        _evaluator(["prior", "flow"], train_images=True)
