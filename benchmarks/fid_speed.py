"""Throughput and agreement on several data pairs: pytorch-fid vs `bench fid --exact`
vs `bench fid` (folded fp32, what runs publish) vs `bench fid --fast` (bf16 where native).

Each tool computes the FID between the same two folders, end to end (network construction,
image decoding, Inception, Fréchet distance), in one process, one after the other. pytorch-fid
gets the same weights offline: our renamed state dict saved as its checkpoint in a temporary
TORCH_HOME. Targets (issue 14): the published path within 0.25% of pytorch-fid on every pair,
at >= 4× its images/s.

    python benchmarks/fid_speed.py                          # the default pairs below, N=300
    python benchmarks/fid_speed.py --pairs cifar --n 500 --tools exact,folded
    python benchmarks/fid_speed.py --generated results/smoke/gan-seed0 --generated64 RUN64

Pairs: ``cifar`` CIFAR-10 dogs train vs test (32 px); ``pet64`` PetImages dogs resized to
64 px vs CIFAR train dogs; ``gen32`` samples of --generated (a 32 px run) vs CIFAR test;
``gen64`` samples of --generated64 (a 64 px run) vs PetImages at 64 px. Images that are not
files already (resized, generated) are written as PNG, so every tool reads the same pixels.
On a CPU without native bf16, ``fast`` computes what ``folded`` does and is left out.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from click.testing import CliRunner

from bench.core.errors import run_script
from bench.data.images import first_images
from bench.metrics import fid
from bench.results.trained import run_samples
from bench.tools.fid_cli import fid_command, image_files

DATA = Path("/work/shared/data")
TOOLS = ("pytorch-fid", "exact", "folded", "fast")
PAIRS = ("cifar", "pet64", "gen32", "gen64")


def link_subset(src: Path, dst: Path, n: int, skip: int) -> Path:
    """Folder of symlinks to files skip..skip+n of ``src`` (sorted), so every tool sees the same."""
    files = image_files(src)[skip : skip + n]
    if len(files) < n:
        raise SystemExit(f"{src}: only {len(files)} images after skipping {skip}, need {n}")
    dst.mkdir(parents=True)
    for i, path in enumerate(files):
        (dst / f"{i:05d}{path.suffix.lower()}").symlink_to(path.resolve())
    return dst


def offline_torch_home(root: Path) -> None:
    """Give pytorch-fid its checkpoint offline: our renamed state dict, under its file name."""
    state, _ = fid.pytorch_fid_state_dict()
    hub = root / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.save(state, hub / fid.PYTORCH_FID_FILE)
    os.environ["TORCH_HOME"] = str(root)


def run_pytorch_fid(a: Path, b: Path, dims: int) -> float:
    from pytorch_fid.fid_score import calculate_fid_given_paths

    # As `python -m pytorch_fid` runs it: batch 50, min(8, cpus) loader workers.
    workers = min(8, len(os.sched_getaffinity(0)))
    return float(calculate_fid_given_paths([str(a), str(b)], 50, "cpu", dims, workers))


def run_bench(a: Path, b: Path, dims: int, numerics: str) -> float:
    fid.clear_inception_cache()  # include network construction, as pytorch-fid does
    args = [str(a), str(b), "--device", "cpu", "--dims", str(dims), f"--{numerics}"]
    out = CliRunner().invoke(fid_command, args)
    if out.exit_code != 0:
        raise SystemExit(f"bench fid failed: {out.output}")
    return float(re.search(r"FID: (\S+)", out.output).group(1))


def save_pngs(images: torch.Tensor, dst: Path) -> Path:
    """uint8 N×3×H×W -> dst/00000.png...: lossless, so every tool decodes the same pixels."""
    from PIL import Image

    dst.mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(dst / f"{i:05d}.png")
    return dst


def make_pair(name: str, args, tmp: Path) -> tuple[Path, Path]:
    """The two folders of pair ``name``, N images each."""
    cifar, n = args.data / "cifar10-dog", args.n
    if name == "cifar":
        return (
            link_subset(cifar / "train/dog", tmp / "cifar_train", n, 0),
            link_subset(cifar / "test/dog", tmp / "cifar_test", n, 0),
        )
    pet64 = lambda: save_pngs(first_images(args.data / "petimages-dog/dog", 64, n), tmp / "pet64")  # noqa: E731
    if name == "pet64":
        return pet64(), link_subset(cifar / "train/dog", tmp / "cifar_train", n, 0)
    if name == "gen32":
        if args.generated is None:
            raise SystemExit("pair gen32 needs --generated RUN_DIR (a 32 px run)")
        return (
            save_pngs(run_samples(args.generated, n), tmp / "gen32"),
            link_subset(cifar / "test/dog", tmp / "cifar_test", n, 0),
        )
    if name == "gen64":
        if args.generated64 is None:
            raise SystemExit("pair gen64 needs --generated64 RUN_DIR (a 64 px run)")
        return save_pngs(run_samples(args.generated64, n), tmp / "gen64"), pet64()
    raise SystemExit(f"unknown pair {name!r}; accepted: {', '.join(PAIRS)}")


def time_frechet(dims: int, n: int = 500) -> None:
    """Part of the end-to-end time: Tr sqrt(S1 S2) by scipy sqrtm (pytorch-fid, --exact)
    vs symmetric eigenvalues (fast), on N=n random features."""
    rng = np.random.default_rng(0)
    stats = [fid.feature_stats(rng.normal(size=(n, dims)) + shift) for shift in (0.0, 0.1)]
    for method in fid.FRECHET_METHODS:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = fid.frechet_distance(*stats[0], *stats[1], method=method).fid
        print(
            f"Frechet {method:5s} {dims}-d: {time.perf_counter() - start:6.1f} s (value {value:.6f})"
        )


def run_tool(tool: str, a: Path, b: Path, dims: int) -> float:
    if tool == "pytorch-fid":
        return run_pytorch_fid(a, b, dims)
    return run_bench(a, b, dims, numerics=tool)


def measure(tools: list[str], a: Path, b: Path, n: int, dims: int, repeat: int) -> dict:
    """tool -> (FID, best seconds). Rounds alternate the order (ABC, CBA, ...) so that a
    load change on a shared machine does not always hit the same tool; best = least disturbed."""
    results: dict[str, tuple[float, float]] = {}
    for round_ in range(repeat):
        for tool in tools if round_ % 2 == 0 else tools[::-1]:
            start = time.perf_counter()
            value = run_tool(tool, a, b, dims)
            seconds = time.perf_counter() - start
            print(
                f"{tool:12s} FID {value:10.4f}  {seconds:7.1f} s  {2 * n / seconds:6.2f} img/s"
                f"  (load {os.getloadavg()[0]:.2f})",
                flush=True,
            )
            best = min(seconds, results.get(tool, (0.0, float("inf")))[1])
            results[tool] = (value, best)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--pairs", default="cifar,pet64,gen32,gen64", help=f"subset of {PAIRS}")
    parser.add_argument("--generated", type=Path, help="a 32 px run folder (pair gen32)")
    parser.add_argument("--generated64", type=Path, help="a 64 px run folder (pair gen64)")
    parser.add_argument("--n", type=int, default=300, help="images per side")
    parser.add_argument("--dims", type=int, default=2048)
    parser.add_argument("--tools", default=",".join(TOOLS), help=f"subset of {TOOLS}")
    parser.add_argument("--repeat", type=int, default=1, help="rounds, alternating order")
    args = parser.parse_args()
    tools = [t for t in args.tools.split(",") if t != "fast" or fid._native_bf16_cpu()]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16 CPU: "
        f"{fid._native_bf16_cpu()}, tools: {', '.join(tools)}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        offline_torch_home(tmp / "torch_home")
        for name in args.pairs.split(","):
            a, b = make_pair(name, args, tmp / name)
            print(f"pair {name}: {args.n} from {a.name} vs {args.n} from {b.name}", flush=True)
            results = measure(tools, a, b, args.n, args.dims, args.repeat)
            ref_tool = "pytorch-fid" if "pytorch-fid" in results else "exact"
            ref_value, ref_seconds = results[ref_tool]
            for tool, (value, seconds) in results.items():
                if tool != ref_tool:
                    diff = 100 * (value - ref_value) / ref_value
                    summary.append((name, tool, ref_tool, ref_seconds / seconds, diff))
    time_frechet(args.dims)
    for name, tool, ref_tool, speed, diff in summary:
        print(
            f"{name:6s} {tool:7s} vs {ref_tool}: speed {speed:.2f}× (best of "
            f"{args.repeat}), FID diff {diff:+.4f}%"
        )


if __name__ == "__main__":
    run_script(main)
