"""Where a `bench` command's resident memory peaks: the peak RSS per call chain.

`cost/peak_rss_mib` gives one number per run, the process's peak. This runs any `bench`
command in this process and, every --every seconds, reads the process's resident set size
(/proc/self/status, VmRSS) and the main thread's innermost frames of bench/ and models/
code; it prints the highest RSS seen under each call chain, highest first. Sampling misses
peaks shorter than the interval, so read the figures as lower bounds of each phase's peak.
It sees this process only: runs that `--jobs N` or Ray send to other processes are not
measured (use the default in-process executor).

    python benchmarks/memory_phases.py -- run --config configs/dogvae.yaml --models vae \\
        --set train.budget_flops=3e12 --out /tmp/mem-run

is how (as its first version) it found that SSIM over the 1000 held-out images at 128 px
held the process at 15.5 GiB (BENCHMARKS.md "Peak memory"). Linux only (/proc). Exit
status: the bench command's (2 for bad input, printed as one line).
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections import defaultdict

import click

from bench.cli import cli

OUR_CODE = ("bench", "models")


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmRSS line in /proc/self/status")


def call_chain(frame, depth: int) -> str:
    """The innermost ``depth`` frames of our code, innermost first, as module.function."""
    names = []
    while frame is not None and len(names) < depth:
        module = frame.f_globals.get("__name__", "")
        if module.split(".")[0] in OUR_CODE:
            names.append(f"{module.rpartition('.')[2]}.{frame.f_code.co_name}")
        frame = frame.f_back
    return " < ".join(names) or "(outside bench code)"


class Sampler:
    """Peak RSS per call chain of one thread, sampled from a daemon thread."""

    def __init__(self, thread_id: int, every: float, depth: int):
        self.thread_id, self.every, self.depth = thread_id, every, depth
        self.peaks: dict[str, int] = defaultdict(int)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every)

    def sample(self) -> None:
        chain = call_chain(sys._current_frames().get(self.thread_id), self.depth)
        self.peaks[chain] = max(self.peaks[chain], rss_bytes())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def parse_args(argv=None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--every", type=float, default=0.25, help="seconds between samples")
    parser.add_argument("--depth", type=int, default=4, help="frames of our code per chain")
    parser.add_argument("--top", type=int, default=25, help="chains printed")
    parser.add_argument("bench_args", nargs=argparse.REMAINDER, help="-- then a bench command")
    args = parser.parse_args(argv)
    bench_args = args.bench_args[1:] if args.bench_args[:1] == ["--"] else args.bench_args
    if not bench_args:
        parser.error("no bench command given; e.g. -- run --dataset synthetic --epochs 1")
    if not args.every > 0 or args.depth < 1 or args.top < 1:
        parser.error("--every must be > 0 seconds, --depth and --top >= 1")
    return args, bench_args


def main(argv=None) -> tuple[dict[str, int], int]:
    """Runs the command; returns (peak RSS per call chain, the command's exit status)."""
    args, bench_args = parse_args(argv)
    with Sampler(threading.get_ident(), args.every, args.depth) as sampler:
        try:
            returned = cli.main(bench_args, standalone_mode=False)  # ctx.exit(n) returns n
            status = returned if isinstance(returned, int) else 0
        except click.ClickException as e:  # BenchError included: one line, its exit status
            e.show()
            status = e.exit_code
        finally:
            sampler.sample()
    print(f"peak RSS per call chain (every {args.every} s; innermost frame first):")
    ranked = sorted(sampler.peaks.items(), key=lambda kv: -kv[1])
    for chain, peak in ranked[: args.top]:
        print(f"{peak / 2**30:8.2f} GiB  {chain}")
    return dict(ranked), status


if __name__ == "__main__":
    sys.exit(main()[1])
