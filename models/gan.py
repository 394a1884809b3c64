"""DCGAN (Radford et al. 2016) with the non-saturating loss (Goodfellow et al. 2014).

D and G alternate inside ``train_step``: one D step on real and fake, then one G step
that maximises log D(G(z)) on the same fakes, as in the PyTorch DCGAN example.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from models.backbone import EncoderTrunk, Generator, conv_head
from models.base import GenerativeModel, ModelConfig


@dataclass
class GANConfig(ModelConfig):
    lr: float = 2e-4
    adam_beta1: float = 0.5
    # G's own learning rate (0 = lr). Two time-scale updates (Heusel et al. 2017) set G and D
    # apart; the gate's error-rate benchmark uses it to make a deliberately weaker GAN.
    lr_g: float = 0.0


class GAN(GenerativeModel):
    config_class = GANConfig
    has_encoder = False
    has_posterior = False

    def __init__(self, config: GANConfig, image_size: int):
        super().__init__(config, image_size)
        self.generator = Generator(config.latent_dim, config.width, image_size)
        trunk = EncoderTrunk(config.width, image_size)
        self.discriminator = torch.nn.Sequential(trunk, conv_head(trunk.out_channels, 1))
        self.opt_g = self._adam(self.generator.parameters(), config.lr_g)
        self.opt_d = self._adam(self.discriminator.parameters())

    def optimizers(self):
        return {"opt_g": self.opt_g, "opt_d": self.opt_d}

    def decode(self, z):
        return self.generator(z)

    def train_step(self, x, epoch):
        z = torch.randn(x.shape[0], self.config.latent_dim, device=x.device)
        fake = self.generator(z)

        real_logits = self.discriminator(x).float()
        fake_logits = self.discriminator(fake.detach()).float()
        d_loss = F.binary_cross_entropy_with_logits(
            real_logits, torch.ones_like(real_logits)
        ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()

        # Non-saturating generator loss: -log D(G(z)) instead of log(1 - D(G(z))). D's own
        # weight gradients are not needed for G's update (the D step zeroes them first), so
        # they are not computed: the same update, one weight-gradient pass over D less.
        self.discriminator.requires_grad_(False)
        try:
            gen_logits = self.discriminator(fake).float()
            g_loss = F.binary_cross_entropy_with_logits(gen_logits, torch.ones_like(gen_logits))
            self.opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
        finally:
            self.discriminator.requires_grad_(True)
        self.opt_g.step()
        return {
            "d_loss": d_loss.detach(),
            "g_loss": g_loss.detach(),
            "d_real": torch.sigmoid(real_logits).mean().detach(),
            "d_fake": torch.sigmoid(fake_logits).mean().detach(),
        }
