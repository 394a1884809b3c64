"""A sweep: models x seeds under one shared setting, each run in its own folder.

Re-running the same command into the same folder skips finished runs and resumes
unfinished ones from their last checkpoint. A folder made with different shared settings
(data, training, evaluation, backbone) or a run folder with a different config is refused
(exit 2) unless ``overwrite`` is set; adding models or seeds to a sweep is allowed.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch

from bench import io
from bench.config import SweepConfig
from bench.data import load_images
from bench.env import environment, resolve_device
from bench.errors import BenchError
from bench.evaluate import Evaluator
from bench.results import run_id
from bench.train import RunPlan, train_run
from models import parse_model_spec
from models.backbone import SUPPORTED_SIZES
from models.registry import model_config

SHARED_SECTIONS = ("backbone", "data", "train", "eval")


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
    return list(range(values[0])) if "," not in text else values


def run_config(cfg: SweepConfig, spec, seed: int, rid: str) -> dict:
    shared = asdict(cfg.backbone)
    return {
        "run": rid,
        "model": spec.label,
        "model_name": spec.name,
        "seed": seed,
        "model_params": asdict(model_config(spec, shared)),
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
    return [
        RunPlan(run_id(s.label, seed), s, seed, cfg, out / run_id(s.label, seed))
        for s in specs
        for seed in cfg.seeds
    ]


def prepare_folder(cfg: SweepConfig, out: Path, plans: list[RunPlan], overwrite: bool) -> None:
    """Refuse to mix settings in one results folder; nothing is deleted without overwrite."""
    sweep_file = out / "sweep.json"
    shared = {s: asdict(getattr(cfg, s)) for s in SHARED_SECTIONS}
    if sweep_file.exists() and not overwrite:
        old = io.read_json(sweep_file)
        for section in SHARED_SECTIONS:
            for key, value in shared[section].items():
                if old.get(section, {}).get(key) != value:
                    raise BenchError(
                        f"{out} holds results made with {section}.{key}="
                        f"{old.get(section, {}).get(key)!r}, not {value!r}; use another --out "
                        "or --overwrite"
                    )
    for plan in plans:
        cfg_file = plan.dir / "config.json"
        if cfg_file.exists():
            wanted = run_config(cfg, plan.spec, plan.seed, plan.run_id)
            if io.read_json(cfg_file) != wanted:
                if not overwrite:
                    raise BenchError(
                        f"{plan.dir} was made with a different config; use another --out "
                        "or --overwrite"
                    )
                shutil.rmtree(plan.dir)
    models = sorted(
        set(
            io.read_json(sweep_file).get("models", [])
            if sweep_file.exists() and not overwrite
            else []
        )
        | set(cfg.models)
    )
    io.write_json(sweep_file, {**asdict(cfg), "models": models})


def run_sweep(cfg: SweepConfig, out: Path, data_root: Path, overwrite=False, say=print):
    """Train and evaluate every run of the sweep; returns a summary DataFrame."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    plans = plan_sweep(cfg, out)
    device = resolve_device(cfg.train.device)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    size = cfg.data.image_size
    train = load_images(cfg.data.dataset, "train", size, data_root, announce=say)
    heldout = load_images(train.dataset, "test", size, data_root, announce=say)
    fid_real = train if cfg.eval.fid_split == "train" else heldout
    if not cfg.data.dataset.startswith("folder:"):
        cfg.data.dataset = train.dataset  # record what 'auto' resolved to
    if cfg.data.train_limit:
        keep = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
        train.images = train.images[keep[: cfg.data.train_limit]]
    say(
        f"data: {train.dataset} ({train.source}): {len(train)} train, {len(heldout)} held-out "
        f"images at {size}x{size}"
        + (f"; {train.skipped} unreadable files skipped" if train.skipped else "")
    )
    out.mkdir(parents=True, exist_ok=True)
    prepare_folder(cfg, out, plans, overwrite)
    evaluator = Evaluator(cfg.eval, fid_real, heldout, device)
    env = environment(device)
    for plan in plans:
        status_file = plan.dir / "status.json"
        if status_file.exists() and io.read_json(status_file)["status"] in ("ok", "diverged"):
            say(f"[{plan.run_id}] already finished, skipped")
            continue
        io.write_json(plan.dir / "config.json", run_config(cfg, plan.spec, plan.seed, plan.run_id))
        io.write_json(
            plan.dir / "env.json",
            {
                "fid_weights": fid_weights_id(),
                **env,
                "data_source": train.source,
                "unreadable_images_skipped": train.skipped,
            },
        )
        train_run(plan, train, evaluator, device, say)
    return summarize(out, plans)


def fid_weights_id() -> str:
    from bench import fid

    return fid.WEIGHTS_ID


def summarize(out: Path, plans: list[RunPlan]) -> pd.DataFrame:
    rows = []
    for plan in plans:
        frame = (
            pd.read_csv(plan.dir / "metrics.csv") if (plan.dir / "metrics.csv").exists() else None
        )
        status = (
            io.read_json(plan.dir / "status.json") if (plan.dir / "status.json").exists() else {}
        )
        row = {
            "run": plan.run_id,
            "model": plan.spec.label,
            "seed": plan.seed,
            "status": status.get("status", "missing"),
            "epochs": status.get("epoch"),
        }
        if frame is not None and len(frame):
            last = frame[~frame["metric"].str.startswith(("train/", "cost/"))]
            last = last.sort_values("epoch").groupby("metric")["value"].last()
            for metric in ("final_fid", "best_fid", "recon_mse", "psnr", "kl_nats"):
                if metric in last:
                    row[metric] = last[metric]
        rows.append(row)
    return pd.DataFrame(rows)
