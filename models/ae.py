"""Deterministic autoencoder: DCGAN trunk + latent head -> DCGAN generator as decoder.

Trained on per-pixel MSE. Nothing shapes its latent space, so decoding z ~ N(0, I) is
expected to give poor samples; the benchmark measures how poor.
"""

from dataclasses import dataclass

import torch.nn.functional as F

from models.backbone import EncoderTrunk, Generator, conv_head
from models.base import GenerativeModel, ModelConfig


@dataclass
class AEConfig(ModelConfig):
    lr: float = 1e-3
    adam_beta1: float = 0.9


class AE(GenerativeModel):
    config_class = AEConfig
    has_encoder = True
    has_posterior = False

    def __init__(self, config: AEConfig, image_size: int):
        super().__init__(config, image_size)
        self.trunk = EncoderTrunk(config.width, image_size)
        self.head = conv_head(self.trunk.out_channels, config.latent_dim)
        self.decoder = Generator(config.latent_dim, config.width, image_size)
        self.opt = self._adam(self.parameters())

    def optimizers(self):
        return {"opt": self.opt}

    def encode(self, x):
        return self.head(self.trunk(x))

    def decode(self, z):
        return self.decoder(z)

    def train_step(self, x, epoch):
        x_hat = self.decode(self.encode(x))
        # MSE on [0, 1] pixels: (x_hat - x) / 2 maps the [-1, 1] difference to [0, 1] units.
        recon_mse = F.mse_loss(x_hat.float(), x.float()) / 4.0  # fp32 loss under autocast
        self.opt.zero_grad(set_to_none=True)
        recon_mse.backward()
        self.opt.step()
        return {"loss": recon_mse.detach(), "recon_mse": recon_mse.detach()}
