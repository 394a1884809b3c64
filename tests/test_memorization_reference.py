"""Memorisation is measured against the training images whatever eval.fid_split is, and KID's
std is only recorded when its subsets are smaller than the sets."""

import math

import pytest
import torch

from bench.core.config import EvalConfig
from bench.data.images import ImageSet
from bench.data.synthetic import make_synthetic
from bench.metrics import feature_metrics as fm
from bench.metrics import fid, registry
from bench.metrics.evaluate import Evaluator

N = 24


@pytest.fixture
def pixel_features(monkeypatch, tmp_path):
    """Inception replaced by 12 pooled-pixel features (as in test_samplers): same wiring,
    no 2048-d sqrtm."""
    monkeypatch.setenv("DOGBENCH_CACHE", str(tmp_path))

    def features(images, device="cpu", numerics="folded", dims=2048, **_):
        x = fid.to_uint8(images).float() / 255
        return torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1).double().numpy()

    monkeypatch.setattr(fid, "inception_features", features)
    return features


def _sets():
    train = ImageSet(make_synthetic(64, 16, seed=0)[0], "synthetic", "train", "test")
    test = ImageSet(make_synthetic(32, 16, seed=1)[0], "synthetic", "test", "test")
    fake = make_synthetic(N, 16, seed=2)[0].float() / 255
    return train, test, fake


def _memorisation(fid_real, train, heldout, fake):
    cfg = EvalConfig(fid_samples=N, heldout_images=4, extras=["memorization"])
    evaluator = Evaluator(cfg, fid_real, heldout, "cpu", train_images=train.images)
    metrics, _ = evaluator._feature_metrics(fake, extras=True, suffix="")
    return {m.metric: m.value for m in metrics}


def _expected(features, reference, fake):
    """Kaggle's memorisation of ``fake`` against ``reference`` images, MiFID with their FID."""
    ref, gen = features(reference[:N]), features(fake)
    fid_ref = float(fid.frechet_distance(*fid.feature_stats(gen), *fid.feature_stats(ref)))
    return fm.memorization(ref, gen, fid_train=fid_ref)


def test_memorisation_uses_training_images_under_either_fid_split(pixel_features):
    train, test, fake = _sets()
    expected = _expected(pixel_features, train.images, fake)
    # fid_split=train (default): reference = training images, values as before
    under_train = _memorisation(train, train, test, fake)
    # fid_split=test: FID against test images, memorisation still against training images
    under_test = _memorisation(test, train, test, fake)
    for key in ("mem_dist_mean", "mem_dist_q05", "mifid"):
        assert under_train[key] == pytest.approx(expected[key], rel=1e-12), key
        assert under_test[key] == pytest.approx(expected[key], rel=1e-12), key
    against_test = _expected(pixel_features, test.images, fake)
    assert under_test["mem_dist_mean"] != pytest.approx(against_test["mem_dist_mean"])
    assert under_test["fid"] != pytest.approx(under_train["fid"])  # FID did use the test split


def test_memorisation_skipped_without_training_images_under_test_split(pixel_features):
    train, test, fake = _sets()
    cfg = EvalConfig(fid_samples=N, heldout_images=4, extras=["memorization", "kid"])
    evaluator = Evaluator(cfg, test, test, "cpu", train_images=None)
    names = {m.metric for m in evaluator._feature_metrics(fake, extras=True, suffix="")[0]}
    assert "mem_dist_mean" not in names and "kid_mean" in names


def test_kid_std_only_when_subsets_are_smaller_than_the_sets():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(80, 6, generator=g).numpy(), torch.randn(80, 6, generator=g).numpy()
    whole_mean, whole_std = fm.kid(real, fake, subsets=5, subset_size=1000)  # m = 80 = N
    assert math.isnan(whole_std)
    plain = fm.kid(real, fake, subsets=1, subset_size=80)[0]
    assert whole_mean == pytest.approx(plain, rel=1e-12)  # the mean is unchanged
    assert fm.kid(real, fake, subsets=5, subset_size=40)[1] > 1e-6  # proper subsets: a spread
    rows = registry.compute("kid", fake, real, None, None, 0.0)  # N=80 <= 1000
    assert set(rows) == {"kid_mean"}


def test_kid_computes_one_subset_when_every_subset_is_both_whole_sets(monkeypatch):
    g = torch.Generator().manual_seed(1)
    real, fake = torch.randn(80, 6, generator=g).numpy(), torch.randn(60, 6, generator=g).numpy()
    calls = []
    real_mmd = fm.poly_mmd
    monkeypatch.setattr(fm, "poly_mmd", lambda a, b: calls.append(len(a)) or real_mmd(a, b))
    mean, _ = fm.kid(real[:60], fake, subsets=100, subset_size=1000)  # m = 60 = both sets
    assert calls == [60]
    assert mean == pytest.approx(
        float(real_mmd(*(torch.from_numpy(x).double() for x in (real[:60], fake)))), rel=1e-12
    )
    calls.clear()
    fm.kid(real, fake, subsets=7, subset_size=1000)  # m = 60 < 80 real: subsets differ
    assert calls == [60] * 7
