"""Variational autoencoder (Kingma & Welling 2014) on the shared DCGAN backbone.

Convention (so that beta = 1 is the true negative ELBO, in nats per image):
- likelihood p(x|z) = N(x; mu(z), sigma^2 I) over pixels scaled to [0, 1]; the
  reconstruction term is -log p(x|z) summed over all pixels and channels;
- KL(q(z|x) || N(0, I)) in nats, summed over latent dimensions (closed form,
  Kingma & Welling 2014, appendix B);
- both averaged over the batch; loss = recon_nll + beta * w(t) * kl_nats, where w(t)
  rises linearly from 0 to 1 over ``kl_warmup_epochs`` (Bowman et al. 2016).

The decoder's sigma sets what beta means: with sigma = 1 on [0, 1] pixels the likelihood
is so flat that the KL dominates and the posterior collapses. ``decoder_sigma`` is a fixed
number, ``learned`` (one shared log-sigma parameter) or ``optimal`` (sigma^2 = the batch
MSE, the closed-form optimum of the shared sigma: Rybkin et al. 2021, "Simple and
Effective VAE Training with Calibrated Decoders", sigma-VAE).
"""

import math
from dataclasses import dataclass

import torch

from bench.core.errors import BenchError
from models.backbone import EncoderTrunk, Generator, conv_head
from models.base import GenerativeModel, ModelConfig

CALIBRATED_SIGMA = "optimal"  # sigma^2 = the batch MSE (the sigma-VAE)
SIGMA_MODES = ("learned", CALIBRATED_SIGMA)
MIN_LOG_SIGMA = math.log(1e-3)  # keeps -log p finite when reconstructions become exact


@dataclass
class VAEConfig(ModelConfig):
    lr: float = 1e-3
    adam_beta1: float = 0.9
    beta: float = 1.0
    kl_warmup_epochs: float = 0.0
    decoder_sigma: str = CALIBRATED_SIGMA

    def __post_init__(self):
        if self.beta < 0:
            raise BenchError(f"vae beta must be >= 0, got {self.beta}")
        if self.kl_warmup_epochs < 0:
            raise BenchError(f"vae kl_warmup_epochs must be >= 0, got {self.kl_warmup_epochs}")
        self.decoder_sigma = str(self.decoder_sigma)
        if self.decoder_sigma not in SIGMA_MODES:
            try:
                ok = float(self.decoder_sigma) > 0
            except ValueError:
                ok = False
            if not ok:
                raise BenchError(
                    f"vae decoder_sigma {self.decoder_sigma!r} not understood; accepted: "
                    "learned, optimal, or a positive number (a fixed sigma on [0, 1] pixels)"
                )


def gaussian_nll_nats(x01, mean01, log_sigma):
    """-log N(x; mean, sigma^2) summed over pixels, one value per image (nats)."""
    sq = ((x01 - mean01) ** 2).flatten(1)
    per_pixel = 0.5 * sq * torch.exp(-2 * log_sigma) + log_sigma + 0.5 * math.log(2 * math.pi)
    return per_pixel.sum(1)


def kl_standard_normal_nats(mu, logvar):
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) summed over dims, one value per image."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)


@torch.no_grad()
def posterior_terms(mu, logvar) -> dict[str, float]:
    """Held-out KL in nats per image and active units (Burda et al. 2016: dims whose posterior
    mean varies across inputs, Var_x E[z_d | x] > 0.01), for any Gaussian-posterior model."""
    return {
        "kl_nats": kl_standard_normal_nats(mu, logvar).mean().item(),
        "active_dims": float((mu.var(0) > 0.01).sum()),
    }


class VAE(GenerativeModel):
    config_class = VAEConfig
    has_encoder = True
    has_posterior = True

    def __init__(self, config: VAEConfig, image_size: int):
        super().__init__(config, image_size)
        self.trunk = EncoderTrunk(config.width, image_size)
        self.head = conv_head(self.trunk.out_channels, 2 * config.latent_dim)
        self.decoder = Generator(config.latent_dim, config.width, image_size)
        init = 0.0 if config.decoder_sigma in SIGMA_MODES else math.log(float(config.decoder_sigma))
        self.log_sigma = torch.nn.Parameter(
            torch.tensor(init), requires_grad=config.decoder_sigma == "learned"
        )
        self.opt = self._adam(p for p in self.parameters() if p.requires_grad)

    def optimizers(self):
        return {"opt": self.opt}

    def loss_scale(self) -> float:
        """A fixed sigma's NLL is SSE / (2 sigma^2): 1 / sigma^2 times its value at sigma = 1
        (the seed's 0.0097 gives ~1e4). A learned or calibrated sigma follows the error."""
        if self.config.decoder_sigma in SIGMA_MODES:
            return 1.0
        return max(1.0, float(self.config.decoder_sigma) ** -2)

    def posterior(self, x):
        # Loss arithmetic stays in fp32 under autocast: sums over 3072 pixels need it.
        mu, logvar = self.head(self.trunk(x)).float().chunk(2, dim=1)
        return mu, logvar

    def encode(self, x):
        return self.posterior(x)[0]

    def decode(self, z):
        return self.decoder(z)

    def _log_sigma(self, x01, mean01):
        if self.config.decoder_sigma == CALIBRATED_SIGMA:
            # Closed-form optimum of a shared sigma: sigma^2 = MSE (Rybkin et al. 2021, eq. 5).
            log_sigma = 0.5 * torch.log(((x01 - mean01) ** 2).mean())
        else:
            log_sigma = self.log_sigma
        return log_sigma.clamp(min=MIN_LOG_SIGMA)

    def loss_terms(self, x, epoch, generator=None):
        mu, logvar = self.posterior(x)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + torch.exp(0.5 * logvar) * eps  # reparameterisation trick
        x01, mean01 = (x.float() + 1) / 2, (self.decode(z).float() + 1) / 2
        log_sigma = self._log_sigma(x01, mean01)
        recon_nll = gaussian_nll_nats(x01, mean01, log_sigma).mean()
        kl_nats = kl_standard_normal_nats(mu, logvar).mean()
        warm = self.config.kl_warmup_epochs
        kl_weight = min(1.0, epoch / warm) if warm > 0 else 1.0
        loss = recon_nll + self.config.beta * kl_weight * kl_nats
        recon_mse = ((x01 - mean01) ** 2).mean()
        return {
            "loss": loss,
            "recon_nll": recon_nll,
            "kl_nats": kl_nats,
            "recon_mse": recon_mse,
            "sigma": log_sigma.exp(),
            "kl_weight": torch.tensor(kl_weight),
        }

    def train_step(self, x, epoch):
        terms = self.loss_terms(x, epoch)
        self.opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        self.opt.step()
        return {k: v.detach() for k, v in terms.items()}

    @torch.no_grad()
    def heldout_terms(self, x):
        return posterior_terms(*self.posterior(x))
