"""What every model in the zoo provides to the harness.

The harness loops and calls ``train_step``; the model owns its optimisers and losses
(a GAN alternates D and G inside its step). Images enter in [-1, 1].
"""

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn


@dataclass
class ModelConfig:
    """Fields every model has. Subclasses add their own; ``name`` records which model."""

    name: str = ""
    latent_dim: int = 128
    width: int = 64
    lr: float = 2e-4
    adam_beta1: float = 0.5
    adam_beta2: float = 0.999


class GenerativeModel(nn.Module):
    config_class = ModelConfig
    # What the model can do, declared by each class so that the harness, the metrics and the
    # tools ask the class instead of probing which methods it overrides.
    has_encoder: ClassVar[bool] = False  # encode() gives codes: reconstructions, fitted samplers
    has_posterior: ClassVar[bool] = False  # posterior() gives a Gaussian q(z|x): (mu, logvar)

    def __init__(self, config: ModelConfig, image_size: int):
        super().__init__()
        self.config = config
        self.image_size = image_size

    def _adam(self, params, lr: float | None = None) -> torch.optim.Adam:
        c = self.config
        return torch.optim.Adam(params, lr=lr or c.lr, betas=(c.adam_beta1, c.adam_beta2))

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def train_step(self, x: torch.Tensor, epoch: float) -> dict[str, torch.Tensor]:
        """One optimisation step on batch x; returns named loss terms (detached scalars).

        ``epoch`` is fractional training progress, for schedules such as KL warm-up.
        """
        raise NotImplementedError

    def loss_scale(self) -> float:
        """How many times larger than at unit scale this model's per-image loss terms are by
        construction (1 unless a model says otherwise): the harness multiplies its
        divergence bound (train.loss_bound) by it, so that a deliberately sharp likelihood
        is not taken for an explosion."""
        return 1.0

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n new images in [-1, 1] from latents drawn from the model's prior."""
        z = torch.randn(n, self.config.latent_dim, generator=generator, device="cpu")
        return self.decode(z.to(self.device))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> torch.Tensor | None:
        """Latent code of x (the mean for a VAE); None for models without an encoder."""
        return None

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z|x); only models that declare ``has_posterior``."""
        raise NotImplementedError(f"{type(self).__name__} has no posterior")

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor | None:
        """decode(encode(x)); None for models without an encoder."""
        return self.decode(self.encode(x)) if self.has_encoder else None

    @torch.no_grad()
    def heldout_terms(self, x: torch.Tensor) -> dict[str, float]:
        """Model-specific metrics on held-out images (e.g. a VAE's KL in nats)."""
        return {}

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device
