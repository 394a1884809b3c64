"""Datasets as in-memory uint8 tensors (N x 3 x S x S), decoded once and cached on disk.

Names accepted by ``load_images``:
- ``cifar10-dog``: CIFAR-10 class 5 (dog), splits train (5000) / test (1000). Looked up under
  the data root as a local copy (``cifar10-dog/{train,test}/dog/*.jpg``) or as torchvision's
  ``cifar-10-batches-py``; otherwise downloaded by torchvision.
- ``petimages-dog``: ``<root>/petimages-dog`` (Asirra dog photos), a folder set.
- ``folder:PATH``: every image under PATH. If PATH has ``train/`` and ``test/`` folders those
  are the splits; otherwise a fixed 10% of the files (by sorted name) is the test split.
- ``synthetic``: coloured shapes with known factors (bench.data.synthetic), no files needed.
- ``auto``: cifar10-dog when found or downloadable, else synthetic (said in one line).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from bench.core import io, paths
from bench.core.errors import BenchError
from bench.data.synthetic import make_synthetic

log = logging.getLogger("bench.data.images")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
SPLITS = ("train", "test")
NAMED = ("auto", "cifar10-dog", "petimages-dog", "synthetic", "folder:PATH")
CIFAR_DOG_CLASS = 5
SYNTHETIC_SIZES = {"train": 5000, "test": 1000}
HOLDOUT_EVERY = 10  # folder sets without splits: every 10th file (sorted) is held out
CACHE_VERSION = 1  # bump when decoding changes so stale caches are not reused


@dataclass
class ImageSet:
    images: torch.Tensor  # uint8, N x 3 x S x S
    dataset: str  # resolved dataset name, part of every cache key
    split: str
    source: str  # where the pixels came from, for the run log
    skipped: int = 0  # unreadable image files that were left out
    factors: dict = field(default_factory=dict)  # synthetic generating factors

    def __len__(self) -> int:
        return len(self.images)

    @property
    def fingerprint(self) -> str:
        """Hash of the pixels: caches keyed by it can't mix two copies of 'the same' data."""
        if "_fingerprint" not in self.__dict__:
            data = self.images.contiguous().numpy().tobytes()
            self.__dict__["_fingerprint"] = hashlib.sha1(data).hexdigest()[:16]
        return self.__dict__["_fingerprint"]


def load_images(dataset: str, split: str, image_size: int, root: Path, announce=print) -> ImageSet:
    if split not in SPLITS:
        raise BenchError(f"unknown split {split!r}; accepted: {', '.join(SPLITS)}")
    if dataset == "auto":
        return _auto(split, image_size, root, announce)
    if dataset == "synthetic":
        return _synthetic(split, image_size)
    if dataset == "cifar10-dog":
        return _cifar_dog(split, image_size, root)
    if dataset == "petimages-dog":
        return _folder(root / "petimages-dog", split, image_size, "petimages-dog")
    if dataset.startswith("folder:"):
        folder = Path(dataset[len("folder:") :]).expanduser()
        return _folder(folder, split, image_size, dataset)
    raise BenchError(f"unknown dataset {dataset!r}; accepted: {', '.join(NAMED)}")


def limit_train_images(images: ImageSet, limit: int) -> None:
    """Keep a fixed random subset of ``limit`` images (``data.train_limit``); the same draw in
    every caller (training, samplers fitted later), so they see the same images."""
    if limit:
        keep = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
        images.images = images.images[keep[:limit]]


def _auto(split, image_size, root, announce) -> ImageSet:
    try:
        return _cifar_dog(split, image_size, root)
    except BenchError:
        announce(
            f"No CIFAR-10 dogs under {root} and the download failed: "
            "using the built-in synthetic shapes. For dogs: --data-root DIR (or DOGBENCH_DATA) "
            "holding cifar10-dog/, or --dataset folder:PATH."
        )
        return _synthetic(split, image_size)


def _synthetic(split, image_size) -> ImageSet:
    seed = 0 if split == "train" else 1  # disjoint draws for the two splits
    images, factors = make_synthetic(SYNTHETIC_SIZES[split], image_size, seed)
    return ImageSet(images, "synthetic", split, "generated in code", factors=factors)


def _cifar_dog(split, image_size, root: Path) -> ImageSet:
    local = root / "cifar10-dog" / split
    if local.is_dir():
        return _folder(local, None, image_size, "cifar10-dog", split_name=split)
    return _cached(
        ("cifar10-dog", split, image_size, str(root)),
        "cifar10-dog",
        split,
        lambda: _cifar_torchvision(split, image_size, root),
    )


def _cifar_torchvision(split, image_size, root: Path):
    import torchvision

    try:
        ds = torchvision.datasets.CIFAR10(str(root), train=split == "train", download=True)
    except Exception as e:  # URLError, socket errors, checksum failures all mean "no data"
        raise BenchError(
            f"cifar10-dog: not under {root} and the download failed "
            f"({type(e).__name__}); offline, point --data-root or DOGBENCH_DATA at a folder "
            "with cifar10-dog/{train,test}/dog/*.jpg or cifar-10-batches-py/"
        ) from None
    keep = np.asarray(ds.targets) == CIFAR_DOG_CLASS
    pixels = torch.from_numpy(ds.data[keep]).permute(0, 3, 1, 2).contiguous()
    if image_size != pixels.shape[-1]:
        pixels = _resize_uint8(pixels, image_size)
    return pixels, 0, f"torchvision CIFAR10 at {root}"


def _resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    out = torch.nn.functional.interpolate(
        images.float(), size=(size, size), mode="bicubic", antialias=True, align_corners=False
    )
    return out.round().clamp(0, 255).to(torch.uint8)


def list_image_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    )


def first_images(folder: Path, image_size: int, n: int, skip: int = 0) -> torch.Tensor:
    """Images skip .. skip+n-1 of ``folder`` in file order, decoded as the datasets decode
    them (N×3×S×S uint8), for benchmarks and tests that compare fixed image sets."""
    files = list_image_files(folder)[skip : skip + n]
    if len(files) < n:
        raise BenchError(f"{folder}: {len(files)} images after skipping {skip}, need {n}")
    return torch.stack([decode_image(p, image_size) for p in files])


def _folder(folder: Path, split, image_size, name, split_name=None) -> ImageSet:
    """Images under ``folder``; ``split`` None means the folder already is the split."""
    if not folder.is_dir():
        raise BenchError(f"dataset {name!r}: folder {str(folder)!r} does not exist")
    if split is not None and (folder / "train").is_dir() and (folder / "test").is_dir():
        return _folder(folder / split, None, image_size, name, split_name=split)
    files = list_image_files(folder)
    if not files:
        raise BenchError(
            f"dataset {name!r}: no images in {str(folder)!r}; "
            f"accepted extensions: {' '.join(IMAGE_EXTENSIONS)}"
        )
    if split is not None:  # no split folders: hold out every HOLDOUT_EVERY-th file
        held = split == "test"
        files = [f for i, f in enumerate(files) if (i % HOLDOUT_EVERY == 0) == held]
    split_name = split_name or split
    fingerprint = hashlib.sha1()
    for f in files:
        st = f.stat()
        fingerprint.update(f"{f}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    key = (name, split_name, image_size, str(folder.resolve()), fingerprint.hexdigest())
    return _cached(key, name, split_name, lambda: _decode_files(files, image_size, folder))


def _decode_files(files: list[Path], image_size: int, folder: Path):
    images, skipped = [], 0
    for f in files:
        try:
            images.append(decode_image(f, image_size))
        except (UnidentifiedImageError, OSError, ValueError) as e:
            skipped += 1
            log.warning("skipping unreadable image %s (%s)", f, type(e).__name__)
    if not images:
        raise BenchError(f"no readable images in {str(folder)!r} ({skipped} unreadable files)")
    return torch.stack(images), skipped, str(folder)


def decode_image(path: Path, image_size: int) -> torch.Tensor:
    """RGB, centre-cropped to a square, resized to image_size (bicubic, antialiased)."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        im = im.crop((left, top, left + side, top + side))
        if side != image_size:
            im = im.resize((image_size, image_size), Image.Resampling.BICUBIC, reducing_gap=None)
        array = np.asarray(im, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def _cached(key: tuple, name: str, split: str, decode) -> ImageSet:
    digest = hashlib.sha1(repr((CACHE_VERSION, *key)).encode()).hexdigest()[:16]
    path = paths.cache_dir() / "images" / f"{name.replace('/', '_').replace(':', '_')}-{digest}.pt"
    if path.exists():
        try:
            blob = torch.load(path, weights_only=True)
            return ImageSet(blob["images"], name, split, blob["source"], int(blob["skipped"]))
        except Exception:  # a damaged cache file is rebuilt, never trusted
            log.warning("rebuilding damaged image cache %s", path)
    images, skipped, source = decode()
    blob = {"images": images, "skipped": skipped, "source": source}
    io.atomic_write(path, lambda tmp: torch.save(blob, tmp))
    return ImageSet(images, name, split, source, skipped)
