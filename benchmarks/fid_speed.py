"""Throughput and agreement: pytorch-fid vs `bench fid --exact` vs `bench fid` (fast).

Each tool computes the FID between the same two folders, end to end (network construction,
image decoding, Inception, Fréchet distance), in one process, one after the other. pytorch-fid
gets the same weights offline: our renamed state dict saved as its checkpoint in a temporary
TORCH_HOME. Target: fast >= 3× pytorch-fid's images/s with |FID difference| <= 0.5%.

    python benchmarks/fid_speed.py                       # 500 CIFAR-10 train dogs vs 500 test dogs
    python benchmarks/fid_speed.py --a /work/shared/data/petimages-dog/dog \\
        --b /work/shared/data/petimages-dog/dog --b-skip 300 --n 300 --tools exact,fast
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

from bench.metrics import fid
from bench.tools.fid_cli import fid_command, image_files

DATA = Path("/work/shared/data")
TOOLS = ("pytorch-fid", "exact", "fast")


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


def run_bench(a: Path, b: Path, dims: int, exact: bool) -> float:
    fid.clear_inception_cache()  # include network construction, as pytorch-fid does
    args = [str(a), str(b), "--device", "cpu", "--dims", str(dims)] + (["--exact"] if exact else [])
    out = CliRunner().invoke(fid_command, args)
    if out.exit_code != 0:
        raise SystemExit(f"bench fid failed: {out.output}")
    return float(re.search(r"FID: (\S+)", out.output).group(1))


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
    return run_bench(a, b, dims, exact=tool == "exact")


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
    parser.add_argument("--a", type=Path, default=DATA / "cifar10-dog/train/dog")
    parser.add_argument("--b", type=Path, default=DATA / "cifar10-dog/test/dog")
    parser.add_argument("--n", type=int, default=500, help="images per side")
    parser.add_argument("--b-skip", type=int, default=0, help="skip this many files of B")
    parser.add_argument("--dims", type=int, default=2048)
    parser.add_argument("--tools", default=",".join(TOOLS), help=f"subset of {TOOLS}")
    parser.add_argument("--repeat", type=int, default=1, help="rounds, alternating order")
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16 CPU: "
        f"{fid._native_bf16_cpu()}, fast mode: {fid.feature_mode('cpu')}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        a = link_subset(args.a, tmp / "a", args.n, 0)
        b = link_subset(args.b, tmp / "b", args.n, args.b_skip)
        offline_torch_home(tmp / "torch_home")
        print(f"A: {args.n} from {args.a}\nB: {args.n} from {args.b} (skip {args.b_skip})")
        results = measure(args.tools.split(","), a, b, args.n, args.dims, args.repeat)
    time_frechet(args.dims)
    ref_tool = "pytorch-fid" if "pytorch-fid" in results else "exact"
    ref_value, ref_seconds = results[ref_tool]
    for tool, (value, seconds) in results.items():
        if tool != ref_tool:
            print(
                f"{tool} vs {ref_tool}: speed {ref_seconds / seconds:.2f}× (best of "
                f"{args.repeat}), FID diff {100 * (value - ref_value) / ref_value:+.3f}%"
            )


if __name__ == "__main__":
    main()
