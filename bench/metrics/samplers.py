"""Where latents come from: the prior, distributions fitted to the training codes, and
straight or spherical paths between two codes.

An autoencoder's decoder only ever saw the codes of training images. Decoding z ~ N(0, I)
asks it for codes it may never have seen; Ghosh et al. 2020 ("From variational to
deterministic autoencoders", sec. 4 "ex-post density estimation") instead fit a density
to the training codes after training and sample from that: a full-covariance Gaussian or
a 10-component Gaussian mixture. For a GAN, truncating the prior trades diversity for
fidelity (Brock et al. 2019, "Large scale GAN training...", sec. 3.1).

Usage: ``sampler = fit_sampler("gmm", model, train_images_uint8, seed)`` then
``sample_images(model, sampler, n, seed)`` -> images in [0, 1].
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from bench.core.errors import BenchError
from bench.data.pixels import to_model_space, to_unit
from models.base import GenerativeModel

CHUNK = 250  # images generated / reconstructed per forward pass
SAMPLE_SEED = 1234  # the same latents at every evaluation, so curves compare like with like

GMM_COMPONENTS = 10  # Ghosh et al. 2020, sec. 4: a 10-component GMM
GMM_MAX_ITER = 100  # scikit-learn GaussianMixture defaults: max_iter=100, tol=1e-3
GMM_TOL = 1e-3  # change of the mean log-likelihood per latent (nats) that counts as converged
# Ridge added to every covariance, relative to the mean latent variance: the scale-free form
# of scikit-learn's reg_covar (1e-6 absolute). It keeps a component with fewer points than
# dimensions, or a dimension the encoder never uses, positive definite.
RIDGE_REL, RIDGE_ABS = 1e-4, 1e-8
FITTED = ("gaussian", "gmm")  # need a trained encoder and the training images


class Sampler:
    """Draws latents; ``sample(n, generator)`` -> float32 n x latent_dim on the CPU."""

    name: str = ""
    info: dict = {}

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError


@dataclass
class PriorSampler(Sampler):
    dim: int
    name: str = "prior"
    info: dict = field(default_factory=dict)

    def sample(self, n, generator=None):
        # The same draw as GenerativeModel.sample, so 'prior' reproduces bench.metrics.samplers.generate.
        return torch.randn(n, self.dim, generator=generator, device="cpu")


@dataclass
class TruncatedSampler(Sampler):
    """N(0, I) restricted to |z_i| <= threshold in every coordinate (Brock et al. 2019).

    BigGAN resamples coordinates beyond the threshold until they fall inside; drawing by
    the inverse CDF of the truncated normal gives exactly that distribution in one pass.
    """

    dim: int
    threshold: float
    name: str = "trunc"
    info: dict = field(default_factory=dict)

    def sample(self, n, generator=None):
        normal = torch.distributions.Normal(0.0, 1.0)
        t = torch.tensor(self.threshold, dtype=torch.float64)
        lo, hi = normal.cdf(-t), normal.cdf(t)
        u = torch.rand(n, self.dim, generator=generator, dtype=torch.float64)
        return torch.special.ndtri(lo + u * (hi - lo)).float()


@dataclass
class MixtureSampler(Sampler):
    """A mixture of full-covariance Gaussians; one component is a plain Gaussian."""

    weights: torch.Tensor  # K, float64
    means: torch.Tensor  # K x D
    chols: torch.Tensor  # K x D x D, lower Cholesky factors of the covariances
    name: str = "gmm"
    info: dict = field(default_factory=dict)

    def sample(self, n, generator=None):
        which = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.means.shape[1], generator=generator, dtype=torch.float64)
        z = self.means[which] + (self.chols[which] @ eps[:, :, None])[:, :, 0]
        return z.float()

    def log_likelihood(self, latents: torch.Tensor) -> float:
        """Mean log-density of ``latents`` under the mixture (nats per latent)."""
        x = latents.double()
        return float(_log_joint(x, self.weights, self.means, self.chols).logsumexp(1).mean())


# --- fitting ------------------------------------------------------------------------------


def _ridge(x: torch.Tensor) -> float:
    return RIDGE_REL * float(x.var(0, unbiased=False).mean()) + RIDGE_ABS


def _cholesky(cov: torch.Tensor, ridge: float) -> torch.Tensor:
    eye = torch.eye(cov.shape[0], dtype=cov.dtype)
    for _ in range(8):  # grow the ridge only if rounding left cov not positive definite
        chol, info = torch.linalg.cholesky_ex(cov + ridge * eye)
        if int(info) == 0:
            return chol
        ridge *= 10
    raise BenchError("latent covariance is not positive definite even with a ridge")


def fit_gaussian(latents: torch.Tensor) -> MixtureSampler:
    """Full-covariance Gaussian (maximum likelihood mean and covariance, plus a ridge)."""
    x = latents.double()
    mean = x.mean(0)
    cov = (x - mean).T @ (x - mean) / len(x)
    chol = _cholesky(cov, _ridge(x))
    info = {"n_fit": len(x)}
    return MixtureSampler(torch.ones(1, dtype=x.dtype), mean[None], chol[None], "gaussian", info)


def _log_gaussian(x: torch.Tensor, mean: torch.Tensor, chol: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, L L^T) per row, through a triangular solve (no explicit inverse)."""
    sol = torch.linalg.solve_triangular(chol, (x - mean).T, upper=False)
    log_det = 2 * chol.diagonal().log().sum()
    return -0.5 * (sol.pow(2).sum(0) + log_det + x.shape[1] * math.log(2 * math.pi))


def _log_joint(x, weights, means, chols) -> torch.Tensor:
    """N x K matrix of log w_k + log N(x_n; mu_k, Sigma_k)."""
    cols = [_log_gaussian(x, means[k], chols[k]) for k in range(len(weights))]
    return torch.stack(cols, 1) + weights.log()


def fit_gmm(
    latents: torch.Tensor,
    k: int = GMM_COMPONENTS,
    seed: int = 0,
    max_iter: int = GMM_MAX_ITER,
    tol: float = GMM_TOL,
) -> MixtureSampler:
    """Full-covariance Gaussian mixture fitted by scikit-learn's GaussianMixture (EM from
    greedy k-means++ centres), deterministic from ``seed``; sampled here with torch.

    A hand-written EM with plain k-means++ seeding used to stand here: from the same start it
    matched scikit-learn, but its seeding often put two centres in one cluster and ended in a
    worse optimum (-6.953 vs -6.861 nats per latent on 10 separated clusters, 0/10 vs 7/10
    starts reaching the better one; tests/test_parity.py), so the maintained fit replaced it.
    The ridge is ours (relative to the latents' variance), passed as reg_covar.
    """
    from sklearn.mixture import GaussianMixture  # heavy import: only when a GMM is fitted

    x = latents.double()
    k = min(k, len(x))  # fewer codes than components: one component per code at most
    from sklearn.exceptions import ConvergenceWarning

    gmm = GaussianMixture(
        k,
        covariance_type="full",
        init_params="k-means++",
        reg_covar=_ridge(x),
        tol=tol,
        max_iter=max_iter,
        random_state=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # recorded in info["converged"]
        fit = gmm.fit(x.numpy())
    chols = torch.linalg.cholesky(torch.from_numpy(fit.covariances_))  # reg_covar included
    info = {"n_fit": len(x), "components": k, "iterations": int(fit.n_iter_)}
    info["converged"] = bool(fit.converged_)
    weights, means = torch.from_numpy(fit.weights_), torch.from_numpy(fit.means_)
    return MixtureSampler(weights, means, chols, "gmm", info)


# --- the registry -----------------------------------------------------------------------


@torch.no_grad()
def encode_latents(model: GenerativeModel, images_uint8: torch.Tensor) -> torch.Tensor:
    """Codes of uint8 images (the posterior mean for a VAE), float32 on the CPU."""
    out = [
        model.encode(to_model_space(images_uint8[i : i + CHUNK], model.device)).cpu()
        for i in range(0, len(images_uint8), CHUNK)
    ]
    return torch.cat(out).flatten(1).float()


def _fit_prior(model, train_images, seed, threshold):
    return PriorSampler(model.config.latent_dim)


def _fit_trunc(model, train_images, seed, threshold):
    return TruncatedSampler(model.config.latent_dim, threshold, f"trunc{threshold:g}")


def _fit_gaussian(model, train_images, seed, threshold):
    return fit_gaussian(encode_latents(model, train_images))


def _fit_gmm(model, train_images, seed, threshold):
    return fit_gmm(encode_latents(model, train_images), seed=seed)


# name -> fit(model, train_images_uint8, seed, threshold) -> Sampler
SAMPLERS: dict[str, Callable[..., Sampler]] = {
    "prior": _fit_prior,
    "gaussian": _fit_gaussian,
    "gmm": _fit_gmm,
    "trunc": _fit_trunc,
}
ACCEPTED = "prior, gaussian, gmm, trunc<T> (e.g. trunc0.5)"


def parse_sampler_name(name: str) -> tuple[str, float | None]:
    """'gmm' -> ('gmm', None); 'trunc0.5' -> ('trunc', 0.5)."""
    match = re.fullmatch(r"trunc(\d+(?:\.\d*)?|\.\d+)", name)
    if match and float(match.group(1)) > 0:
        return "trunc", float(match.group(1))
    if name in SAMPLERS and name != "trunc":
        return name, None
    raise BenchError(f"unknown sampler {name!r}; accepted: {ACCEPTED}")


def applies_in_evaluation(name: str, model: GenerativeModel) -> bool:
    """Samplers the final evaluation runs on a model: the fitted ones where there is an
    encoder (Ghosh et al. 2020); truncation only where there is none (Brock et al. 2019)."""
    return applies_to(name, model.has_encoder)


def applies_to(name: str, has_encoder: bool) -> bool:
    """``applies_in_evaluation`` from the model class's declaration alone (planning time)."""
    kind, _ = parse_sampler_name(name)
    return kind == "prior" or (kind in FITTED) == has_encoder


def fit_sampler(
    name: str, model: GenerativeModel, train_images_uint8: torch.Tensor | None, seed: int = 0
) -> Sampler:
    """A sampler for ``model``; fitted ones encode ``train_images_uint8`` (model in eval mode)."""
    kind, threshold = parse_sampler_name(name)
    if kind in FITTED and not model.has_encoder:
        raise BenchError(
            f"sampler {name!r} is fitted to encoded training images and needs a model with "
            "an encoder (ae, vae); accepted for this model: prior, trunc<T>"
        )
    if kind in FITTED and (train_images_uint8 is None or len(train_images_uint8) < 2):
        raise BenchError(f"sampler {name!r} needs training images (at least 2) to fit")
    return SAMPLERS[kind](model, train_images_uint8, seed, threshold)


@torch.no_grad()
def decode_latents(model: GenerativeModel, z: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] on the CPU from latents, in chunks."""
    return torch.cat(
        [
            to_unit(model.decode(z[i : i + CHUNK].to(model.device))).cpu()
            for i in range(0, len(z), CHUNK)
        ]
    )


@torch.no_grad()
def sample_images(model: GenerativeModel, sampler: Sampler, n: int, seed: int) -> torch.Tensor:
    """n images in [0, 1]; for 'prior' identical to bench.metrics.samplers.generate(model, n, seed)."""
    g = torch.Generator().manual_seed(seed)
    return torch.cat(
        [decode_latents(model, sampler.sample(min(CHUNK, n - i), g)) for i in range(0, n, CHUNK)]
    )


# --- paths between two latents -----------------------------------------------------------


def latent_path(z0: torch.Tensor, z1: torch.Tensor, steps: int, spherical: bool = False):
    """``steps`` latents from z0 to z1 (both included), steps x D.

    Spherical interpolation (slerp, Shoemake 1985) is what White 2016 ("Sampling
    generative networks") recommends for Gaussian priors: the midpoint of a straight line
    between two typical draws has a norm the prior almost never produces.
    """
    t = torch.linspace(0, 1, steps, dtype=torch.float64)[:, None]
    a, b = z0.double().flatten(), z1.double().flatten()
    if spherical:
        cos = torch.dot(a, b) / (a.norm() * b.norm()).clamp_min(1e-12)
        omega = torch.arccos(cos.clamp(-1, 1))
        if float(torch.sin(omega)) > 1e-6:  # parallel codes: slerp reduces to lerp
            s = torch.sin(omega)
            return (torch.sin((1 - t) * omega) / s * a + torch.sin(t * omega) / s * b).float()
    return ((1 - t) * a + t * b).float()


@torch.no_grad()
def generate(model, n: int, seed: int = SAMPLE_SEED) -> torch.Tensor:
    """n samples in [0, 1] on the CPU, from a fixed latent seed."""
    g = torch.Generator().manual_seed(seed)
    return torch.cat(
        [to_unit(model.sample(min(CHUNK, n - i), g)).cpu() for i in range(0, n, CHUNK)]
    )


@torch.no_grad()
def reconstruct(model, images_uint8: torch.Tensor) -> torch.Tensor | None:
    """Reconstructions in [0, 1] on the CPU; None for models without an encoder."""
    if not model.has_encoder:
        return None
    out = []
    for i in range(0, len(images_uint8), CHUNK):
        x = to_model_space(images_uint8[i : i + CHUNK], model.device)
        out.append(to_unit(model.reconstruct(x)).cpu())
    return torch.cat(out)
