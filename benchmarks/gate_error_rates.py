"""Error rates of the `bench check` gate, measured rather than assumed.

    python benchmarks/gate_error_rates.py results/smoke5 \\
        --variant quarter=results/smoke5-quarter-epochs \\
        --variant vae_beta0=results/smoke5-vae-beta0 \\
        --variant gan_lr_g=results/smoke5-gan-lr-g

False fails: from a sweep of >= 5 finished seeds per model (RESULTS_DIR), every seed is
checked against a baseline of the other seeds (leave-one-out), exactly as `bench check`
would check a one-seed CI run against a committed baseline, but in memory through the same
functions (bench.analysis.check: make_baseline, parse_metrics, parse_tolerances,
check_settings, compare). Any failing verdict there is a false fail: the code did not
change. Printed per gated metric and overall; target <= 5%.

Caught regressions: each --variant NAME=DIR is a folder of runs made deliberately worse (a
quarter of the epochs; a VAE trained with beta=0; a GAN with `gan:lr_g=2e-5`) and is checked
against the baseline of all seeds of RESULTS_DIR, restricted to the models the variant has
(otherwise the others would be "missing" and every variant trivially caught). Printed: the
failing metrics that caught it, or "NOT caught"; target: every variant caught.

Relabelling: a variant's model label that is not in the baseline (`vae:beta=0`,
`gan:lr_g=2e-5`) is reported under its model name (`vae`, `gan`), as a silently broken
change would be. The script copies the variant's run folders to a temporary folder and
rewrites `model` (and the run id) in config.json and metrics.csv there; DIR is not touched.

Exit status: 0 when both targets are met, 1 otherwise, 2 for bad input.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pandas as pd

from bench.analysis import check
from bench.core.errors import BenchError
from bench.core.layout import CONFIG_FILE, METRICS_FILE, Status, run_id
from bench.results import table as rt

MIN_SEEDS = 5
TARGET_FALSE_FAIL = 0.05


def gate(baseline: dict, runs: list[check.RunValues]) -> list[check.Comparison]:
    """The comparison rows `bench check` would print for ``runs`` against ``baseline``."""
    current = check.make_baseline(runs, created="-")
    names = check.parse_metrics(None, baseline)
    check.check_settings(baseline, current)  # refuses incomparable settings, as check does
    return check.compare(baseline, current, names, check.parse_tolerances(None, names))


def seeds_per_model(runs: list[check.RunValues]) -> dict[str, list[int]]:
    seeds: dict[str, list[int]] = {}
    for r in runs:
        if r.status == Status.OK:
            seeds.setdefault(r.label, []).append(r.seed)
    short = {m: len(s) for m, s in seeds.items() if len(s) < MIN_SEEDS}
    if not seeds or short:
        model, n = next(iter(short.items()), ("any model", 0))
        raise BenchError(
            f"leave-one-out needs >= {MIN_SEEDS} finished seeds per model; {model} has {n}"
        )
    return seeds


def leave_one_out(runs: list[check.RunValues]) -> tuple[Counter, Counter]:
    """(checks, false fails) per metric over every seed against the others."""
    checks, fails = Counter(), Counter()
    for seed in sorted({s for ss in seeds_per_model(runs).values() for s in ss}):
        held_out = [r for r in runs if r.seed == seed]
        base = _only(
            check.make_baseline([r for r in runs if r.seed != seed], created="-"), held_out
        )
        for row in gate(base, held_out):
            checks[row.metric] += 1
            fails[row.metric] += row.failed
    return checks, fails


def _only(baseline: dict, runs: list[check.RunValues]) -> dict:
    """The baseline restricted to the models of ``runs`` (others would be "missing")."""
    labels = {r.label for r in runs}
    return {**baseline, "models": {k: v for k, v in baseline["models"].items() if k in labels}}


def relabel(source: Path, dest: Path, known: set[str]) -> None:
    """Copy the run folders under ``source`` to ``dest``, renaming a model label that the
    baseline does not know to its model name (the part before ':')."""
    for run_dir in rt.find_run_dirs(source):
        config = rt.read_run_json(run_dir, CONFIG_FILE)
        model = str(config.get("model", ""))
        new = model if model in known else model.partition(":")[0]
        rid = run_id(new, config.get("seed")) if new != model else run_dir.name
        target = dest / rid
        shutil.copytree(run_dir, target)
        if new == model:
            continue
        (target / CONFIG_FILE).write_text(json.dumps({**config, "model": new, "run": rid}))
        if (target / METRICS_FILE).is_file():
            metrics = pd.read_csv(target / METRICS_FILE)
            metrics["model"], metrics["run"] = new, rid
            metrics.to_csv(target / METRICS_FILE, index=False)


def caught_by(baseline: dict, name: str, folder: Path) -> list[check.Comparison]:
    """The failing rows of one variant folder against ``baseline``."""
    with tempfile.TemporaryDirectory() as tmp:
        relabel(folder, Path(tmp), set(baseline["models"]))
        runs, _ = check.load_results(Path(tmp))
    if not runs:
        raise BenchError(f"--variant {name}: no finished runs under {folder}")
    return [r for r in gate(_only(baseline, runs), runs) if r.failed and r.metric != "-"]


def _describe(row: check.Comparison) -> str:
    change = f" {row.change * 100:+.1f}%" if row.change is not None else ""
    return f"{row.model}/{row.metric} {row.verdict}{change}"


def report_false_fails(checks: Counter, fails: Counter) -> bool:
    print(f"{'metric':<14} {'false fails':>11} {'checks':>7} {'rate':>7}")
    for metric in check._metric_order(checks):
        rate = fails[metric] / checks[metric]
        print(f"{metric:<14} {fails[metric]:>11} {checks[metric]:>7} {rate:>7.1%}")
    total, failed = sum(checks.values()), sum(fails.values())
    rate = failed / total if total else 0.0
    met = rate <= TARGET_FALSE_FAIL
    print(
        f"false fails: {failed} of {total} checks ({rate:.1%}; target <= "
        f"{TARGET_FALSE_FAIL:.0%}: {'met' if met else 'NOT met'})"
    )
    return met


def report_variants(runs: list[check.RunValues], variants: list[tuple[str, Path]]) -> bool:
    baseline = check.make_baseline(runs, created="-")
    caught = 0
    for name, folder in variants:
        rows = caught_by(baseline, name, folder)
        caught += bool(rows)
        found = ", ".join(_describe(r) for r in rows) if rows else "NOT caught"
        print(f"variant {name}: {found}")
    if variants:
        print(f"variants caught: {caught} of {len(variants)} (target: every one)")
    return caught == len(variants)


def parse_variant(text: str) -> tuple[str, Path]:
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise BenchError(f"--variant {text!r}: expected NAME=DIR, e.g. quarter=results/q")
    if not Path(folder).is_dir():
        raise BenchError(f"--variant {name}: folder {folder} not found")
    return name, Path(folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help=f"sweep with >= {MIN_SEEDS} seeds per model")
    parser.add_argument("--variant", action="append", default=[], help="NAME=DIR (repeatable)")
    args = parser.parse_args(argv)
    try:
        variants = [parse_variant(v) for v in args.variant]
        runs, note = check.load_results(args.results)
        if note:
            print(note)
        print(f"leave-one-out over {args.results}:")
        ok = report_false_fails(*leave_one_out(runs))
        ok = report_variants(runs, variants) and ok
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
