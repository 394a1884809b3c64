import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from bench.core.errors import BenchError
from bench.metrics import feature_metrics as fm


def _gauss(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)) + shift


def _direct_kid(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD², cubic kernel, written out from Bińkowski et al. 2018 eq. for MMD²_u."""
    d, m = x.shape[1], x.shape[0]
    k = lambda a, b: (a @ b.T / d + 1.0) ** 3  # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    off = lambda kk: (kk.sum() - np.trace(kk)) / (m * (m - 1))  # noqa: E731
    return off(kxx) + off(kyy) - 2.0 * kxy.mean()


def test_kid_matches_direct_formula_and_torchmetrics():
    from torchmetrics.image.kid import KernelInceptionDistance

    real, fake = _gauss(60, 16, 0), _gauss(60, 16, 1, shift=0.3)
    mean, std = fm.kid(real, fake, subsets=1, subset_size=60)
    assert mean == pytest.approx(_direct_kid(real, fake), rel=1e-10)
    assert math.isnan(std)  # the one subset is the whole set: no spread to report
    metric = KernelInceptionDistance(feature=torch.nn.Identity(), subsets=1, subset_size=60)
    metric.update(torch.from_numpy(real), real=True)
    metric.update(torch.from_numpy(fake), real=False)
    assert mean == pytest.approx(float(metric.compute()[0]), rel=1e-6)


def test_kid_deterministic_capped_and_separates():
    real, same, far = _gauss(300, 8, 0), _gauss(300, 8, 1), _gauss(200, 8, 2, shift=1.0)
    a = fm.kid(real, far, subsets=5, subset_size=1000, seed=3)  # subset size capped at 200
    assert a == fm.kid(real, far, subsets=5, subset_size=1000, seed=3)
    assert a != fm.kid(real, far, subsets=5, subset_size=100, seed=4)
    near, _ = fm.kid(real, same, subsets=5, subset_size=200)
    assert abs(near) < 0.05 * a[0]
    ident, _ = fm.kid(real, real, subsets=5, subset_size=300)
    assert abs(ident) < 0.05 * a[0]


def test_precision_recall_identical_and_disjoint():
    real = _gauss(200, 16, 0)
    assert fm.precision_recall(real, real.copy()) == (1.0, 1.0)
    assert fm.precision_recall(real, _gauss(200, 16, 1, shift=100.0)) == (0.0, 0.0)


def test_precision_recall_density_coverage_by_hand():
    # real on a line at 0..9: every k=1 radius is 1. fake 0.5 lies in the balls of 0 and 1,
    # fake 100 in none; the fake radii (k=1) are both 99.5, which reach every real point.
    real = np.arange(10.0)[:, None]
    fake = np.array([[0.5], [100.0]])
    assert fm.precision_recall(real, fake, k=1) == (0.5, 1.0)
    density, coverage = fm.density_coverage(real, fake, k=1)
    assert density == pytest.approx(1.0)  # 2 balls hit / (k=1 × 2 fakes)
    assert coverage == pytest.approx(0.2)  # reals 0 and 1 have a fake inside their ball
    # Ties pin the papers' conventions: a probe exactly on a radius counts for precision/recall
    # (<=, NVlabs code) but not for density/coverage (<, clovaai prdc code).
    assert fm.precision_recall(real, np.array([[-1.0], [100.0]]), k=1)[0] == 0.5
    assert fm.density_coverage(real, np.array([[1.0], [100.0]]), k=1) == (0.5, 0.1)


def _direct_prdc(real, fake, k):
    """Brute force with scipy distances, following the papers' definitions."""
    rr, ff, rf = cdist(real, real), cdist(fake, fake), cdist(real, fake)
    r_real = np.sort(rr, axis=1)[:, k]
    r_fake = np.sort(ff, axis=1)[:, k]
    precision = (rf <= r_real[:, None]).any(axis=0).mean()
    recall = (rf <= r_fake[None, :]).any(axis=1).mean()
    density = (rf < r_real[:, None]).sum() / (k * len(fake))
    coverage = (rf.min(axis=1) < r_real).mean()
    return precision, recall, density, coverage


def test_prdc_match_brute_force_across_chunks(monkeypatch):
    monkeypatch.setattr(fm, "_CHUNK_ROWS", 37)  # force several uneven chunks
    real, fake = _gauss(150, 10, 0), _gauss(120, 10, 1, shift=0.4)
    p, r, d, c = _direct_prdc(real, fake, k=4)
    assert fm.precision_recall(real, fake, k=4) == pytest.approx((p, r))
    assert fm.density_coverage(real, fake, k=4) == pytest.approx((d, c))
    assert 0 < p < 1 and 0 < c < 1


def test_density_coverage_identical_and_disjoint():
    real = _gauss(200, 16, 0)
    density, coverage = fm.density_coverage(real, real.copy(), k=5)
    assert coverage == 1.0
    assert 1.0 <= density <= 1.0 + 1 / 5  # each ball holds itself + k-1 others (+ a tie at k)
    assert fm.density_coverage(real, _gauss(100, 16, 1, shift=100.0)) == (0.0, 0.0)


def test_bad_input_raises_bench_error():
    with pytest.raises(BenchError):
        fm.precision_recall(_gauss(10, 4, 0), _gauss(10, 5, 1))
    with pytest.raises(BenchError):
        fm.density_coverage(_gauss(5, 4, 0), _gauss(10, 4, 1), k=5)
    with pytest.raises(BenchError):
        fm.kid(np.full((10, 4), np.nan), _gauss(10, 4, 1))


def test_fid_infinity_recovers_intercept_of_exact_line():
    points = {n: 3.0 + 500.0 / n for n in (250, 500, 1000, 2000)}
    fid_inf, used = fm.fid_infinity(points)
    assert fid_inf == pytest.approx(3.0, abs=1e-9)
    assert used == points
    fid_inf, used = fm.fid_infinity(lambda n: 7.0 + 20.0 / n, ns=[100, 300])
    assert fid_inf == pytest.approx(7.0) and sorted(used) == [100, 300]
    with pytest.raises(BenchError):
        fm.fid_infinity({100: 1.0})


def test_fid_infinity_from_features_removes_small_sample_bias():
    # Same covariance, means 0.25 apart in each of 32 dims: true FID = 2. FID_N is biased up
    # by O(1/N); the extrapolation should land nearer 2 than the FID of the whole fake set.
    real, fake = _gauss(20000, 32, 100), _gauss(4000, 32, 0, shift=0.25)
    ns = [400, 800, 1600, 2400, 3200, 4000]
    fid_inf, points = fm.fid_infinity_from_features(real, fake, ns=ns)
    assert sorted(points) == ns
    assert points[400] > points[800] > points[4000] > 2.0
    assert abs(fid_inf - 2.0) < 0.1
    assert abs(fid_inf - 2.0) < abs(points[4000] - 2.0)
    assert fm.fid_infinity_from_features(real, fake, ns=ns) == (fid_inf, points)
    assert fm.fid_infinity_from_features(real, fake, ns=ns, seed=1)[1][400] != points[400]
    assert fm.default_fid_ns(5000) == [int(n) for n in np.linspace(500, 5000, 15)]


def test_memorization_penalises_copies():
    train = np.abs(_gauss(400, 32, 0))
    honest = np.abs(_gauss(200, 32, 1))
    copies = train[:200] * 1.01  # scaled copies: cosine distance 0 to their source
    fair, copied = fm.memorization(train, honest), fm.memorization(train, copies)
    assert copied["mem_dist_mean"] == pytest.approx(0.0, abs=1e-12)
    assert copied["mem_frac_below_eps"] == 1.0
    assert fair["mem_dist_min"] > copied["mem_dist_mean"]
    assert fair["mem_penalty"] == (1.0 if fair["mem_dist_mean"] >= 0.1 else fair["mem_dist_mean"])
    assert copied["fid_train"] < fair["fid_train"]  # FID alone rewards copying the training set
    assert copied["mifid"] > 1e6 * copied["fid_train"]
    assert copied["mifid"] > fair["mifid"]
    assert np.isnan(fm.memorization(train, train)["mifid"])  # FID 0: ratio undefined
    given = fm.memorization(train, copies, fid_train=copied["fid_train"])
    assert given == copied  # a precomputed FID is used as is


def test_memorization_matches_torchmetrics_in_kaggle_direction():
    from torchmetrics.image.mifid import _compute_cosine_distance, _mifid_compute

    train, fake = np.abs(_gauss(300, 16, 0)), np.abs(_gauss(150, 16, 1))
    fake[:100] = train[:100] + 0.01 * np.abs(_gauss(100, 16, 2))  # near-copies: mean d < eps
    out = fm.memorization(train, fake, eps=0.1)
    t, f = torch.from_numpy(train), torch.from_numpy(fake)
    assert out["mem_dist_mean"] == pytest.approx(
        float(_compute_cosine_distance(f, t, 1.0)), rel=1e-9
    )
    assert out["mem_penalty"] == pytest.approx(float(_compute_cosine_distance(f, t, 0.1)), rel=1e-9)
    assert out["mem_penalty"] < 0.1
    expected = _mifid_compute(f.mean(0), torch.cov(f.T), f, t.mean(0), torch.cov(t.T), t, 0.1)
    assert out["mifid"] == pytest.approx(float(expected), rel=1e-4)
