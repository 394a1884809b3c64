"""How much of a tracked convergence verdict is noise, per run, from its own tracked points.

A run's verdict (bench.results.table.tracked_stability) fits a least-squares line through the
tracked FIDs of the last quarter of its training and calls it converged when the fitted
change is under CONVERGENCE_TOLERANCE (5%) of the run's final FID. This prints, for every run
with tracked points in the given results folders, that change with its standard error and
the points' scatter around the line (both relative to the final FID), and how many standard
errors the change and the tolerance are. A verdict is trustworthy where the tolerance is many
standard errors wide and the change is either well inside it or well outside it.

The 5% was set on CIFAR-10 dogs at 32 px (BENCHMARKS.md, "The tracked verdict's scale");
run it on other data to see whether it holds there:

    python benchmarks/verdict_noise.py results/reference/standard-flops results/reference/dogs64

Exit status: 0, or 2 for a folder without runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from bench.core.errors import BenchError
from bench.results import table as rt

HEADER = (
    "run",
    "last tracked FID",
    "final FID",
    "change (FID)",
    "change / final",
    "residual sd",
    "SE",
    "|change| / SE",
    "tolerance / SE",
    "FID verdict",
)


def noise_rows(results_dir: str) -> list[tuple]:
    """One row (HEADER) per run of results_dir with a last-quarter fit."""
    _, metrics = rt.load_runs(results_dir)
    final = rt.final_metrics(metrics).set_index("run")[rt.FINAL_FID]
    rows = []
    for run, r in rt.tracked_stability(metrics, final_fid=final).iterrows():
        scale = rt.verdict_scale(final.get(run, np.nan))
        if scale is None or not np.isfinite(r["track_change"]):
            continue  # no final FID yet or too few points: no verdict on the final scale
        change, se = r["track_change"], r["track_change_se"]
        # an exact line gives an SE of rounding size (~1e-15), not 0: no ratio then
        exact = se <= 1e-9 * max(abs(change), rt.CONVERGENCE_TOLERANCE)
        rows.append(
            (
                f"{Path(results_dir).resolve().name}/{run}",
                f"{r['track_final_fid']:.1f}",
                f"{scale:.1f}",
                f"{change * scale:+.1f}",
                f"{change:+.1%}",
                f"{r['track_residual_sd']:.1%}",
                f"{se:.1%}",
                "—" if exact else f"{abs(change) / se:.1f}",
                "—" if exact else f"{rt.CONVERGENCE_TOLERANCE / se:.1f}",
                rt.change_verdict(change),  # the FID's own (tracked_verdict may add recon)
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", help="results folders (bench run --out)")
    args = parser.parse_args(argv)
    try:
        rows = [row for d in args.results for row in noise_rows(d)]
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
