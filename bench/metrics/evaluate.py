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
from dataclasses import dataclass

import numpy as np
import torch

from bench.core.config import EvalConfig
from bench.core.errors import BenchError
from bench.data.images import ImageSet
from bench.data.pixels import to_model_space
from bench.metrics import samplers
from bench.metrics.samplers import SAMPLE_SEED, generate, reconstruct

INTERP_PAIRS, INTERP_STEPS = 8, 10  # latent interpolation at the final evaluation


@dataclass
class MetricValue:
    metric: str
    value: float
    n: int | None = None


def _interp_generator() -> torch.Generator:
    return torch.Generator().manual_seed(SAMPLE_SEED + 1)  # not the FID latents


def _kid(fake_feats, real_feats, fake, real, fid_value):
    from bench.metrics.feature_metrics import kid

    # Subsets of at most 1000 (Binkowski et al. 2018); 100 subsets at large N, fewer when small.
    mean, std = kid(real_feats, fake_feats, subsets=100, subset_size=1000)
    return {"kid_mean": mean, "kid_std": std}


def _prdc(fake_feats, real_feats, fake, real, fid_value):
    from bench.metrics.feature_metrics import density_coverage, precision_recall

    precision, recall = precision_recall(real_feats, fake_feats, k=3)
    density, coverage = density_coverage(real_feats, fake_feats, k=5)
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


def _sharpness(fake_feats, real_feats, fake, real, fid_value):
    from bench.metrics.image_metrics import sharpness_ratio

    return {"sharpness": sharpness_ratio(fake, real.float() / 255)}


def _diversity(fake_feats, real_feats, fake, real, fid_value):
    from bench.metrics.image_metrics import batch_diversity

    # Mean pairwise distance within 200 samples relative to 200 real images: falls towards 0
    # when the generator collapses onto a few modes.
    n = min(200, len(fake), len(real))
    return {"diversity": batch_diversity(fake[:n]) / batch_diversity(real[:n].float() / 255)}


def _memorization(fake_feats, real_feats, fake, real, fid_value):
    from bench.metrics.feature_metrics import memorization

    m = memorization(real_feats, fake_feats, fid_train=fid_value)
    return {
        "mem_dist_mean": m["mem_dist_mean"],
        "mem_dist_q05": m["mem_dist_q05"],
        "mifid": m["mifid"],
    }


# name -> fn(fake_feats, real_feats, fake_images01, real_images_uint8, fid) -> {metric: value}
EXTRAS = {
    "kid": _kid,
    "prdc": _prdc,
    "sharpness": _sharpness,
    "diversity": _diversity,
    "memorization": _memorization,
}


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

        unknown = sorted(set(cfg.extras) - set(EXTRAS))
        if unknown:
            raise BenchError(f"unknown eval.extras {unknown[0]!r}; accepted: {', '.join(EXTRAS)}")
        self.samplers = list(getattr(cfg, "samplers", ["prior"]))
        for name in self.samplers:
            samplers.parse_sampler_name(name)  # an unknown name fails now, not after training
        self.cfg, self.fid_real, self.heldout, self.device = cfg, fid_real, heldout, device
        self.train_images = train_images
        self.n_fid = min(cfg.fid_samples, len(fid_real))
        self.heldout_images = heldout.images[: cfg.heldout_images]
        self._real = None
        self.evaluations = 0
        # Pictures made by the last evaluation besides samples.png: name -> (images, nrow).
        self.pictures: dict[str, tuple[torch.Tensor, int | None]] = {}

    def real_statistics(self):
        from bench.metrics import fid

        if self._real is None:
            r = self.fid_real
            key = {
                "dataset": r.dataset,
                "split": r.split,
                "image_size": r.images.shape[-1],
                "n": self.n_fid,
                "pixels": r.fingerprint,
            }
            self._real = fid.real_statistics(
                key, r.images[: self.n_fid], device=self.device, exact=self.cfg.fid_exact
            )
        return self._real

    @torch.no_grad()
    def __call__(self, model, final: bool = False) -> list[MetricValue]:
        # Evaluation must not move training's random streams: building Inception the first
        # time in a process draws from the global RNG (its init runs before the weights load),
        # which would make a run's numbers depend on the runs before it in the process.
        with isolated_rng(model.device):
            return self._evaluate(model, final)

    def _evaluate(self, model, final: bool) -> list[MetricValue]:
        was_training = model.training
        model.eval()
        self.evaluations += 1
        self.pictures = {}
        try:
            out = self._sample_metrics(model, final) + self._heldout_metrics(model)
            if final:  # fitted samplers need the trained encoder: only at the end
                out += self._sampler_metrics(model) + self._interpolation_metrics(model)
            return out
        finally:
            model.train(was_training)

    def _extras_due(self, final: bool) -> bool:
        every = self.cfg.extras_every
        return final or (every > 0 and self.evaluations % every == 0)

    def _sample_metrics(self, model, final: bool) -> list[MetricValue]:
        if self.n_fid == 0:
            return []
        fake = generate(model, self.n_fid)
        out, feats = self._feature_metrics(fake, self._extras_due(final), suffix="")
        if final and self.cfg.fid_inf:
            from bench.metrics.feature_metrics import fid_infinity_from_features

            # Chong & Forsyth 2020: FID is linear in 1/N; 5 points keep the cost bounded.
            n = self.n_fid
            ns = sorted({max(n // k, 50) for k in (5, 4, 3, 2, 1)})
            fid_inf, _ = fid_infinity_from_features(self.real_statistics()[2], feats, ns=ns)
            out.append(MetricValue("fid_inf", fid_inf, n))
        return out

    def _feature_metrics(self, fake, extras: bool, suffix: str):
        """FID (and the extras) of generated images in [0, 1], from one Inception pass;
        every metric name gets ``suffix`` (e.g. '@gmm'). Returns (metrics, features)."""
        from bench.metrics import fid

        mu_real, sigma_real, real_feats = self.real_statistics()
        feats = fid.inception_features(fake, device=self.device, exact=self.cfg.fid_exact)
        result = fid.frechet_distance(*fid.feature_stats(feats), mu_real, sigma_real)
        n = self.n_fid
        out = [MetricValue("fid" + suffix, float(result), n)]
        if result.note:  # a fallback was taken (eps on the diagonals, NaN): record it
            out.append(MetricValue("fid_sqrtm_eps" + suffix, result.eps_added, n))
            out.append(MetricValue("fid_sqrtm_max_imag" + suffix, result.max_imag, n))
        if extras:
            real = self.fid_real.images[:n]
            for name in self.cfg.extras:
                values = EXTRAS[name](feats, real_feats, fake, real, float(result))
                out += [MetricValue(k + suffix, float(v), n) for k, v in values.items()]
        return out, feats

    def _sampler_metrics(self, model) -> list[MetricValue]:
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
            self.pictures[f"samples@{name}"] = (fake[: self.cfg.grid_images], None)
            out += self._feature_metrics(fake, extras=True, suffix="@" + name)[0]
        return out

    def _interpolation_metrics(self, model) -> list[MetricValue]:
        """Evenness of decoded straight-line paths (bench.metrics.image_metrics.latent_path_smoothness):
        AE/VAE between the codes of fixed held-out pairs, the GAN between fixed prior draws."""
        from bench.metrics.image_metrics import latent_path_smoothness

        pairs, steps = INTERP_PAIRS, INTERP_STEPS
        if samplers.has_encoder(model):
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
        self.pictures["interpolation"] = (torch.cat(strips[:4]), steps)  # one row per pair
        return [
            MetricValue("interp_cv", sum(cvs) / pairs, pairs),
            MetricValue("interp_length", sum(lengths) / pairs, pairs),
        ]

    def _heldout_metrics(self, model) -> list[MetricValue]:
        from bench.metrics import image_metrics

        real = self.heldout_images
        if len(real) == 0:
            return []
        out = []
        n = len(real)
        recon = reconstruct(model, real)
        if recon is not None:
            x = real.float() / 255
            out += [
                MetricValue("recon_mse", image_metrics.recon_mse(x, recon), n),
                MetricValue("psnr", image_metrics.psnr(x, recon), n),
                MetricValue("ssim", image_metrics.ssim(x, recon), n),
                MetricValue("sharpness_recon", image_metrics.sharpness_ratio(recon, x), n),
            ]
        terms = model.heldout_terms(to_model_space(real, model.device))
        out += [MetricValue(k, float(v), n) for k, v in terms.items()]
        return out
