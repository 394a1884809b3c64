"""The one convolutional backbone every model shares (DCGAN, Radford et al. 2016).

The generator maps a latent vector to an image in [-1, 1]; it is the GAN's generator and,
unchanged, the AE/VAE decoder. The encoder trunk is the DCGAN discriminator without its
last layer; the GAN puts a 1-logit head on it, the AE a latent head, the VAE a
(mean, log-variance) head. Only the heads differ, so differences in results come from the
objective, not the architecture.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

# Powers of two: each size is one more doubling stage from 4x4 (and one more channel
# doubling), the same code for every model. 128 px is for datasets with real detail there
# (petimages-dog is 180 px); CIFAR's 32 px images would only be upsampled.
SUPPORTED_SIZES = (32, 64, 128)


def _n_stages(image_size: int) -> int:
    if image_size not in SUPPORTED_SIZES:
        accepted = ", ".join(map(str, SUPPORTED_SIZES))
        raise ValueError(f"image_size {image_size} not supported; accepted: {accepted}")
    return int(math.log2(image_size)) - 2  # 4x4 -> image_size by doubling


def _init_dcgan(module: nn.Module) -> None:
    # DCGAN's initialisation: conv weights N(0, 0.02), BatchNorm scale N(1, 0.02), bias 0.
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def _channels_last(t: torch.Tensor) -> bool:
    return t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


def _flatten(t: torch.Tensor, nhwc: bool) -> torch.Tensor:
    """(N, C, H, W) -> (N, C*H*W), in NHWC or NCHW element order: a view in its own layout."""
    return (t.permute(0, 2, 3, 1) if nhwc else t).reshape(t.shape[0], -1)


def _check_plain(conv) -> None:
    """The matrix-product form holds for stride 1, no padding, no dilation, one group."""
    ones, zeros = (1,) * len(conv.stride), (0,) * len(conv.stride)
    if (conv.stride, conv.dilation, conv.groups) != (ones, ones, 1) or conv.padding != zeros:
        raise ValueError(f"{type(conv).__name__} needs stride 1, padding 0, one group: {conv}")
    if getattr(conv, "output_padding", zeros) != zeros:
        raise ValueError(f"{type(conv).__name__} needs output_padding 0: {conv}")


class WholeMapConv2d(nn.Conv2d):
    """A stride-1, unpadded conv whose kernel covers its whole input map (DCGAN's 4x4 -> 1x1).

    Such a conv is one matrix product, (B, C*k*k) x (C*k*k, O). With ``as_matmul`` set (the
    train.matmul_4x4 speed switch, bench.harness.speed) it runs as that product: same parameters, same
    function, but oneDNN's GEMM instead of its convolution path, which is several times slower
    on this shape (BENCHMARKS.md). Off, it is a plain nn.Conv2d.
    """

    as_matmul = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _check_plain(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.as_matmul or tuple(x.shape[-2:]) != self.kernel_size:
            return super().forward(x)
        nhwc = _channels_last(x)  # flatten input and weight in the same element order
        y = F.linear(_flatten(x, nhwc), _flatten(self.weight, nhwc), self.bias)
        return y[:, :, None, None]


class LatentConvTranspose2d(nn.ConvTranspose2d):
    """DCGAN's first generator layer: a 1x1 latent map to a k x k map (stride 1, no padding).

    That is z (B, L) x W (L, C*k*k), one matrix product; ``as_matmul`` as in WholeMapConv2d.
    The output keeps the weight's memory layout (channels_last when the model is).
    """

    as_matmul = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _check_plain(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if not self.as_matmul or tuple(z.shape[-2:]) != (1, 1):
            return super().forward(z)
        w, (kh, kw) = self.weight, self.kernel_size
        nhwc = _channels_last(w)
        y = z.reshape(z.shape[0], -1) @ _flatten(w, nhwc)
        if nhwc:
            y = y.view(z.shape[0], kh, kw, w.shape[1]).permute(0, 3, 1, 2)
        else:
            y = y.view(z.shape[0], w.shape[1], kh, kw)
        return y if self.bias is None else y + self.bias.to(y.dtype)[:, None, None]


class Generator(nn.Module):
    """z (B, latent_dim) -> image (B, 3, S, S) in [-1, 1]."""

    def __init__(self, latent_dim: int, width: int, image_size: int, channels: int = 3):
        super().__init__()
        stages = _n_stages(image_size)
        ch = width * 2 ** (stages - 1)
        layers: list[nn.Module] = [
            LatentConvTranspose2d(latent_dim, ch, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ch),
            nn.ReLU(True),
        ]
        for _ in range(stages - 1):
            layers += [
                nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ch // 2),
                nn.ReLU(True),
            ]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.latent_dim = latent_dim
        _init_dcgan(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.shape[0], self.latent_dim, 1, 1))


class EncoderTrunk(nn.Module):
    """image (B, 3, S, S) -> features (B, out_channels, 4, 4): DCGAN's discriminator body."""

    def __init__(self, width: int, image_size: int, channels: int = 3):
        super().__init__()
        stages = _n_stages(image_size)
        layers: list[nn.Module] = [
            nn.Conv2d(channels, width, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        ch = width
        for _ in range(stages - 1):
            layers += [
                nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ch * 2),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            ch *= 2
        self.net = nn.Sequential(*layers)
        self.out_channels = ch
        _init_dcgan(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def conv_head(in_channels: int, out_features: int) -> nn.Module:
    """The 4x4 -> 1x1 head: DCGAN's last discriminator conv, with out_features outputs."""
    head = nn.Sequential(WholeMapConv2d(in_channels, out_features, 4, 1, 0), nn.Flatten())
    nn.init.normal_(head[0].weight, 0.0, 0.02)
    nn.init.zeros_(head[0].bias)
    return head
