"""Disentanglement against known generating factors, and which latent dimensions are used.

Pure functions on numpy arrays: latents N x D (codes of N images), factors {name: N labels}.
"""

from __future__ import annotations

import numpy as np

from bench.core.errors import BenchError

MIG_BINS = 20  # Chen et al. 2018 / disentanglement_lib discretise each latent into 20 bins


def discretize(latents: np.ndarray, bins: int = MIG_BINS) -> np.ndarray:
    """Each column cut into ``bins`` equal-width bins over its own range -> int labels.

    As disentanglement_lib's ``_histogram_discretize``: np.digitize on np.histogram edges.
    """
    out = np.zeros(latents.shape, dtype=np.int64)
    for d in range(latents.shape[1]):
        edges = np.histogram(latents[:, d], bins)[1]
        out[:, d] = np.digitize(latents[:, d], edges[:-1])
    return out


def _labels(values: np.ndarray) -> np.ndarray:
    return np.unique(np.asarray(values), return_inverse=True)[1].reshape(-1)


def entropy_nats(labels: np.ndarray) -> float:
    p = np.bincount(_labels(labels)) / len(labels)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def mutual_information_nats(a: np.ndarray, b: np.ndarray) -> float:
    """I(a; b) of two discrete label arrays from their joint histogram (plug-in estimate,
    the same as sklearn.metrics.mutual_info_score)."""
    a, b = _labels(a), _labels(b)
    na, nb = a.max() + 1, b.max() + 1
    joint = np.bincount(a * nb + b, minlength=na * nb).reshape(na, nb) / len(a)
    outer = joint.sum(1, keepdims=True) * joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / outer[nz])).sum())


def mig(latents: np.ndarray, factors: dict[str, np.ndarray]) -> tuple[float, dict[str, float]]:
    """Mutual Information Gap (Chen et al. 2018, "Isolating sources of disentanglement in
    VAEs", eq. 6): for each factor v_k, (I(z_j*; v_k) - I(z_j'; v_k)) / H(v_k), where j* and
    j' are the two latent dims with the most information about v_k; averaged over factors.

    Latents are discretised into 20 bins per dim (disentanglement_lib's protocol); factors
    are discrete labels. 1 = each factor lives in one dim alone; 0 = none is isolated.
    A factor that never varies (entropy 0) is left out of the mean and reported as NaN.
    """
    latents = np.asarray(latents, dtype=np.float64)
    if latents.ndim != 2 or latents.shape[1] < 2:
        raise BenchError(f"mig: latents must be N x D with D >= 2, got shape {latents.shape}")
    if not factors or any(len(np.asarray(v)) != len(latents) for v in factors.values()):
        raise BenchError(f"mig: give factors as {{name: N labels}} with N = {len(latents)}")
    binned = discretize(latents)
    per_factor = {}
    for name, values in factors.items():
        h = entropy_nats(values)
        if h == 0:
            per_factor[name] = float("nan")
            continue
        mi = sorted(mutual_information_nats(binned[:, d], values) for d in range(binned.shape[1]))
        per_factor[name] = (mi[-1] - mi[-2]) / h
    scored = [v for v in per_factor.values() if not np.isnan(v)]
    if not scored:
        raise BenchError("mig: every factor is constant; nothing to measure")
    return float(np.mean(scored)), per_factor


def latent_activity(mu: np.ndarray, logvar: np.ndarray | None = None) -> np.ndarray:
    """How much each latent dimension is used, per dimension (higher = more used).

    With a VAE posterior (mu, logvar): the mean KL(q(z_d|x) || N(0, 1)) per dimension in
    nats, which is large where the posterior is narrow and moves with x (Burda et al. 2016
    count "active units" from the same signal). Without it (an AE): the variance of the
    codes over the images, as the active-units test uses.
    """
    mu = np.asarray(mu, dtype=np.float64)
    if logvar is None:
        return mu.var(0)
    logvar = np.asarray(logvar, dtype=np.float64)
    return (0.5 * (mu**2 + np.exp(logvar) - 1.0 - logvar)).mean(0)
