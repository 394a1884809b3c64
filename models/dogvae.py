"""The seed's own VAE (``dogvae``), registered so that it runs under the dogbench harness.

It is *not* on the shared DCGAN backbone (``backbone.width`` is ignored): it reproduces the
seed's network and objective, so that its numbers can be set next to ``vae``'s.

Network (at 127 x 127 RGB, pixels as floats on the 0-255 scale, not rescaled):
- encoder: 5 x [Conv2d(k5, s2, p1) + BatchNorm + ReLU], channels 3-32-64-128-128-128; sizes
  127-63-31-15-7-3, so a 3 x 3 x 128 map, flattened (1152) into Linear(1152, latent), then
  two linear heads latent -> mu and latent -> log sigma^2 (no nonlinearity in between, as
  in the seed);
- decoder: Linear(latent, 1152) -> 128 x 3 x 3, 5 x [ConvTranspose2d(k5, s2, p1) + BatchNorm
  + ReLU] mirroring the encoder (128-128-128-64-32-3; sizes 3-7-15-31-63-127: each is
  2n + 1, which is why the seed's size is 127 = 2^7 - 1), then Conv2d(3, 3, 5, 1, 2) +
  BatchNorm + ReLU + Conv2d(3, 3, 5, 1, 2). No output squashing: the output is the 0-255
  image itself.

128 <-> 127. The harness feeds 128 x 128 in [-1, 1]. On the way in the last row and column
are dropped (a crop, not a resize: a 128 -> 127 resampling would shift and blur every
pixel to save one row). On the way out the 127 output is replicate-padded by one row and
column back to 128, so the padded pixels repeat their neighbours (the row and column that
were cropped) and every harness metric compares 128 px with 128 px. ``decode`` maps 0-255
linearly to the harness's [-1, 1] (x / 127.5 - 1) without clamping; the harness clamps when
it makes images.

Training, as in the seed: random horizontal flip and a random resized crop (area 0.75-1,
torchvision's default aspect range 3/4-4/3, back to 127 px) inside ``train_step``; loss =
MSE_255 + w * KL, MSE_255 the mean squared error over all pixels on the 0-255 scale, KL
summed over latent dims and averaged over the batch, w = ``kl_weight`` = 0.00025; Adam
lr 5e-4. The seed used batch 128: ``--batch-size 128``. The seed's latent size is 256
(the class default), but in a sweep the shared ``backbone.latent_dim`` (default 128) is
passed to every model and wins: ``dogvae:latent_dim=256`` reproduces the seed.
``noise=uniform`` reproduces the seed's bug of drawing the reparameterisation noise with
``rand_like`` (uniform on [0, 1), mean 0.5) instead of N(0, I); the default is gaussian.

Reported terms: ``loss`` is the seed's loss unchanged (0-255 units, comparable with the
seed's logs), ``recon_mse`` the MSE on [0, 1] pixels (= MSE_255 / 255^2, as ``ae``/``vae``
report it) and ``kl_nats``. A fresh decoder's MSE_255 on dog photos is about 1.6e4: under
the 32 px train.loss_bound (1e4) that would count as divergence, so this relies on the bound
growing with the pixel count (x16 at 128 px, bench.harness.train).

dogbench's equivalent. With D pixels and Delta the error of one pixel on [0, 1] (255 Delta
on the 0-255 scale), MSE_255 = (1/D) sum (255 Delta)^2 = 255^2 SSE_01 / D. Dividing the
loss by w > 0 (which does not move its minimum):
    loss / w = 255^2 / (D w) * SSE_01 + KL.
A Gaussian decoder of fixed sigma on [0, 1] pixels has -log p(x|z) = SSE_01 / (2 sigma^2)
+ D (log sigma + log(2 pi) / 2), so loss / w = -ELBO (beta = 1) - D (log sigma + log(2 pi)
/ 2) exactly when 1 / (2 sigma^2) = 255^2 / (D w), that is
    sigma = sqrt(D w / (2 * 255^2)).
At 127 px (D = 3 * 127 * 127 = 48387) and w = 0.00025: sigma = 0.0096445; at 128 px
(D = 49152, what ``vae`` sees): sigma = 0.0097204. So the seed's objective is dogbench's
``vae:decoder_sigma=0.0097204`` (beta = 1) at 128 px, up to the architecture: a very sharp
likelihood: about 7.5 times smaller than the sigma = sqrt(MSE) = 0.073 that ``vae``'s
sigma-VAE decoder reaches in the 32 px standard run (README), so the KL weighs little.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bench.core.errors import BenchError
from models.base import GenerativeModel, ModelConfig
from models.vae import kl_standard_normal_nats, posterior_terms

SIZE = 127  # the seed's image side
HARNESS_SIZE = 128  # what the harness feeds and expects back
CHANNELS = (3, 32, 64, 128, 128, 128)  # encoder; the decoder runs them backwards
MAP = 3  # encoder output side at 127 px
FLAT = CHANNELS[-1] * MAP * MAP  # 1152
GAUSSIAN_NOISE, UNIFORM_NOISE = "gaussian", "uniform"  # uniform: the seed's rand_like bug
NOISE_KINDS = (GAUSSIAN_NOISE, UNIFORM_NOISE)
CROP_SCALE = (0.75, 1.0)  # area fraction of the random resized crop
CROP_RATIO = (3 / 4, 4 / 3)  # its aspect range (torchvision's default)


@dataclass
class DogVAEConfig(ModelConfig):
    latent_dim: int = 256
    lr: float = 5e-4
    adam_beta1: float = 0.9  # the seed used torch's Adam defaults
    kl_weight: float = 0.00025
    noise: str = GAUSSIAN_NOISE

    def __post_init__(self):
        if self.kl_weight < 0:
            raise BenchError(f"dogvae kl_weight must be >= 0, got {self.kl_weight}")
        if self.noise not in NOISE_KINDS:
            raise BenchError(
                f"dogvae noise {self.noise!r} not understood; accepted: {', '.join(NOISE_KINDS)}"
            )


def equivalent_sigma(pixels: int, kl_weight: float) -> float:
    """The fixed decoder sigma on [0, 1] pixels at which MSE_255 + w KL is, divided by w, the
    beta = 1 negative ELBO up to a constant (module docstring)."""
    return math.sqrt(pixels * kl_weight / (2 * 255**2))


def seed_loss(x255, recon255, mu, logvar, kl_weight):
    """The seed's loss MSE_255 + w KL, and its two terms (all fp32 scalars)."""
    mse255 = F.mse_loss(recon255.float(), x255.float())
    kl = kl_standard_normal_nats(mu.float(), logvar.float()).mean()
    return mse255 + kl_weight * kl, mse255, kl


def _block(conv: nn.Module, channels: int) -> list[nn.Module]:
    return [conv, nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]


def _encoder() -> nn.Sequential:
    layers = []
    for cin, cout in zip(CHANNELS[:-1], CHANNELS[1:], strict=True):
        layers += _block(nn.Conv2d(cin, cout, 5, 2, 1), cout)
    return nn.Sequential(*layers, nn.Flatten())


def _decoder() -> nn.Sequential:
    back = CHANNELS[::-1]
    layers: list[nn.Module] = [nn.Unflatten(1, (back[0], MAP, MAP))]
    for cin, cout in zip(back[:-1], back[1:], strict=True):
        layers += _block(nn.ConvTranspose2d(cin, cout, 5, 2, 1), cout)
    layers += _block(nn.Conv2d(3, 3, 5, 1, 2), 3) + [nn.Conv2d(3, 3, 5, 1, 2)]
    return nn.Sequential(*layers)


def to_seed_space(x: torch.Tensor) -> torch.Tensor:
    """Harness images (B, 3, 128, 128) in [-1, 1] -> the seed's (B, 3, 127, 127) on 0-255:
    the last row and column are cropped (see the module docstring)."""
    return (x[..., :SIZE, :SIZE].float() + 1) * 127.5


def to_harness_space(x255: torch.Tensor) -> torch.Tensor:
    """The seed's 127 px 0-255 images -> 128 px in [-1, 1]; the extra row and column repeat
    their neighbours. Not clamped: converting to images is the harness's job."""
    pad = HARNESS_SIZE - x255.shape[-1]
    return F.pad(x255 / 127.5 - 1, (0, pad, 0, pad), mode="replicate")


def random_flip_resized_crop(x: torch.Tensor) -> torch.Tensor:
    """Per image: a horizontal flip with p = 0.5 and a random resized crop (area CROP_SCALE,
    aspect CROP_RATIO, a side longer than the frame clamped to it) back to the same size.
    One bilinear resampling through an affine grid does both, for the whole batch."""
    n, dev = x.shape[0], x.device
    area = torch.empty(n, device=dev).uniform_(*CROP_SCALE)
    log_r = torch.empty(n, device=dev).uniform_(*map(math.log, CROP_RATIO))
    w = (area * log_r.exp()).sqrt().clamp(max=1.0)  # fractions of the side
    h = (area / log_r.exp()).sqrt().clamp(max=1.0)
    # Crop centres in affine_grid's [-1, 1] coordinates, uniform over positions that fit.
    cx = (torch.rand(n, device=dev) * 2 - 1) * (1 - w)
    cy = (torch.rand(n, device=dev) * 2 - 1) * (1 - h)
    flip = torch.where(torch.rand(n, device=dev) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 2] = w * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x.float(), grid, mode="bilinear", align_corners=False)


class DogVAE(GenerativeModel):
    config_class = DogVAEConfig
    has_encoder = True
    has_posterior = True

    def __init__(self, config: DogVAEConfig, image_size: int):
        super().__init__(config, image_size)
        if image_size != HARNESS_SIZE:
            raise BenchError(f"dogvae needs data.image_size {HARNESS_SIZE}, got {image_size}")
        latent = config.latent_dim
        self.encoder = nn.Sequential(_encoder(), nn.Linear(FLAT, latent))
        self.mu_head, self.logvar_head = nn.Linear(latent, latent), nn.Linear(latent, latent)
        self.decoder = nn.Sequential(nn.Linear(latent, FLAT), _decoder())
        self.opt = self._adam(self.parameters())

    def optimizers(self):
        return {"opt": self.opt}

    # The seed's own space: 127 px, 0-255.
    def posterior_255(self, x255):
        h = self.encoder(x255)
        return self.mu_head(h).float(), self.logvar_head(h).float()

    def decode_255(self, z):
        return self.decoder(z)

    # The harness's space: 128 px, [-1, 1].
    def posterior(self, x):
        return self.posterior_255(to_seed_space(x))

    def encode(self, x):
        return self.posterior(x)[0]

    def decode(self, z):
        return to_harness_space(self.decode_255(z).float())

    def _eps(self, like: torch.Tensor, generator=None) -> torch.Tensor:
        draw = torch.randn if self.config.noise == GAUSSIAN_NOISE else torch.rand  # seed's bug
        return draw(like.shape, generator=generator, device=like.device, dtype=like.dtype)

    def loss_terms(self, x255, generator=None):
        """Terms of the seed's loss on seed-space images (already augmented, if at all)."""
        mu, logvar = self.posterior_255(x255)
        z = mu + torch.exp(0.5 * logvar) * self._eps(mu, generator)  # reparameterisation
        recon255 = self.decode_255(z)
        loss, mse255, kl = seed_loss(x255, recon255, mu, logvar, self.config.kl_weight)
        return {"seed_loss": loss, "mse_255": mse255, "kl_nats": kl}

    def train_step(self, x, epoch):
        terms = self.loss_terms(random_flip_resized_crop(to_seed_space(x)))
        self.opt.zero_grad(set_to_none=True)
        terms["seed_loss"].backward()
        self.opt.step()
        return {
            "loss": terms["seed_loss"].detach(),
            "recon_mse": terms["mse_255"].detach() / 255**2,  # [0, 1] pixels, as ae/vae
            "kl_nats": terms["kl_nats"].detach(),
        }

    @torch.no_grad()
    def heldout_terms(self, x):
        return posterior_terms(*self.posterior(x))
