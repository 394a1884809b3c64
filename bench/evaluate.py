"""Evaluation of a model at one point of training; knows nothing of how it was trained.

Generated images are passed through Inception once per evaluation and every
feature-based metric is derived from those features. Real-image statistics come from
an on-disk cache keyed by what produced them (bench.fid.real_statistics).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.config import EvalConfig
from bench.data import ImageSet

SAMPLE_SEED = 1234  # the same latents at every evaluation, so curves compare like with like
CHUNK = 250  # images generated / reconstructed per forward pass


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] model space -> [0, 1] image space."""
    return ((x + 1) / 2).clamp(0, 1)


def to_model_space(images_uint8: torch.Tensor, device) -> torch.Tensor:
    return images_uint8.to(device).float().div_(127.5).sub_(1.0)


@dataclass
class MetricValue:
    metric: str
    value: float
    n: int | None = None


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
    out = []
    for i in range(0, len(images_uint8), CHUNK):
        r = model.reconstruct(to_model_space(images_uint8[i : i + CHUNK], model.device))
        if r is None:
            return None
        out.append(to_unit(r).cpu())
    return torch.cat(out)


class Evaluator:
    def __init__(self, cfg: EvalConfig, fid_real: ImageSet, heldout: ImageSet, device):
        self.cfg, self.fid_real, self.heldout, self.device = cfg, fid_real, heldout, device
        self.n_fid = min(cfg.fid_samples, len(fid_real))
        self.heldout_images = heldout.images[: cfg.heldout_images]
        self._real = None

    def real_statistics(self):
        from bench import fid

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
    def __call__(self, model) -> list[MetricValue]:
        was_training = model.training
        model.eval()
        try:
            return self._sample_metrics(model) + self._heldout_metrics(model)
        finally:
            model.train(was_training)

    def _sample_metrics(self, model) -> list[MetricValue]:
        if self.n_fid == 0:
            return []
        from bench import fid

        mu_real, sigma_real, _ = self.real_statistics()
        fake = generate(model, self.n_fid)
        feats = fid.inception_features(fake, device=self.device, exact=self.cfg.fid_exact)
        mu, sigma = fid.feature_stats(feats)
        result = fid.frechet_distance(mu, sigma, mu_real, sigma_real)
        value = getattr(result, "value", result)
        return [MetricValue("fid", float(value), self.n_fid)]

    def _heldout_metrics(self, model) -> list[MetricValue]:
        from bench import image_metrics

        real = self.heldout_images
        if len(real) == 0:
            return []
        out = []
        recon = reconstruct(model, real)
        if recon is not None:
            x = real.float() / 255
            n = len(real)
            out += [
                MetricValue("recon_mse", float(image_metrics.recon_mse(x, recon)), n),
                MetricValue("psnr", float(image_metrics.psnr(x, recon)), n),
            ]
        terms = model.heldout_terms(to_model_space(real, model.device))
        out += [MetricValue(k, float(v), len(real)) for k, v in terms.items()]
        return out
