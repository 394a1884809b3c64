"""What every model in the zoo provides to the harness.

The harness loops and calls ``train_step``; the model owns its optimisers and losses
(a GAN alternates D and G inside its step). Images enter in [-1, 1].
"""

from dataclasses import dataclass

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

    def __init__(self, config: ModelConfig, image_size: int):
        super().__init__()
        self.config = config
        self.image_size = image_size

    def _adam(self, params) -> torch.optim.Adam:
        c = self.config
        return torch.optim.Adam(params, lr=c.lr, betas=(c.adam_beta1, c.adam_beta2))

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def train_step(self, x: torch.Tensor, epoch: float) -> dict[str, torch.Tensor]:
        """One optimisation step on batch x; returns named loss terms (detached scalars).

        ``epoch`` is fractional training progress, for schedules such as KL warm-up.
        """
        raise NotImplementedError

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

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor | None:
        z = self.encode(x)
        return None if z is None else self.decode(z)

    @torch.no_grad()
    def heldout_terms(self, x: torch.Tensor) -> dict[str, float]:
        """Model-specific metrics on held-out images (e.g. a VAE's KL in nats)."""
        return {}

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device
