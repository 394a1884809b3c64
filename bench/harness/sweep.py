"""A sweep: models x seeds under one shared setting, each run in its own folder.

Re-running the same command into the same folder skips finished runs and resumes
unfinished ones from their last checkpoint. A folder made with different shared settings
(data, training, evaluation, backbone) or a run folder with a different config is refused
(exit 2) unless ``overwrite`` is set; adding models or seeds to a sweep is allowed.

Runs train in this process (the default), in ``jobs`` local processes, or as Ray tasks
(bench.harness.executors); the results folder looks the same whichever trained them.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import click
import pandas as pd
import torch

from bench.core import io
from bench.core.config import (
    SHARED_SECTION_CLASSES,
    EvalConfig,
    SweepConfig,
    with_new_defaults,
)
from bench.core.env import resolve_device
from bench.core.errors import BenchError
from bench.core.layout import (
    BEST_FID,
    BUDGET_REPRODUCIBLE,
    CONFIG_FILE,
    ERROR_FILE,
    FINAL_FID,
    FINISHED,
    STATUS_FILE,
    SWEEP_FILE,
    Status,
    run_id,
)
from bench.data.images import ImageSet, limit_train_images, load_images
from bench.harness.budget import steps_per_epoch
from bench.harness.continued import continue_runs
from bench.harness.executors import RunTask, check_executor, execute, run_context
from bench.harness.train import RunPlan
from bench.metrics import samplers
from bench.results import table as rt
from models import MODELS, parse_model_spec
from models.backbone import SUPPORTED_SIZES
from models.registry import model_config

SHARED_SECTIONS = tuple(SHARED_SECTION_CLASSES)


def split_model_list(text: str) -> list[str]:
    """'vae:beta=4,kl_warmup_epochs=2,gan' -> ['vae:beta=4,kl_warmup_epochs=2', 'gan']."""
    specs: list[str] = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        if "=" in item and ":" not in item and specs:
            specs[-1] += "," + item  # another parameter of the previous model
        else:
            specs.append(item)
    return specs


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' -> those seeds; a single number N -> N seeds 0..N-1."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise BenchError(
            f"--seeds {text!r}: expected a count like 5 or a list like 0,1,2"
        ) from None
    if not values or min(values) < 0:
        raise BenchError(f"--seeds {text!r}: expected a count like 5 or a list like 0,1,2")
    if "," not in text and values[0] == 0:
        # A count of zero plans no runs; the user almost always meant the seed 0.
        raise BenchError("--seeds 0: a count must be >= 1; for the single seed 0 write --seeds 0,")
    return list(range(values[0])) if "," not in text else values


def run_config(cfg: SweepConfig, spec, seed: int, rid: str) -> dict:
    shared = asdict(cfg.backbone)
    return {
        "run": rid,
        "model": spec.label,
        "model_name": spec.name,
        "seed": seed,
        "model_params": asdict(model_config(spec, shared)),
        # A seconds budget stops the run on measured time: another machine stops elsewhere.
        BUDGET_REPRODUCIBLE: not cfg.train.budget_seconds,
        **{section: asdict(getattr(cfg, section)) for section in SHARED_SECTIONS},
    }


def plan_sweep(cfg: SweepConfig, out: Path) -> list[RunPlan]:
    if cfg.data.image_size not in SUPPORTED_SIZES:
        accepted = ", ".join(map(str, SUPPORTED_SIZES))
        raise BenchError(
            f"data.image_size {cfg.data.image_size} not supported; accepted: {accepted}"
        )
    specs = [parse_model_spec(m) for m in cfg.models]
    if not specs:
        raise BenchError("no models given; accepted: e.g. --models ae,vae,gan")
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise BenchError(f"a model is listed twice: {labels}")
    _check_samplers(cfg, specs)
    return [
        RunPlan(run_id(s.label, seed), s, seed, cfg, out / run_id(s.label, seed))
        for s in specs
        for seed in cfg.seeds
    ]


def _check_samplers(cfg: SweepConfig, specs) -> None:
    """Each sampler asked for must apply to some model of the sweep (samplers.applies_to).
    The default list is exempt: in a sweep of AE, VAE and GAN its fitted samplers simply do
    not apply to the GAN, and a GAN-only sweep with the defaults must still run."""
    if cfg.eval.samplers == EvalConfig().samplers:
        return
    encoders = {MODELS[s.name].has_encoder for s in specs}
    for name in cfg.eval.samplers:
        if not any(samplers.applies_to(name, e) for e in encoders):
            fits = (
                ["prior"]
                + ["gaussian, gmm"] * (True in encoders)
                + ["trunc<T>"] * (False in encoders)
            )
            models = ", ".join(s.label for s in specs)
            raise BenchError(
                f"eval.samplers {name!r} applies to none of the models ({models}): gaussian and "
                "gmm need an encoder (ae, vae), trunc<T> a model without one (gan); accepted "
                f"for these: {', '.join(fits)}"
            )


def check_data_counts(cfg: SweepConfig, train: ImageSet, heldout: ImageSet, say=print) -> None:
    """Too few training images for one batch is refused; fewer real images than eval.fid_samples
    is said once: the evaluator then uses N = all of them (Evaluator.n_fid)."""
    name, batch = cfg.data.dataset, cfg.train.batch_size
    if len(train) < batch:
        raise BenchError(
            f"dataset {name!r} has {len(train)} training images, fewer than train.batch_size "
            f"{batch}; use --batch-size {len(train)} or less, or more training images"
        )
    real = train if cfg.eval.fid_split == "train" else heldout
    if 0 < len(real) < cfg.eval.fid_samples:
        say(
            f"note: eval.fid_samples {cfg.eval.fid_samples} but {name!r} has {len(real)} "
            f"{cfg.eval.fid_split} images: FID uses N={len(real)} (FIDs compare only at equal N)"
        )


def _first_difference(old: dict, new: dict) -> str | None:
    """'section.key=old vs new' of the first shared setting that differs, else None; keys
    the current config no longer has are not compared, keys it has gained count at their
    defaults (older results stay readable and resumable)."""
    old = with_new_defaults(old)
    new = {section: new[section] for section in SHARED_SECTIONS}
    old = {s: {k: (old.get(s) or {}).get(k) for k in new[s]} for s in SHARED_SECTIONS}
    return rt.first_difference(old, new)


def prepare_folder(
    cfg: SweepConfig, out: Path, plans: list[RunPlan], overwrite: bool, say=print
) -> None:
    """Refuse to mix settings in one results folder; nothing is deleted without overwrite.

    With overwrite, run folders made with other shared settings (listed in this sweep or not)
    and listed runs with another config are removed, so the folder holds one setting again.
    """
    sweep_file = out / SWEEP_FILE
    shared = {s: asdict(getattr(cfg, s)) for s in SHARED_SECTIONS}
    # A corrupt file is one line naming it (read_run_json), never a traceback.
    old = rt.read_run_json(out, SWEEP_FILE) if sweep_file.exists() else None
    differs = old is not None and _first_difference(old, shared)
    if differs and not overwrite:
        raise BenchError(
            f"{out} holds results made with {differs}; use another --out or --overwrite"
        )
    wanted = {p.dir: run_config(cfg, p.spec, p.seed, p.run_id) for p in plans}
    stale = []
    for cfg_file in sorted(out.glob(f"*/{CONFIG_FILE}")):
        run = with_new_defaults(rt.read_run_json(cfg_file.parent, CONFIG_FILE))
        other = _first_difference(run, shared)
        if other or wanted.get(cfg_file.parent, run) != run:
            stale.append((cfg_file.parent, other or "a different run config"))
    if stale and not overwrite:
        folder, why = stale[0]
        raise BenchError(f"{folder} was made with {why}; use another --out or --overwrite")
    for folder, why in stale:
        say(f"--overwrite: removing {folder} (made with {why})")
        shutil.rmtree(folder)
    kept = set(old.get("models", [])) if old is not None and not differs else set()
    io.write_json(sweep_file, {**asdict(cfg), "models": sorted(kept | set(cfg.models))})


def load_sweep_data(cfg: SweepConfig, data_root: Path, say=print) -> tuple[ImageSet, ImageSet]:
    """(train, held-out) images of the sweep; records what dataset 'auto' resolved to."""
    size = cfg.data.image_size
    train = load_images(cfg.data.dataset, "train", size, data_root, announce=say)
    heldout = load_images(train.dataset, "test", size, data_root, announce=say)
    if not cfg.data.dataset.startswith("folder:"):
        cfg.data.dataset = train.dataset  # record what 'auto' resolved to
    limit_train_images(train, cfg.data.train_limit)
    say(
        f"data: {train.dataset} ({train.source}): {len(train)} train, {len(heldout)} held-out "
        f"images at {size}x{size}"
        + (f"; {train.skipped} unreadable files skipped" if train.skipped else "")
    )
    return train, heldout


class RunsCrashed(click.ClickException):
    """Some runs raised (or their worker died); the others finished. Exit status 1."""

    exit_code = 1


def _finished(plan: RunPlan) -> bool:
    status_file = plan.dir / STATUS_FILE
    return (
        status_file.exists() and rt.read_run_json(plan.dir, STATUS_FILE).get("status") in FINISHED
    )


def run_sweep(
    cfg: SweepConfig,
    out: Path,
    data_root: Path,
    overwrite=False,
    say=print,
    jobs: int | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    continue_from: Path | None = None,
):
    """Train and evaluate every run of the sweep; returns a summary DataFrame.

    ``continue_from``: a results folder whose finished runs of the same models and seeds,
    trained for less, are where this sweep's runs start (bench.harness.continued).

    ``jobs`` runs at once (local processes; with Ray, the most in flight), ``executor``
    'local' or 'ray' (bench.harness.executors). Raises RunsCrashed (exit 1) after the sweep when a
    run crashed; a diverged run is a result, not a crash.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    check_executor(executor, jobs, ray_address)
    plans = plan_sweep(cfg, out)
    io.check_writable_folder(out)
    # On a cluster the driver's hardware says nothing about the workers': they resolve it.
    device = torch.device("cpu") if ray_address else resolve_device(cfg.train.device)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    train, heldout = load_sweep_data(cfg, data_root, say)
    check_data_counts(cfg, train, heldout, say)
    context = run_context(cfg, train, heldout, device)
    out.mkdir(parents=True, exist_ok=True)
    prepare_folder(cfg, out, plans, overwrite, say)
    if continue_from is not None:
        wanted = [(p, run_config(cfg, p.spec, p.seed, p.run_id)) for p in plans]
        steps = steps_per_epoch(len(train.images), cfg.train.batch_size)
        continue_runs(continue_from, wanted, steps, say)
    todo = []
    for plan in plans:
        if _finished(plan):
            say(f"[{plan.run_id}] already finished, skipped")
        else:
            todo.append(plan)
    if todo and context.evaluator.n_fid and not ray_address:
        context.evaluator.real_statistics()  # once, before workers look it up in the cache
    tasks = [RunTask(p, run_config(cfg, p.spec, p.seed, p.run_id), (train, heldout)) for p in todo]
    statuses = execute(tasks, context, executor, jobs, ray_address, say)
    summary = summarize(out, plans, statuses)
    crashed = sorted(rid for rid, status in statuses.items() if status == Status.CRASHED)
    if crashed:
        say("\n" + summary.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        raise RunsCrashed(
            f"{len(crashed)} of {len(plans)} runs crashed ({', '.join(crashed)}); tracebacks "
            f"in {out}{os.sep}<run>{os.sep}{ERROR_FILE}; re-running the same command resumes them"
        )
    return summary


SUMMARY_COLUMNS = (FINAL_FID, BEST_FID, "recon_mse", "psnr", "kl_nats")  # of the printout


def summarize(out: Path, plans: list[RunPlan], statuses: dict | None = None) -> pd.DataFrame:
    """One row per run; ``statuses`` (run_id -> status of this invocation) marks crashes.

    Final values as `bench report` reads them (bench.results.table); a planned run without a
    folder is Status.MISSING.
    """
    found = [p.dir for p in plans if (p.dir / CONFIG_FILE).is_file()]
    runs, metrics = rt.read_runs(found, out) if found else (None, None)
    by_path = {} if runs is None else {Path(r.path): r for r in runs.itertuples()}
    finals = {} if metrics is None else rt.final_values(metrics)
    rows = []
    for plan in plans:
        run = by_path.get(plan.dir)
        status = Status.MISSING if run is None else run.status
        if (statuses or {}).get(plan.run_id) == Status.CRASHED:
            status = Status.CRASHED
        row = {
            "run": plan.run_id,
            "model": plan.spec.label,
            "seed": plan.seed,
            "status": str(status),
            "epochs": None if run is None or pd.isna(run.epochs_done) else int(run.epochs_done),
        }
        final = finals.get(run.run, {}) if run is not None else {}
        row.update({m: final[m] for m in SUMMARY_COLUMNS if m in final})
        rows.append(row)
    return pd.DataFrame(rows)
