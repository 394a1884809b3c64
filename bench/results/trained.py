"""A finished (or checkpointed) run, loaded back from its folder for generation tools."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from bench.core import io
from bench.core.errors import BenchError
from models import build_model, parse_model_spec
from models.base import GenerativeModel


@dataclass
class TrainedRun:
    dir: Path
    config: dict  # the run's config.json
    model: GenerativeModel  # in eval mode, weights from checkpoint.pt
    epoch: int


def load_trained_run(run_dir: str | Path, device: str | torch.device = "cpu") -> TrainedRun:
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise BenchError(f"{run_dir} is not a run folder (no config.json); give RESULTS/<run>")
    if not (run_dir / "checkpoint.pt").is_file():
        raise BenchError(f"{run_dir} has no checkpoint.pt yet: the run has not finished an epoch")
    config = io.read_json(run_dir / "config.json")
    spec = parse_model_spec(config["model"])
    model = build_model(spec, config["backbone"], config["data"]["image_size"]).to(device)
    state = torch.load(run_dir / "checkpoint.pt", map_location=device, weights_only=False)
    model.load_state_dict(state["model"])
    model.eval()
    return TrainedRun(run_dir, config, model, state["epoch"])
