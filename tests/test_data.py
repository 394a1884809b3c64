import pytest
import torch
from PIL import Image

from bench.core.errors import BenchError
from bench.data import images as data
from bench.data.synthetic import FACTOR_SIZES, make_synthetic


def _write_images(folder, n, size=(40, 30), colour=(200, 50, 10)):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", size, colour).save(folder / f"{i:03d}.jpg")


def test_synthetic_is_deterministic_with_factors():
    a, fa = make_synthetic(50, 32, seed=3)
    b, fb = make_synthetic(50, 32, seed=3)
    c, _ = make_synthetic(50, 32, seed=4)
    assert a.dtype == torch.uint8 and a.shape == (50, 3, 32, 32)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert set(fa) == set(FACTOR_SIZES)
    assert all(torch.equal(fa[k], fb[k]) for k in fa)
    # Same factors -> same image: the factors fully determine the picture.
    key = torch.stack([fa[k] for k in FACTOR_SIZES], 1)
    for i in range(50):
        for j in range(i):
            if torch.equal(key[i], key[j]):
                assert torch.equal(a[i], a[j])


def test_folder_crops_resizes_and_skips_corrupt(tmp_path):
    root = tmp_path / "dogs"
    _write_images(root / "sub", 12)
    (root / "broken.jpg").write_bytes(b"this is not a jpeg")
    (root / "notes.txt").write_text("ignored: not an image extension")
    train = data.load_images(f"folder:{root}", "train", 32, tmp_path)
    test = data.load_images(f"folder:{root}", "test", 32, tmp_path)
    assert train.images.shape[1:] == (3, 32, 32)
    # 13 image files: every 10th (sorted) is held out; the broken one is skipped and counted.
    assert len(train) + len(test) + train.skipped + test.skipped == 13
    assert train.skipped + test.skipped == 1
    assert tuple(train.images[0, :, 16, 16]) == pytest.approx((200, 50, 10), abs=6)


def test_folder_with_split_dirs_and_cache(tmp_path):
    _write_images(tmp_path / "set" / "train" / "dog", 5)
    _write_images(tmp_path / "set" / "test" / "dog", 2)
    assert len(data.load_images(f"folder:{tmp_path / 'set'}", "train", 32, tmp_path)) == 5
    again = data.load_images(f"folder:{tmp_path / 'set'}", "test", 32, tmp_path)
    assert len(again) == 2 and again.split == "test"


def test_cifar_local_copy_layout(tmp_path):
    _write_images(tmp_path / "cifar10-dog" / "train" / "dog", 4, size=(32, 32))
    _write_images(tmp_path / "cifar10-dog" / "test" / "dog", 2, size=(32, 32))
    train = data.load_images("cifar10-dog", "train", 32, tmp_path)
    assert train.dataset == "cifar10-dog" and len(train) == 4
    assert len(data.load_images("cifar10-dog", "test", 64, tmp_path).images[0, 0]) == 64


def test_offline_cifar_error_and_auto_fallback(tmp_path, monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(BenchError, match="download failed.*--data-root"):
        data.load_images("cifar10-dog", "train", 32, tmp_path)
    said = []
    auto = data.load_images("auto", "train", 32, tmp_path, announce=said.append)
    assert auto.dataset == "synthetic" and len(said) == 1 and "--data-root" in said[0]


@pytest.mark.parametrize(
    "name, message",
    [
        ("imagenet", "unknown dataset 'imagenet'; accepted"),
        ("folder:/no/such/dir", "does not exist"),
    ],
)
def test_bad_dataset_names(tmp_path, name, message):
    with pytest.raises(BenchError, match=message):
        data.load_images(name, "train", 32, tmp_path)


def test_empty_and_all_corrupt_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BenchError, match="no images in"):
        data.load_images(f"folder:{tmp_path / 'empty'}", "train", 32, tmp_path)
    (tmp_path / "bad" / "train").mkdir(parents=True)
    (tmp_path / "bad" / "test").mkdir(parents=True)
    (tmp_path / "bad" / "train" / "x.png").write_bytes(b"junk")
    with pytest.raises(BenchError, match="no readable images"):
        data.load_images(f"folder:{tmp_path / 'bad'}", "train", 32, tmp_path)
