"""Evaluation of a model at one point of training; knows nothing of how it was trained.

Generated images are passed through Inception once per evaluation and every
feature-based metric is derived from those features. Real-image statistics come from
an on-disk cache keyed by what produced them (bench.metrics.fid.real_statistics).

The final evaluation adds, for each sampler in ``cfg.samplers`` that applies to the model
(bench.metrics.samplers), the same metrics under ``<metric>@<sampler>`` (e.g. fid@gmm), and the
evenness of decoded latent interpolations (interp_cv, interp_length).
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass, field

import numpy as np
import torch

from bench.core.config import EvalConfig
from bench.core.errors import BenchError
from bench.data.images import ImageSet
from bench.data.pixels import to_model_space
from bench.metrics import fid, image_metrics, registry, samplers
from bench.metrics.feature_metrics import fid_infinity_from_features
from bench.metrics.image_metrics import latent_path_smoothness
from bench.metrics.samplers import SAMPLE_SEED, generate, reconstruct

INTERP_PAIRS, INTERP_STEPS = 8, 10  # latent interpolation at the final evaluation


@dataclass
class MetricValue:
    metric: str
    value: float
    n: int | None = None


@dataclass
class Evaluation:
    """What one evaluation of a model produced."""

    metrics: list[MetricValue]
    # Pictures besides samples.png, name -> (images in [0, 1], nrow; None: a square grid).
    pictures: dict[str, tuple[torch.Tensor, int | None]] = field(default_factory=dict)


def _interp_generator() -> torch.Generator:
    return torch.Generator().manual_seed(SAMPLE_SEED + 1)  # not the FID latents


@contextlib.contextmanager
def isolated_rng(device: torch.device):
    """Run a block without changing the torch (CPU and CUDA), numpy or Python RNG states."""
    np_state, py_state = np.random.get_state(), random.getstate()
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


@contextlib.contextmanager
def drawing_mode(model):
    """Draw from ``model`` as every evaluation does: eval-mode BatchNorm (BENCHMARKS.md
    "BatchNorm sampling mode") under isolated_rng, the training flag restored after."""
    was_training = model.training
    model.eval()
    try:
        with isolated_rng(model.device):
            yield
    finally:
        model.train(was_training)


class Evaluator:
    def __init__(
        self,
        cfg: EvalConfig,
        fid_real: ImageSet,
        heldout: ImageSet,
        device,
        train_images: torch.Tensor | None = None,
    ):
        """``train_images`` (uint8, what the model trained on): fitted samplers (gaussian,
        gmm) are fitted to their codes at the final evaluation; None skips those samplers."""

        extras = registry.feature_metrics()
        unknown = sorted(set(cfg.extras) - set(extras))
        if unknown:
            raise BenchError(f"unknown eval.extras {unknown[0]!r}; accepted: {', '.join(extras)}")
        self.samplers = list(getattr(cfg, "samplers", ["prior"]))
        for name in self.samplers:
            samplers.parse_sampler_name(name)  # an unknown name fails now, not after training
        self.cfg, self.fid_real, self.heldout, self.device = cfg, fid_real, heldout, device
        self.train_images = train_images
        self.n_fid = min(cfg.fid_samples, len(fid_real))
        self.heldout_images = heldout.images[: cfg.heldout_images]
        self.n_track = min(getattr(cfg, "track_n", 0), self.n_fid)  # no FID: no tracking
        # Real-image statistics depend only on the real data, so one evaluator can serve every
        # run of a sweep; nothing else about a run is kept here.
        self._real, self._real_track, self._train = None, None, None

    @property
    def numerics(self) -> str:
        """Feature numerics of every published FID (tracked points use "fast")."""
        return "exact" if self.cfg.fid_exact else fid.PUBLISHED

    def _real_stats(self, n: int, numerics: str):
        r = self.fid_real
        key = {
            "dataset": r.dataset,
            "split": r.split,
            "image_size": r.images.shape[-1],
            "n": n,
            "pixels": r.fingerprint,
        }
        return fid.real_statistics(key, r.images[:n], device=self.device, numerics=numerics)

    def real_statistics(self):
        if self._real is None:
            self._real = self._real_stats(self.n_fid, self.numerics)
        return self._real

    def train_statistics(self):
        """(mu, sigma, features) of the first n_fid training images, cached like the real
        statistics, for metrics registered against_train; None without training images.
        Under fid_split=train they are the FID reference statistics themselves (the same
        images), so values are unchanged there and nothing is computed twice."""
        if self.fid_real.split == "train":
            return self.real_statistics()
        if self.train_images is None or len(self.train_images) == 0:
            return None
        if self._train is None:
            images = self.train_images[: self.n_fid]
            key = {
                "dataset": self.fid_real.dataset,
                "split": "train",
                "image_size": images.shape[-1],
                "n": len(images),
            }
            self._train = fid.real_statistics(
                key, images, device=self.device, numerics=self.numerics
            )
        return self._train

    def _against_train(self, feats, fid_value: float):
        """(train features, train images, FID(train, fake)) or None (no training images)."""
        stats = self.train_statistics()
        if stats is None:
            return None
        mu, sigma, train_feats = stats
        if self.fid_real.split != "train":
            fid_value = float(fid.frechet_distance(*fid.feature_stats(feats), mu, sigma))
        return train_feats, self.train_images[: len(train_feats)], fid_value

    @torch.no_grad()
    def track(self, model) -> list[MetricValue]:
        """A tracked point: FID and KID of ``n_track`` samples (the fixed sample seed, so points
        differ by the model only) against the first ``n_track`` real images, always on the
        fast Inception path, and for a model with an encoder the recon MSE of the first
        ``n_track`` held-out images (no Inception: a small share of the point's cost); under
        isolated_rng and in eval mode like every evaluation."""
        if self.n_track < 2:  # a covariance needs two samples
            return []
        with drawing_mode(model):
            # Inside isolated_rng: on a cache miss this builds Inception, whose init draws
            # from the global RNG that training draws from.
            if self._real_track is None:
                self._real_track = self._real_stats(self.n_track, "fast")
            mu_real, sigma_real, real_feats = self._real_track
            fake = generate(model, self.n_track)
            feats = fid.inception_features(fake, device=self.device, numerics="fast")
            value = float(fid.frechet_distance_of_features(feats, mu_real, sigma_real))
            real = self.fid_real.images[: self.n_track]
            kid = registry.compute("kid", feats, real_feats, fake, real, value)["kid_mean"]
            held_out = self.heldout_images[: self.n_track]
            recon = reconstruct(model, held_out) if len(held_out) else None
        out = [MetricValue("fid", value, self.n_track), MetricValue("kid_mean", kid, self.n_track)]
        if recon is not None:
            mse = image_metrics.recon_mse(held_out, recon)  # uint8: converted per slice
            out.append(MetricValue("recon_mse", mse, len(held_out)))
        return out

    @torch.no_grad()
    def __call__(self, model, final: bool = False, *, index: int = 1) -> Evaluation:
        """Evaluate ``model``; ``index`` numbers this evaluation within its run (1, 2, ...),
        counted by the caller from the run's own epochs: ``eval.extras_every`` applies to it."""
        # Evaluation must not move training's random streams: building Inception the first
        # time in a process draws from the global RNG (its init runs before the weights load),
        # which would make a run's numbers depend on the runs before it in the process.
        with isolated_rng(model.device):
            return self._evaluate(model, final, index)

    def _evaluate(self, model, final: bool, index: int) -> Evaluation:
        # Eval-mode BatchNorm for every model: measured against train mode and recomputed
        # statistics (benchmarks/bn_sampling.py, BENCHMARKS.md "BatchNorm sampling mode").
        result = Evaluation([])
        with drawing_mode(model):
            result.metrics += self._sample_metrics(model, final, self._extras_due(final, index))
            result.metrics += self._heldout_metrics(model)
            if final:  # fitted samplers need the trained encoder: only at the end
                result.metrics += self._sampler_metrics(model, result.pictures)
                result.metrics += self._interpolation_metrics(model, result.pictures)
        return result

    def _extras_due(self, final: bool, index: int) -> bool:
        every = self.cfg.extras_every
        return final or (every > 0 and index % every == 0)

    def _sample_metrics(self, model, final: bool, extras: bool) -> list[MetricValue]:
        if self.n_fid == 0:
            return []
        fake = generate(model, self.n_fid)
        out, feats = self._feature_metrics(fake, extras, suffix="")
        if final and self.cfg.fid_inf:
            # Chong & Forsyth 2020: FID is linear in 1/N; 5 points keep the cost bounded.
            n = self.n_fid
            ns = sorted({max(n // k, 50) for k in (5, 4, 3, 2, 1)})
            fid_inf, _ = fid_infinity_from_features(self.real_statistics()[2], feats, ns=ns)
            out.append(MetricValue("fid_inf", fid_inf, n))
        return out

    def _feature_metrics(self, fake, extras: bool, suffix: str):
        """FID (and the extras) of generated images in [0, 1], from one Inception pass;
        every metric name gets ``suffix`` (e.g. '@gmm'). Returns (metrics, features)."""
        mu_real, sigma_real, real_feats = self.real_statistics()
        feats = fid.inception_features(fake, device=self.device, numerics=self.numerics)
        result = fid.frechet_distance(*fid.feature_stats(feats), mu_real, sigma_real)
        n = self.n_fid
        out = [MetricValue("fid" + suffix, float(result), n)]
        if result.note:  # a fallback was taken (eps on the diagonals, NaN): record it
            out.append(MetricValue("fid_sqrtm_eps" + suffix, result.eps_added, n))
            out.append(MetricValue("fid_sqrtm_max_imag" + suffix, result.max_imag, n))
        if extras:
            out += self._extras(feats, fake, real_feats, float(result), suffix)
        return out, feats

    def _extras(self, feats, fake, real_feats, fid_value: float, suffix: str) -> list[MetricValue]:
        """eval.extras of one sample set: against the FID reference images, or against the
        training images for metrics registered against_train (memorisation)."""
        n, out = self.n_fid, []
        against_real = (real_feats, self.fid_real.images[:n], fid_value)
        against_train = None
        for name in self.cfg.extras:
            reference = against_real
            if registry.feature_metrics()[name].against_train:
                against_train = against_train or self._against_train(feats, fid_value)
                if against_train is None:
                    continue  # no training images given: no memorisation rows
                reference = against_train
            ref_feats, ref_images, ref_fid = reference
            values = registry.compute(name, feats, ref_feats, fake, ref_images, ref_fid)
            out += [MetricValue(k + suffix, float(v), n) for k, v in values.items()]
        return out

    def _sampler_metrics(self, model, pictures: dict) -> list[MetricValue]:
        """FID and extras as ``<metric>@<sampler>`` for each non-prior sampler that applies:
        gaussian / gmm fitted to the training codes (Ghosh et al. 2020) for models with an
        encoder, truncation (Brock et al. 2019) for the GAN. Same N and sample seed as 'fid'."""

        out = []
        for name in self.samplers if self.n_fid else []:
            kind, _ = samplers.parse_sampler_name(name)
            no_data = kind in samplers.FITTED and self.train_images is None
            if kind == "prior" or no_data or not samplers.applies_in_evaluation(name, model):
                continue
            # seed 0 fixes the GMM's k-means++ start: a re-evaluation refits the same density
            sampler = samplers.fit_sampler(name, model, self.train_images, seed=0)
            fake = samplers.sample_images(model, sampler, self.n_fid, SAMPLE_SEED)
            pictures[f"samples@{name}"] = (fake[: self.cfg.grid_images], None)
            out += self._feature_metrics(fake, extras=True, suffix="@" + name)[0]
        return out

    def _interpolation_metrics(self, model, pictures: dict) -> list[MetricValue]:
        """Evenness of decoded straight-line paths (bench.metrics.image_metrics.latent_path_smoothness):
        AE/VAE between the codes of fixed held-out pairs, the GAN between fixed prior draws."""
        pairs, steps = INTERP_PAIRS, INTERP_STEPS
        if model.has_encoder:
            if len(self.heldout_images) < 2:
                return []
            pairs = min(pairs, len(self.heldout_images) // 2)
            z = samplers.encode_latents(model, self.heldout_images[: 2 * pairs])
        else:
            z = torch.randn(2 * pairs, model.config.latent_dim, generator=_interp_generator())
        cvs, lengths, strips = [], [], []
        for i in range(pairs):  # pair i joins image i with image pairs + i
            path = samplers.latent_path(z[i], z[pairs + i], steps)
            frames = samplers.decode_latents(model, path)
            cv, length = latent_path_smoothness(frames)
            cvs.append(cv)
            lengths.append(length)
            strips.append(frames)
        pictures["interpolation"] = (torch.cat(strips[:4]), steps)  # one row per pair
        return [
            MetricValue("interp_cv", sum(cvs) / pairs, pairs),
            MetricValue("interp_length", sum(lengths) / pairs, pairs),
        ]

    def _heldout_metrics(self, model) -> list[MetricValue]:
        real = self.heldout_images
        if len(real) == 0:
            return []
        out = []
        n = len(real)
        recon = reconstruct(model, real)
        if recon is not None:
            # uint8 as it is: the image metrics convert it slice by slice
            out += [
                MetricValue("recon_mse", image_metrics.recon_mse(real, recon), n),
                MetricValue("psnr", image_metrics.psnr(real, recon), n),
                MetricValue("ssim", image_metrics.ssim(real, recon), n),
                MetricValue("sharpness_recon", image_metrics.sharpness_ratio(recon, real), n),
            ]
        terms = model.heldout_terms(to_model_space(real, model.device))
        out += [MetricValue(k, float(v), n) for k, v in terms.items()]
        return out
