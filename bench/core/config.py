"""Typed configuration: defaults live in code, files and flags carry only changes.

Every section is a dataclass; ``from_dict`` rejects unknown keys and wrong types with one
line naming the key and what is accepted (pythae-style typed configs). A sweep is
models x seeds over one shared data / train / eval / backbone setting.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bench.core.errors import BenchError


@dataclass
class BackboneConfig:
    """Shared by every model in a sweep: one backbone makes the comparison fair."""

    width: int = 64  # channels of the first encoder / last decoder block (DCGAN's ndf/ngf)
    latent_dim: int = 128


@dataclass
class DataConfig:
    dataset: str = "auto"  # auto | cifar10-dog | petimages-dog | synthetic | folder:PATH
    image_size: int = 32  # one of models.backbone.SUPPORTED_SIZES: 32, 64, 128
    train_limit: int = 0  # use only this many training images (0 = all)
    hflip: bool = False  # random horizontal flips during training


@dataclass
class TrainConfig:
    # 40 epochs: enough training that the default run (ae, vae, gan; with the eval defaults
    # below) spends under 30% of its time evaluating: 27.2% of the runs' wall measured end to
    # end on CIFAR dogs, 2 Zen 3 cores (BENCHMARKS.md "Default run: evaluation share").
    # 0 = no epoch limit (a budget).
    epochs: int = 40
    batch_size: int = 64
    device: str = "auto"  # auto | cpu | cuda | mps
    threads: int = 0  # torch intra-op threads; 0 = torch's default
    loss_bound: float = 1e4  # |term| above this counts as divergence (x (size/32)^2)
    # Linear learning-rate warm-up of every optimiser over the first N steps (0 = none; Goyal
    # et al. 2017). Adam's first steps move every weight by ~lr, so a wide layer's output jumps
    # by ~lr x its fan-in: at 64 / 128 px the VAE's log-variance head (fan-in 8192-16384)
    # jumps its KL from ~200 to 1e5-1e6 nats at step 2 (BENCHMARKS.md "Real photos").
    lr_warmup_steps: int = 0
    checkpoint_every: int = 1  # epochs between checkpoints (0 = only at the end)
    # Speed switches (measured in BENCHMARKS.md; each can be turned off):
    precision: str = "auto"  # auto | fp32 | bf16 | fp16: autocast of the train step
    channels_last: bool = True  # NHWC memory layout for the convolutions
    compile: bool = False  # torch.compile each sub-network (compiles once per run, minutes on CPU)
    matmul_4x4: bool = True  # the 4x4 <-> 1x1 layers (latent heads, G's first) as one matmul
    fused_adam: bool = True  # Adam's update as one fused kernel where torch has one
    # Training budgets (0 = none); the run stops at the first limit reached, epochs included,
    # possibly mid-epoch. Images and FLOPs become a step count at the start (reproducible);
    # seconds are measured training time (not reproducible across machines).
    budget_images: int = 0
    budget_flops: float = 0
    budget_seconds: float = 0

    def has_budget(self) -> bool:
        return bool(self.budget_images or self.budget_flops or self.budget_seconds)

    def __post_init__(self):
        for name in ("budget_images", "budget_flops", "budget_seconds"):
            if not getattr(self, name) >= 0:  # also refuses NaN
                raise BenchError(f"train.{name} must be >= 0 (0 = none), got {getattr(self, name)}")
        # epochs 0 = no epoch limit, which needs a budget to stop the run
        least = {"epochs": 0 if self.has_budget() else 1, "batch_size": 1, "lr_warmup_steps": 0}
        for name, low in least.items():
            if getattr(self, name) < low:
                raise BenchError(f"train.{name} must be >= {low}, got {getattr(self, name)}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise BenchError(
                f"train.precision {self.precision!r} not understood; accepted: auto, fp32, bf16, fp16"
            )


# The TrainConfig fields that set how long a run trains. A run continued at a larger budget
# (bench run --continue-from) and a longer-budget repeat (bench report --longer) may differ
# from the original run in these alone.
TRAINING_LENGTH_KEYS = ("epochs", "budget_images", "budget_flops", "budget_seconds")


@dataclass
class EvalConfig:
    # Full evaluations cost more than training (Inception at N samples, per sampler), so by
    # default only the last epoch has one, and training is followed by eval.track_points.
    every: int = 0  # evaluate every N epochs; the last epoch is always evaluated (0 = only it)
    fid_samples: int = 500  # generated images per FID; real images: the same N from fid_split
    fid_split: str = "train"  # real images FID compares with (the standard protocol: train)
    fid_exact: bool = False  # pytorch-fid's unfolded network instead of the folded fp32 one
    heldout_images: int = 500  # test-split images for recon_mse / psnr / kl_nats
    grid_images: int = 64  # images in samples.png / recon.png
    # Metrics beyond FID, all from the same Inception features / images (bench.metrics.registry.feature_metrics).
    extras: list[str] = field(
        default_factory=lambda: ["kid", "prdc", "sharpness", "diversity", "memorization"]
    )
    extras_every: int = 1  # compute extras at every Nth evaluation; 0 = only the last one
    # Latent samplers evaluated at the last evaluation (bench.metrics.samplers): prior, gaussian, gmm
    # (fitted to training latents; AE/VAE), truncT (GAN truncation, e.g. trunc0.5).
    samplers: list[str] = field(default_factory=lambda: ["prior", "gmm"])
    fid_inf: bool = False  # FID extrapolated to N -> infinity at the last evaluation (slow)
    # Tracked points: FID and KID on the fast Inception path at track_n samples (at most
    # fid_samples; against the first track_n real images), spread evenly over the run's
    # training (0 = none). Comparable with each other only: FID is biased upwards at small N.
    track_points: int = 10
    track_n: int = 100

    def __post_init__(self):
        for name in ("every", "extras_every", "track_points", "track_n"):
            if getattr(self, name) < 0:
                raise BenchError(f"eval.{name} must be >= 0, got {getattr(self, name)}")


@dataclass
class SweepConfig:
    name: str = "default"
    models: list[str] = field(default_factory=lambda: ["ae", "vae", "gan"])
    seeds: list[int] = field(default_factory=lambda: [0])
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# The sections every run of a sweep shares, by their key in config.json / sweep.json.
SHARED_SECTION_CLASSES = {
    "backbone": BackboneConfig,
    "data": DataConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
}


def with_new_defaults(recorded: dict) -> dict:
    """A recorded config.json / sweep.json with the settings added to the code since it was
    written filled in at their defaults. A new setting's default is what older code did (the
    rule for adding one), so older results stay comparable, resumable and continuable."""
    out = dict(recorded)
    for section, cls in SHARED_SECTION_CLASSES.items():
        if isinstance(recorded.get(section), dict):
            out[section] = {**dataclasses.asdict(cls()), **recorded[section]}
    return out


def _accepted(cls) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))


def _coerce(value, annotation, where: str):
    """Convert a YAML / command-line value to the annotated type, or fail in one line."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(annotation):
            try:
                return _coerce(value, option, where)
            except BenchError as e:
                errors.append(str(e))
        raise BenchError(f"{where}: {value!r} is not a valid value ({'; '.join(errors)})")
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise BenchError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(annotation):
        return from_dict(annotation, value, where)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "no", "0", "off"):
            return False
        raise BenchError(f"{where}: expected true or false, got {value!r}")
    if annotation in (int, float):
        if isinstance(value, bool):
            raise BenchError(f"{where}: expected a number, got {value!r}")
        try:
            number = annotation(value) if not isinstance(value, str) else annotation(float(value))
        except (TypeError, ValueError):
            raise BenchError(f"{where}: expected {annotation.__name__}, got {value!r}") from None
        if annotation is int and float(value) != number:
            raise BenchError(f"{where}: expected an integer, got {value!r}")
        return number
    if annotation is str:
        if isinstance(value, (dict, list)):
            raise BenchError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def from_dict(cls, data, where: str | None = None):
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and bad types."""
    where = where or cls.__name__
    if data is None:
        data = {}
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise BenchError(f"{where}: expected a mapping of {_accepted(cls)}; got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise BenchError(f"unknown key {unknown[0]!r} in {where}; accepted: {_accepted(cls)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def _model_entry_to_spec(entry, where: str) -> str:
    """A model in a config file is 'vae:beta=4' or {name: vae, beta: 4}."""
    if isinstance(entry, str):
        return entry.strip()
    if isinstance(entry, dict) and "name" in entry:
        params = ",".join(f"{k}={v}" for k, v in entry.items() if k != "name")
        return f"{entry['name']}:{params}" if params else str(entry["name"])
    raise BenchError(f"{where}: a model is a name like 'vae:beta=4' or a mapping with 'name'")


def load_sweep_config(path: str | Path | None, overrides: dict | None = None) -> SweepConfig:
    """Defaults <- YAML file <- overrides (dotted keys, e.g. {'train.epochs': 3})."""
    raw: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise BenchError(f"config file {str(path)!r} not found")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            first = str(e).splitlines()[0]
            raise BenchError(f"config file {str(path)!r} is not valid YAML: {first}") from None
        if not isinstance(raw, dict):
            raise BenchError(f"config file {str(path)!r} must be a mapping of sections")
        raw.setdefault("name", path.stem)
    if isinstance(raw.get("models"), list):
        raw["models"] = [_model_entry_to_spec(m, "models") for m in raw["models"]]
    for dotted, value in (overrides or {}).items():
        _set_dotted(raw, dotted, value)
    return from_dict(SweepConfig, raw, "config")


def _set_dotted(raw: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    node = raw
    for p in parents:
        child = node.setdefault(p, {})
        if not isinstance(child, dict):
            raise BenchError(f"cannot set {dotted!r}: {p!r} is not a section")
        node = child
    node[leaf] = value


def parse_set_option(items: tuple[str, ...]) -> dict:
    """``--set train.lr=1e-3`` style overrides -> {'train.lr': '1e-3'}."""
    out = {}
    for item in items:
        if "=" not in item:
            raise BenchError(f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. train.epochs=3")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value) if value else ""
    return out
