"""Sample-quality metrics on Inception feature arrays (N×D numpy): KID, precision/recall,
density/coverage, FID∞ and memorization (MiFID).

Pure functions, deterministic given `seed`. Everything is computed in float64 on the CPU;
distances `_CHUNK_ROWS` rows at a time, so precision/recall on 5000 + 5000 samples of 2048-d
features adds ~0.25 GiB (measured, float64 copies of the inputs included).
FID itself lives in bench.metrics.fid; this module only calls it.
"""

import math
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torchmetrics.image.kid import poly_mmd

from bench.core.errors import BenchError

_CHUNK_ROWS = 1024  # 1024 × 5000 float64 distances = 41 MB per chunk
_KAGGLE_FID_EPSILON = 10e-15  # Kaggle / torchmetrics MiFID: fid / (distance + 10e-15)
_MIFID_MIN_FID = 1e-8  # torchmetrics MiFID: below this FID the ratio is not computed


def _as_features(name: str, feats: np.ndarray, min_rows: int = 2) -> torch.Tensor:
    """Validate an N×D feature array and return it as a float64 CPU tensor."""
    arr = np.asarray(feats)
    if arr.ndim != 2 or arr.shape[0] < min_rows or arr.shape[1] < 1:
        raise BenchError(
            f"{name}: expected a 2-D feature array with at least {min_rows} rows, "
            f"got shape {arr.shape}; pass an N×D array (one row per image)"
        )
    if not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr).all():
        raise BenchError(
            f"{name}: features must be finite numbers; got dtype {arr.dtype} with NaN/inf or non-numeric values"
        )
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float64))


def _same_dim(real: torch.Tensor, fake: torch.Tensor) -> None:
    if real.shape[1] != fake.shape[1]:
        raise BenchError(
            f"feature sizes differ: {real.shape[1]} vs {fake.shape[1]}; both sets must come from the same feature extractor"
        )


def _distance_chunks(rows: torch.Tensor, cols: torch.Tensor) -> Iterator[torch.Tensor]:
    """Euclidean distances rows×cols, yielded `_CHUNK_ROWS` rows at a time.

    |a-b|² = |a|² + |b|² - 2a·b: one matmul per chunk (fast), clamped at 0 against rounding.
    """
    cols_sq = (cols * cols).sum(dim=1)
    for start in range(0, rows.shape[0], _CHUNK_ROWS):
        r = rows[start : start + _CHUNK_ROWS]
        d2 = (r * r).sum(dim=1, keepdim=True) + cols_sq - 2.0 * (r @ cols.T)
        yield d2.clamp_min_(0.0).sqrt_()


def _knn_radii(feats: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each sample to its k-th nearest *other* sample of the same set.

    The sample itself is at distance 0, so this is the (k+1)-th smallest distance, as in the
    reference code of Kynkäänniemi et al. 2019 and Naeem et al. 2020.
    """
    if not 1 <= k < feats.shape[0]:
        raise BenchError(
            f"k={k} nearest neighbours needs at least k+1 samples per set (got {feats.shape[0]}); use 1 <= k < N"
        )
    return torch.cat([d.kthvalue(k + 1, dim=1).values for d in _distance_chunks(feats, feats)])


def kid(
    real: np.ndarray, fake: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Kernel Inception Distance (Bińkowski et al. 2018, "Demystifying MMD GANs").

    Unbiased MMD² with the cubic polynomial kernel k(x, y) = (x·y/d + 1)³, averaged over
    `subsets` random subsets of `min(subset_size, N_real, N_fake)` samples from each set
    (drawn without replacement within a subset, as in the paper's code). Returns
    (mean, std) over subsets, std with ddof=0 like the paper's code and torchmetrics.
    Computed in float64 (the three kernel sums nearly cancel).

    std is NaN unless a subset is smaller than both sets: when it takes a whole set, that
    side never varies between subsets (at N <= subset_size every subset is the same pair of
    sets and std is ~1e-16, which would read as "no uncertainty"). The mean is unaffected.

    The kernel and estimator are torchmetrics' `poly_mmd`; only the subset sampling is ours,
    because torchmetrics draws subsets from torch's global RNG and refuses N < subset_size.
    """
    real_t, fake_t = _as_features("real", real), _as_features("fake", fake)
    _same_dim(real_t, fake_t)
    if subsets < 1 or subset_size < 2:
        raise BenchError(
            f"kid: subsets={subsets}, subset_size={subset_size}; need subsets >= 1 and subset_size >= 2"
        )
    m = min(subset_size, real_t.shape[0], fake_t.shape[0])
    proper = m < min(real_t.shape[0], fake_t.shape[0])
    # A subset taking both whole sets is the same pair every time (the unbiased MMD² does not
    # depend on order), so one subset is the mean: at a tracked point's N=100-200 the other
    # 99 cost 4-7 s of its 15-35 s here.
    every_subset_the_same = m == real_t.shape[0] == fake_t.shape[0]
    rng = np.random.default_rng(seed)
    mmds = []
    for _ in range(1 if every_subset_the_same else subsets):
        real_idx = torch.from_numpy(rng.choice(real_t.shape[0], m, replace=False))
        fake_idx = torch.from_numpy(rng.choice(fake_t.shape[0], m, replace=False))
        mmds.append(float(poly_mmd(real_t[real_idx], fake_t[fake_idx])))
    return float(np.mean(mmds)), float(np.std(mmds)) if proper else math.nan


def _fraction_in_any_ball(
    probes: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor
) -> float:
    """Share of `probes` within distance <= radius of at least one centre."""
    inside = [(d <= radii).any(dim=1) for d in _distance_chunks(probes, centres)]
    return float(torch.cat(inside).double().mean())


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019), k-NN manifold estimate.

    precision = share of fake samples inside the real manifold (the union of balls around each
    real sample with radius = distance to its k-th nearest real neighbour); recall = share of
    real samples inside the fake manifold. `<=` on the radius as in the authors' code
    (NVlabs stylegan2-ada metrics/precision_recall.py); k=3 is the paper's default.
    torchmetrics has no implementation, hence written here.
    """
    real_t, fake_t = _as_features("real", real), _as_features("fake", fake)
    _same_dim(real_t, fake_t)
    precision = _fraction_in_any_ball(fake_t, real_t, _knn_radii(real_t, k))
    recall = _fraction_in_any_ball(real_t, fake_t, _knn_radii(fake_t, k))
    return precision, recall


def density_coverage(real: np.ndarray, fake: np.ndarray, k: int = 5) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics").

    With B_i the ball around real sample i of radius = distance to its k-th nearest real
    neighbour: density = (1 / kM) Σ_j #{i : fake_j ∈ B_i} (≈1 when fake ~ real, can exceed 1);
    coverage = share of real samples whose ball contains at least one fake sample. Strict `<`
    as in the authors' code (clovaai/generative-evaluation-prdc); k=5 is the paper's default.
    torchmetrics has no implementation, hence written here.
    """
    real_t, fake_t = _as_features("real", real), _as_features("fake", fake)
    _same_dim(real_t, fake_t)
    radii = _knn_radii(real_t, k)
    balls_hit = sum(float((d < radii).sum()) for d in _distance_chunks(fake_t, real_t))
    density = balls_hit / (k * fake_t.shape[0])
    covered = []
    for start, d in zip(
        range(0, real_t.shape[0], _CHUNK_ROWS), _distance_chunks(real_t, fake_t), strict=True
    ):
        covered.append(d.min(dim=1).values < radii[start : start + _CHUNK_ROWS])
    coverage = float(torch.cat(covered).double().mean())
    return density, coverage


def _frechet(real: np.ndarray, fake: np.ndarray) -> float:
    """FID between two feature arrays via bench.metrics.fid."""
    from bench.metrics.fid import (  # lazy: bench.metrics.fid loads Inception helpers
        feature_stats,
        frechet_distance,
    )

    mu_r, sigma_r = feature_stats(real)
    mu_f, sigma_f = feature_stats(fake)
    return _fid_value(frechet_distance(mu_r, sigma_r, mu_f, sigma_f))


def _fid_value(out: object) -> float:
    """A float, an object with .value, or one float() accepts (bench.metrics.fid.FrechetResult)."""
    return float(getattr(out, "value", out))


def fid_infinity(
    fid_at_n: Callable[[int], float] | Mapping[int, float], ns: Sequence[int] | None = None
) -> tuple[float, dict[int, float]]:
    """FID∞ (Chong & Forsyth 2020, "Effectively Unbiased FID and Inception Score and where to
    find them"): FID_N is linear in 1/N, so fit FID_N = FID∞ + slope/N by least squares over
    several N and extrapolate to 1/N = 0.

    `fid_at_n` is either {N: FID_N} (then `ns` must be None) or a callable N -> FID_N
    evaluated at each of `ns`. Returns (FID∞, {N: FID_N} used in the fit). The paper uses 15
    points from 5k to 50k; small N (a few hundred) is accepted but the 1/N law is only
    asymptotic, so inspect the returned points. FID∞ is NaN if any FID_N is.
    """
    if isinstance(fid_at_n, Mapping):
        if ns is not None:
            raise BenchError(
                "fid_infinity: pass either a {N: FID} mapping or a callable with ns, not both"
            )
        points = {int(n): _fid_value(v) for n, v in fid_at_n.items()}
    else:
        if ns is None:
            raise BenchError(
                "fid_infinity: a callable fid_at_n needs ns (the sample counts to evaluate)"
            )
        points = {int(n): _fid_value(fid_at_n(int(n))) for n in ns}
    if len(points) < 2 or min(points) < 1:
        raise BenchError(
            f"fid_infinity: need FID at >= 2 distinct positive sample counts, got {sorted(points)}"
        )
    if not all(np.isfinite(v) for v in points.values()):
        return float("nan"), points  # bench.metrics.fid reports NaN when sqrt(S1 S2) was not real
    inv_n = np.array([1.0 / n for n in points])
    _slope, intercept = np.polyfit(inv_n, np.array(list(points.values())), deg=1)
    return float(intercept), points


def default_fid_ns(n_fake: int, points: int = 15) -> list[int]:
    """15 evenly spaced N from N_fake/10 to N_fake: the paper's 5k..50k ratio at any size."""
    return sorted({int(n) for n in np.linspace(max(n_fake // 10, 2), n_fake, points)})


def fid_infinity_from_features(
    real_feats: np.ndarray, fake_feats: np.ndarray, ns: Sequence[int] | None = None, seed: int = 0
) -> tuple[float, dict[int, float]]:
    """FID∞ from feature arrays: for each N, FID between all real features and N fake features
    drawn without replacement (a fresh seeded shuffle per N, as the authors' code does).

    ns defaults to `default_fid_ns(N_fake)`. Returns (FID∞, {N: FID_N}).
    """
    from bench.metrics.fid import feature_stats, frechet_distance  # lazy: see _frechet

    real_t, fake_t = _as_features("real", real_feats), _as_features("fake", fake_feats)
    _same_dim(real_t, fake_t)
    fake = fake_t.numpy()
    ns = default_fid_ns(fake.shape[0]) if ns is None else list(ns)
    if any(not 2 <= n <= fake.shape[0] for n in ns):
        raise BenchError(
            f"fid_infinity: sample counts {ns} must lie in 2..{fake.shape[0]} (the number of fake features)"
        )
    mu_r, sigma_r = feature_stats(real_t.numpy())
    rng = np.random.default_rng(seed)

    def fid_at(n: int) -> float:
        subset = fake[rng.permutation(fake.shape[0])[:n]]
        mu_f, sigma_f = feature_stats(subset)
        return _fid_value(frechet_distance(mu_r, sigma_r, mu_f, sigma_f))

    return fid_infinity(fid_at, ns)


def _min_cosine_distances(probes: torch.Tensor, refs: torch.Tensor) -> torch.Tensor:
    """For each probe row, min over refs of 1 - |cos|, the Kaggle MiFID distance."""
    p = probes / probes.norm(dim=1, keepdim=True)
    r = refs / refs.norm(dim=1, keepdim=True)
    best = [
        (p[s : s + _CHUNK_ROWS] @ r.T).abs().amax(dim=1) for s in range(0, p.shape[0], _CHUNK_ROWS)
    ]
    # 1 - |cos| lies in [0, 1]; clamp so rounding cannot make an exact copy negative.
    return (1.0 - torch.cat(best)).clamp_(0.0, 1.0)


def memorization(
    train_feats: np.ndarray,
    fake_feats: np.ndarray,
    eps: float = 0.1,
    fid_train: float | None = None,
) -> dict[str, float]:
    """Memorization of the training set and MiFID (Kaggle "Generative Dog Images", 2019).

    d_j = min over training samples of 1 - |cos(fake_j, train_i)|: how close each generated
    sample is to its nearest training sample (0 = a copy). Kaggle's memorization distance is
    mean_j d_j ("the minimum cosine distance of all training samples ... averaged across all
    user generated image samples"); rows whose features sum to 0 are dropped, as Kaggle and
    torchmetrics do. Penalty = d if d < eps else 1 (Kaggle, torchmetrics
    `_compute_cosine_distance`); MiFID = FID(train, fake) / (penalty + 10e-15).

    Direction: Kaggle's code takes the minimum per *generated* sample; torchmetrics'
    MemorizationInformedFrechetInceptionDistance passes (real, fake) and so takes it per real
    sample. We follow Kaggle (the metric's definition), hence not the torchmetrics class.
    torchmetrics returns MiFID = 0 when FID <= 1e-8; that would rank a verbatim copy of the
    whole training set best, so we return NaN there instead (the distances still show the copy).

    `fid_train`: FID(train, fake) if already computed (its sqrtm of a 2048² matrix is the slow
    part); it must be against these same training features, as in Kaggle's definition.

    Returns mem_dist_{mean,min,q05,q25,median,q75,q95}, mem_frac_below_eps (share of samples
    individually closer than eps), mem_penalty, fid_train, mifid, n_train, n_fake.
    """
    if not 0.0 < eps <= 1.0:
        raise BenchError(
            f"memorization: eps={eps}; the cosine-distance threshold must be in (0, 1]"
        )
    train_t, fake_t = _as_features("train", train_feats), _as_features("fake", fake_feats)
    _same_dim(train_t, fake_t)
    train_nz, fake_nz = train_t[train_t.sum(dim=1) != 0], fake_t[fake_t.sum(dim=1) != 0]
    if train_nz.shape[0] == 0 or fake_nz.shape[0] == 0:
        raise BenchError(
            "memorization: every feature row of one set sums to 0; cosine distance is undefined"
        )
    dists = _min_cosine_distances(fake_nz, train_nz).numpy()
    q05, q25, q50, q75, q95 = np.quantile(dists, [0.05, 0.25, 0.5, 0.75, 0.95])
    mean_dist = float(dists.mean())
    penalty = mean_dist if mean_dist < eps else 1.0
    fid = _frechet(train_t.numpy(), fake_t.numpy()) if fid_train is None else float(fid_train)
    mifid = fid / (penalty + _KAGGLE_FID_EPSILON) if fid > _MIFID_MIN_FID else float("nan")
    return {
        "mem_dist_mean": mean_dist,
        "mem_dist_min": float(dists.min()),
        "mem_dist_q05": float(q05),
        "mem_dist_q25": float(q25),
        "mem_dist_median": float(q50),
        "mem_dist_q75": float(q75),
        "mem_dist_q95": float(q95),
        "mem_frac_below_eps": float((dists < eps).mean()),
        "mem_penalty": float(penalty),
        "fid_train": fid,
        "mifid": float(mifid),
        "n_train": int(train_nz.shape[0]),
        "n_fake": int(fake_nz.shape[0]),
    }
