"""A finished (or checkpointed) run, loaded back from its folder for generation tools."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from bench.core import io
from bench.core.errors import BenchError
from bench.core.layout import CHECKPOINT_FILE, CONFIG_FILE
from bench.results.write import CorruptCheckpoint, read_checkpoint
from models import build_model, parse_model_spec
from models.base import GenerativeModel

RUN_CONFIG_KEYS = ("model", "backbone", "data")  # what building the model reads


@dataclass
class TrainedRun:
    dir: Path
    config: dict  # the run's config.json
    model: GenerativeModel  # in eval mode, weights from checkpoint.pt
    epoch: int


def _check_run_folder(run_dir: Path) -> None:
    """One line naming what ``run_dir`` is instead of a run folder (a sweep: its runs)."""
    if not (run_dir / CONFIG_FILE).is_file():
        runs = sorted(p.parent.name for p in run_dir.glob(f"*/{CONFIG_FILE}"))
        hint = f"; runs in it: {', '.join(runs[:4])}" if runs else "; give RESULTS/<run>"
        raise BenchError(f"{run_dir} is not a run folder (no {CONFIG_FILE}){hint}")


def _run_config(run_dir: Path) -> dict:
    """The run's config.json, or one line saying why it cannot be used."""
    try:
        config = io.read_json(run_dir / CONFIG_FILE)
    except (OSError, ValueError) as e:
        raise BenchError(f"{run_dir / CONFIG_FILE} is unreadable ({type(e).__name__})") from None
    if not isinstance(config, dict) or not all(k in config for k in RUN_CONFIG_KEYS):
        keys = ", ".join(RUN_CONFIG_KEYS)
        raise BenchError(f"{run_dir / CONFIG_FILE} is not a run config (needs {keys})")
    return config


def load_trained_run(run_dir: str | Path, device: str | torch.device = "cpu") -> TrainedRun:
    run_dir = Path(run_dir)
    _check_run_folder(run_dir)
    if not (run_dir / CHECKPOINT_FILE).is_file():
        raise BenchError(
            f"{run_dir} has no {CHECKPOINT_FILE} yet: the run has not finished an epoch"
        )
    config = _run_config(run_dir)
    spec = parse_model_spec(config["model"])
    model = build_model(spec, config["backbone"], config["data"]["image_size"]).to(device)
    try:
        state = read_checkpoint(run_dir / CHECKPOINT_FILE, device)
    except CorruptCheckpoint as e:  # re-running its sweep sets the file aside and retrains
        raise BenchError(f"{e}; re-run the bench run command of its sweep to retrain") from None
    model.load_state_dict(state["model"])
    model.eval()
    return TrainedRun(run_dir, config, model, state["epoch"])


def run_samples(run_dir: str | Path, n: int) -> torch.Tensor:
    """N samples (uint8) of a finished run from N(0, I), as its evaluation draws them: the
    eval-mode model and bench.metrics.samplers.generate's fixed latent seed."""
    from bench.metrics.fid import to_uint8
    from bench.metrics.samplers import generate

    return to_uint8(generate(load_trained_run(run_dir).model, n))
