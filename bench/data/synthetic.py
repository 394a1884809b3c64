"""A synthetic image set made in code: one coloured shape on a plain background.

Needs no files and is deterministic from its seed. The generating factors of every image
(shape, colour, scale, x, y) are returned with it, so disentanglement scores such as MIG
can be computed against ground truth, as with dSprites (Matthey et al. 2017).
"""

import torch
import torch.nn.functional as F

SHAPES = ("square", "circle", "triangle", "diamond")
COLOURS = (  # RGB in [0, 1]: six well-separated hues
    (0.90, 0.20, 0.20),
    (0.20, 0.75, 0.25),
    (0.20, 0.35, 0.90),
    (0.95, 0.80, 0.15),
    (0.80, 0.30, 0.85),
    (0.15, 0.80, 0.85),
)
SCALES = (0.35, 0.45, 0.55, 0.65)  # shape size as a fraction of the image side
POSITIONS = 6  # positions per axis
FACTOR_SIZES = {
    "shape": len(SHAPES),
    "colour": len(COLOURS),
    "scale": len(SCALES),
    "x": POSITIONS,
    "y": POSITIONS,
}
SUPERSAMPLE = 2  # render at 2x and average down: anti-aliased edges


def _shape_masks(shape, cx, cy, half, grid_x, grid_y):
    """Boolean masks (N, H, W) for shapes centred at (cx, cy) with half-size ``half``."""
    dx, dy = grid_x - cx[:, None, None], grid_y - cy[:, None, None]
    h = half[:, None, None]
    square = (dx.abs() <= h) & (dy.abs() <= h)
    circle = dx**2 + dy**2 <= h**2
    diamond = dx.abs() + dy.abs() <= h
    # Upright triangle: inside when below the apex lines and above the base.
    triangle = (dy <= h) & (dy >= -h) & (dx.abs() <= (dy + h) / 2)
    masks = torch.stack([square, circle, triangle, diamond], 1)  # N, 4, H, W
    return masks[torch.arange(len(shape)), shape]


def make_synthetic(n: int, image_size: int, seed: int) -> tuple[torch.Tensor, dict]:
    """n images (uint8, N x 3 x S x S) and their factors {name: LongTensor of indices}."""
    g = torch.Generator().manual_seed(seed)
    factors = {k: torch.randint(0, size, (n,), generator=g) for k, size in FACTOR_SIZES.items()}
    side = image_size * SUPERSAMPLE
    coords = (torch.arange(side, dtype=torch.float32) + 0.5) / side
    grid_y, grid_x = torch.meshgrid(coords, coords, indexing="ij")
    scale = torch.tensor(SCALES)[factors["scale"]]
    half = scale / 2
    # Positions spread so that the largest shape stays inside the frame.
    lo, hi = max(SCALES) / 2, 1 - max(SCALES) / 2
    step = (hi - lo) / (POSITIONS - 1)
    cx = lo + step * factors["x"].float()
    cy = lo + step * factors["y"].float()
    colour = torch.tensor(COLOURS)[factors["colour"]]  # N, 3
    background = torch.tensor([0.12, 0.12, 0.14])
    images = torch.empty(n, 3, image_size, image_size, dtype=torch.uint8)
    for start in range(0, n, 256):  # chunks keep memory small at 64x64
        sl = slice(start, start + 256)
        mask = _shape_masks(factors["shape"][sl], cx[sl], cy[sl], half[sl], grid_x, grid_y).float()[
            :, None
        ]
        img = background[None, :, None, None] * (1 - mask) + colour[sl, :, None, None] * mask
        img = F.avg_pool2d(img, SUPERSAMPLE)
        images[sl] = (img * 255).round().clamp(0, 255).to(torch.uint8)
    return images, factors


def factor_names() -> list[str]:
    return list(FACTOR_SIZES)
