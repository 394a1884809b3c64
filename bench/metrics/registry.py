"""The metric registry: the one place that says what each recorded value means.

Every metric is registered once with the names it writes to metrics.csv ("outputs") and,
per output, which way is better, the relative tolerance `bench check` gates it with by
default, its column title in reports, and whether it is a headline column. The evaluator,
bench.results.table, bench check and bench report all read these facts from here, so a new
metric is one function and one ``register_metric`` call.

Registration validates and raises at import, so a clash is found before a long sweep, not
after. Sampler variants (``fid@gmm``, ``precision@trunc0.5``: the same metric on samples of
another sampler, see bench.metrics.evaluate) resolve to their base output for direction and
tolerance. Only outputs declared here are decorated in reports (label, arrow, bold), so an
undeclared variant is shown under its own name.

Kept free of torch and numpy at import: `bench report` and `bench check` import it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from bench.core.errors import BenchError
from bench.core.layout import (
    BEST_FID,
    BEST_FID_EPOCH,
    COST_PREFIX,
    CUM_IMAGES,
    CUM_TRAIN_FLOPS,
    CUM_TRAIN_SECONDS,
    EPOCH_WALL_SECONDS,
    EVAL_SECONDS,
    EVAL_SHARE,
    FINAL_FID,
    PEAK_RSS,
    RUN_SECONDS,
    TRACK_FID,
    TRACK_KID,
    TRACK_RECON,
    TRACK_SECONDS,
    TRAIN_CPU_SECONDS,
    TRAIN_IMAGES_PER_S,
    TRAIN_PREFIX,
    TRAIN_SECONDS,
)

LOWER, HIGHER, NONE, TWO_SIDED = "lower", "higher", "none", "two-sided"
DIRECTIONS = (LOWER, HIGHER, NONE, TWO_SIDED)
NOT_METRICS = (TRAIN_PREFIX, COST_PREFIX)  # per-step losses and run costs: recorded, not scored

# Costs are not metrics (no direction, never gated), but reports title their columns too.
COST_LABELS = {
    TRAIN_SECONDS: "train s/epoch",
    TRAIN_IMAGES_PER_S: "train images/s",
    EVAL_SECONDS: "eval s/evaluation",
    PEAK_RSS: "peak RSS (MiB)",
    TRAIN_CPU_SECONDS: "train CPU-s/epoch",
    EPOCH_WALL_SECONDS: "wall s/epoch",
    RUN_SECONDS: "run wall (s)",
    EVAL_SHARE: "eval share of wall",
    TRACK_SECONDS: "s/tracked point",
    # the cumulative counters (CUMULATIVE_PREFIX): run totals, the last value
    CUM_IMAGES: "images seen",
    CUM_TRAIN_FLOPS: "train FLOPs",
    CUM_TRAIN_SECONDS: "train s (total)",
}


class RegistryError(BenchError):
    """A metric declared or computed inconsistently with the registry."""


@dataclass(frozen=True)
class Output:
    name: str
    direction: str = NONE
    tolerance: float | None = None  # relative; None: `bench check` leaves it out by default
    label: str | None = None  # column title in reports; None: the name itself
    headline: int | None = None  # position in the report's headline table
    fid_like: bool = False  # its column title gets the FID sample count "(N=...)"


@dataclass(frozen=True)
class Metric:
    name: str
    # fn(fake_feats, real_feats, fake_images01, real_images_uint8, fid) -> {output: value};
    # None for values the evaluator, the model or the results tables produce themselves.
    fn: Callable | None
    outputs: tuple[Output, ...]
    # True: fn gets the TRAINING images' features, images and FID(train, fake) as its "real"
    # arguments whatever eval.fid_split is (memorisation is about the training set).
    against_train: bool = False


_METRICS: dict[str, Metric] = {}
_OUTPUTS: dict[str, Output] = {}


def _base(name: str) -> str:
    return name.partition("@")[0]


# ------------------------------------------------------------------------- registration


def _check_output(metric: str, out: Output, declared: dict[str, Output]) -> None:
    where = f"metric {metric!r} output {out.name!r}"
    if not out.name or out.name.startswith(NOT_METRICS):
        raise RegistryError(f"{where}: not a metric name (empty, train/* or cost/*)")
    if out.name in _OUTPUTS or out.name in declared:
        raise RegistryError(f"{where}: output name already registered")
    if out.direction not in DIRECTIONS:
        raise RegistryError(f"{where}: direction {out.direction!r} not in {', '.join(DIRECTIONS)}")
    if out.tolerance is not None and not (math.isfinite(out.tolerance) and out.tolerance >= 0):
        raise RegistryError(f"{where}: tolerance {out.tolerance!r} is not a fraction >= 0")
    if out.tolerance is not None and out.direction == NONE:
        raise RegistryError(f"{where}: a gated output needs a direction")
    taken = {o.headline for o in [*_OUTPUTS.values(), *declared.values()]}
    if out.headline is not None and out.headline in taken:
        raise RegistryError(f"{where}: headline position {out.headline} already taken")
    if "@" in out.name:
        _check_variant(where, out, declared)


def _check_variant(where: str, out: Output, declared: dict[str, Output]) -> None:
    """A declared variant only adds how reports show it; what it measures is its base's."""
    base = declared.get(_base(out.name)) or _OUTPUTS.get(_base(out.name))
    if base is None:
        raise RegistryError(f"{where}: sampler variant of an undeclared output")
    if out.direction != base.direction or out.tolerance is not None:
        raise RegistryError(f"{where}: a variant takes its base's direction and no tolerance")


def register_metric(
    name: str, fn: Callable | None, outputs: list[Output], against_train: bool = False
) -> Metric:
    """Add a metric; raises RegistryError on any clash or bad declaration."""
    if not name or name in _METRICS:
        raise RegistryError(f"metric {name!r}: empty or already registered")
    if fn is not None and not callable(fn):
        raise RegistryError(f"metric {name!r}: fn is neither callable nor None")
    if not outputs:
        raise RegistryError(f"metric {name!r}: declares no outputs")
    declared: dict[str, Output] = {}
    for out in outputs:
        _check_output(name, out, declared)
        if fn is not None and "@" in out.name:
            raise RegistryError(f"metric {name!r}: the evaluator adds @<sampler> to its outputs")
        declared[out.name] = out
    metric = Metric(name, fn, tuple(outputs), against_train)
    _METRICS[name] = metric
    _OUTPUTS.update(declared)
    return metric


def unregister_metric(name: str) -> None:
    """Remove a metric and its outputs (plug-ins and tests that register their own)."""
    metric = _METRICS.pop(name)
    for out in metric.outputs:
        del _OUTPUTS[out.name]


# ------------------------------------------------------------------------------ lookups


def output(name: str) -> Output | None:
    """The declared output of exactly this name (no variant resolution)."""
    return _OUTPUTS.get(name)


def _resolved(name: str) -> Output | None:
    return _OUTPUTS.get(name) or _OUTPUTS.get(_base(name))


def direction(name: str) -> str:
    """LOWER, HIGHER, TWO_SIDED or NONE (also for names nobody declared)."""
    out = _resolved(name)
    return out.direction if out else NONE


def tolerance(name: str) -> float | None:
    """Default relative tolerance for `bench check`; a variant has its base's."""
    out = _OUTPUTS.get(_base(name))
    return out.tolerance if out else None


def label(name: str) -> str:
    out = _OUTPUTS.get(name)
    if out is not None and out.label:
        return out.label
    return COST_LABELS.get(name, name)


def shown_direction(name: str) -> str:
    """The direction reports mark (arrow, bold): declared outputs only, see the module doc."""
    out = _OUTPUTS.get(name)
    return out.direction if out else NONE


def is_fid_like(name: str) -> bool:
    out = _OUTPUTS.get(name)
    return bool(out and out.fid_like)


def fid_outputs() -> tuple[str, ...]:
    return tuple(n for n, o in _OUTPUTS.items() if o.fid_like)


def headline_columns() -> tuple[str, ...]:
    ranked = sorted((o.headline, n) for n, o in _OUTPUTS.items() if o.headline is not None)
    return tuple(n for _, n in ranked)


def gated_outputs() -> tuple[str, ...]:
    """What `bench check` compares by default, in registration order."""
    return tuple(n for n, o in _OUTPUTS.items() if o.tolerance is not None)


def directed_outputs() -> tuple[str, ...]:
    """Declared outputs `bench check` can compare (a direction, even if not gated)."""
    return tuple(n for n, o in _OUTPUTS.items() if o.direction != NONE and "@" not in n)


def feature_metrics() -> dict[str, Metric]:
    """The metrics the evaluator computes from generated samples (eval.extras)."""
    return {n: m for n, m in _METRICS.items() if m.fn is not None}


def compute(name: str, *args) -> dict[str, float]:
    """Call a feature metric and hold it to the outputs it declared."""
    metric = _METRICS[name]
    values = metric.fn(*args)
    declared = [o.name for o in metric.outputs]
    extra = [k for k in values if k not in declared]
    if extra:
        raise RegistryError(
            f"metric {name!r} returned {extra[0]!r}, which it does not declare "
            f"(declared: {', '.join(declared)})"
        )
    return values


# ------------------------------------------------------------------- feature metrics


def _kid(fake_feats, real_feats, fake, real, fid_value):
    from bench.metrics.feature_metrics import kid

    # Subsets of at most 1000 (Binkowski et al. 2018); 100 subsets at large N, fewer when small.
    mean, std = kid(real_feats, fake_feats, subsets=100, subset_size=1000)
    # std is NaN when the subsets are the whole sets (N <= 1000): no row rather than a
    # figure that looks like zero uncertainty.
    return {"kid_mean": mean, **({"kid_std": std} if math.isfinite(std) else {})}


def _prdc(fake_feats, real_feats, fake, real, fid_value):
    from bench.metrics.feature_metrics import density_coverage, precision_recall

    precision, recall = precision_recall(real_feats, fake_feats, k=3)
    density, coverage = density_coverage(real_feats, fake_feats, k=5)
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


def _sharpness(fake_feats, real_feats, fake, real, fid_value):
    from bench.metrics.image_metrics import sharpness_ratio

    return {"sharpness": sharpness_ratio(fake, real)}


def _diversity(fake_feats, real_feats, fake, real, fid_value):
    from bench.metrics.image_metrics import batch_diversity

    # Mean pairwise distance within 200 samples relative to 200 real images: falls towards 0
    # when the generator collapses onto a few modes.
    n = min(200, len(fake), len(real))
    return {"diversity": batch_diversity(fake[:n]) / batch_diversity(real[:n])}


def _memorization(fake_feats, real_feats, fake, real, fid_value):
    from bench.metrics.feature_metrics import memorization

    m = memorization(real_feats, fake_feats, fid_train=fid_value)
    return {k: m[k] for k in ("mem_dist_mean", "mem_dist_q05", "mifid")}


# --------------------------------------------------------------------- the built-ins
# Registration order is `bench check`'s metric order and its --tolerance help text.
# Tolerances are a policy, not a formula: roughly the seed-to-seed spread these metrics show
# in small sweeps, so the gate catches real regressions rather than noise. psnr is in dB, so
# 1% (~0.25 dB at 25 dB) is already a ~6% change of recon_mse; KID from few samples is
# noisy, hence 20%.

register_metric(
    "fid",
    None,
    [
        Output("fid", LOWER, 0.10, fid_like=True),
        Output("fid@gmm", LOWER, label="FID@gmm", headline=3, fid_like=True),
    ],
)
register_metric(
    "fid_summary",  # end-of-run rows (bench.results.write.add_summary)
    None,
    [
        Output(FINAL_FID, LOWER, 0.10, label="FID", headline=1, fid_like=True),
        Output(BEST_FID, LOWER, 0.10, label="best FID", headline=2, fid_like=True),
        Output(BEST_FID_EPOCH),
    ],
)
register_metric(
    "kid", _kid, [Output("kid_mean", LOWER, 0.20, label="KID", headline=4), Output("kid_std")]
)
register_metric(
    "reconstruction",  # held-out images through the autoencoder (Evaluator._heldout_metrics)
    None,
    [
        Output("recon_mse", LOWER, 0.05, label="recon MSE", headline=9),
        Output("psnr", HIGHER, 0.01, label="PSNR (dB)", headline=10),
        Output("ssim", HIGHER, 0.02, headline=11),
        Output("sharpness_recon"),
    ],
)
# recall, coverage and diversity gate mode collapse (a GAN can collapse with FID unmoved).
# `bench check` compares a new run with the baseline seeds' prediction interval, which
# already holds the seed noise, so these tolerances are the extra change that matters, not a
# noise allowance: 10% like precision/density. Their seed spreads would swamp any fixed
# tolerance anyway: GAN recall 0.021 ± 0.006 and coverage 0.086 ± 0.033 over 3 seeds
# (results/reference/standard), AE recall 0.0 and coverage 0.0-0.02 at smoke size
# (N=300). Diversity is the tight one (standard GAN 1.075 ± 0.033, smoke AE 0.270 ± 0.003,
# ~1-3%) and falls to a fraction of that on collapse, so it catches collapse even where
# recall/coverage spreads are too wide to.
register_metric(
    "prdc",
    _prdc,
    [
        Output("precision", HIGHER, 0.10, headline=5),
        Output("recall", HIGHER, 0.10, headline=6),
        Output("density", HIGHER, 0.10),
        Output("coverage", HIGHER, 0.10, headline=7),
    ],
)
# kl_nats (a VAE's KL(q(z|x) || p(z)) in nats, models/vae.py heldout_terms) has no better
# direction: lower can mean posterior collapse, higher a worse prior match. A shift beyond
# tolerance either way means the model behaves differently, so `bench check` fails it.
register_metric(
    "model_terms",
    None,
    [
        Output("kl_nats", TWO_SIDED, 0.25, label="KL (nats)", headline=12),
        Output("active_dims"),
    ],
)
register_metric("sharpness", _sharpness, [Output("sharpness", headline=8)])
register_metric("diversity", _diversity, [Output("diversity", HIGHER, 0.10)])
register_metric(
    "memorization",
    _memorization,
    [Output("mem_dist_mean"), Output("mem_dist_q05"), Output("mifid")],
    against_train=True,
)
register_metric(
    "interpolation",  # Evaluator._interpolation_metrics
    None,
    [Output("interp_cv", LOWER, headline=13), Output("interp_length")],
)
register_metric(
    "stability",  # per run, bench.results.table.per_run_stability
    None,
    [Output("fid_gap", LOWER), Output("fid_gap_rel", LOWER)],
)
register_metric("fid_inf", None, [Output("fid_inf")])
register_metric(
    # Tracked points during training (Evaluator.track): FID / KID at the small eval.track_n,
    # comparable only with each other, so never gated; held-out recon MSE (models with an
    # encoder) on eval.track_n images.
    "track",
    None,
    [Output(TRACK_FID, LOWER), Output(TRACK_KID, LOWER), Output(TRACK_RECON, LOWER)],
)
register_metric(
    "fid_sqrtm",  # recorded only when the matrix square root needed a fallback
    None,
    [Output("fid_sqrtm_eps"), Output("fid_sqrtm_max_imag")],
)
register_metric("inception_score", None, [Output("inception_score", HIGHER)])
