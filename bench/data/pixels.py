"""Pixel conventions: images are stored as uint8, models work in [-1, 1], metrics in [0, 1]."""

from __future__ import annotations

import torch


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] model space -> [0, 1] image space."""
    return ((x + 1) / 2).clamp(0, 1)


def to_model_space(images_uint8: torch.Tensor, device) -> torch.Tensor:
    return images_uint8.to(device).float().div_(127.5).sub_(1.0)
