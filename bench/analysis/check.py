"""`bench baseline` and `bench check`: a regression gate for people who change model code.

`bench baseline RESULTS --out baselines/NAME.json` stores, per model label and metric, the
final value of every seed, plus the settings that make two sweeps comparable (dataset, image
size, FID sample count, FID weights, epochs), package versions, commit and date.

`bench check RESULTS --baseline NAME.json` compares a finished sweep with it, model by model
and metric by metric. Exit status: 0 passed, 1 a metric got worse beyond its tolerance (or a
model / metric went missing, or runs diverged more often), 2 bad input or settings that make
the comparison meaningless (unless --force).

Verdicts (`change` is relative to the baseline mean, signed: + means the number went up):
  worse / better  the whole 95% confidence interval of the change lies beyond the tolerance
                  in the bad / good direction (one seed on a side: the point change does;
                  the verdict then says "single run")
  changed         two-sided metrics (kl_nats) only: beyond the tolerance in either direction
  unclear         the point change is beyond the tolerance but the interval reaches back
                  inside it: too few seeds / too much seed noise to tell. Does not fail.
  ok              within tolerance
  diverged        a larger fraction of seeds diverged (or gave NaN/inf) than in the baseline
  missing         in the baseline, not in the results
  new             model in the results only (reported, does not fail)
Fails the check: worse, changed, diverged, missing.
"""

from __future__ import annotations

import csv
import datetime
import json
import math
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from bench.analysis.stats import welch_interval as shared_welch_interval
from bench.core.errors import BenchError
from bench.core.io import read_json, write_json, write_text

LOWER, HIGHER, TWO_SIDED = "lower is better", "higher is better", "two-sided"

# Which way is better, per metric. kl_nats (VAE KL(q(z|x) || p(z)) in nats) has no better
# direction: lower can mean posterior collapse, higher a worse prior match / less
# regularisation. A shift beyond tolerance either way means the model behaves differently,
# so it is flagged "changed" and fails the gate (drop it with --metrics if that is intended).
DIRECTION: dict[str, str] = {
    "fid": LOWER,
    "final_fid": LOWER,
    "best_fid": LOWER,
    "kid_mean": LOWER,
    "recon_mse": LOWER,
    "psnr": HIGHER,
    "ssim": HIGHER,
    "precision": HIGHER,
    "recall": HIGHER,
    "density": HIGHER,
    "coverage": HIGHER,
    "kl_nats": TWO_SIDED,
}

# Default relative tolerances (0.10 = 10% worse allowed). A policy, not a formula: set to
# roughly the seed-to-seed spread these metrics show in small sweeps, so the gate catches
# real regressions rather than noise. psnr is in dB, so 1% (~0.25 dB at 25 dB) is already
# a ~6% change of recon_mse. KID from few samples is noisy, hence 20%.
DEFAULT_TOLERANCE: dict[str, float] = {
    "fid": 0.10,
    "final_fid": 0.10,
    "best_fid": 0.10,
    "kid_mean": 0.20,
    "recon_mse": 0.05,
    "psnr": 0.01,
    "ssim": 0.02,
    "precision": 0.10,
    "recall": 0.10,
    "density": 0.10,
    "coverage": 0.10,
    "kl_nats": 0.25,
}

CONFIDENCE = 0.95
FAILING = ("worse", "changed", "diverged", "missing")
COMPARED = ("ok", "better", "unclear", "worse", "changed", "diverged")

# A mismatch in these makes numbers incomparable: error (exit 2) unless --force.
BLOCKING_SETTINGS = ("dataset", "image_size", "fid_samples", "fid_split", "fid_weights")
# A mismatch in these is reported but allowed (e.g. a shorter CI budget on both sides).
ADVISORY_SETTINGS = ("epochs", "fid_exact")
# env.json / config eval keys that may hold the FID Inception weights' identity.
FID_WEIGHTS_KEYS = ("fid_weights_sha1", "fid_weights", "fid_weights_id", "inception_sha1")
COMMIT_KEYS = ("git_commit", "commit", "git_sha")
BASELINE_FORMAT = "dogbench-baseline"


# ---------------------------------------------------------------------------- reading runs


@dataclass
class Run:
    run_id: str
    model: str
    seed: int
    status: str  # "ok" | "diverged"
    config: dict
    env: dict
    final: dict[str, float]  # metric -> value at the run's last evaluation
    final_n: dict[str, int | None]  # metric -> samples behind that value


def _is_compared_metric(name: str) -> bool:
    """Eval and summary metrics; not per-epoch train losses nor bookkeeping like best_fid_epoch."""
    return not name.startswith("train/") and not name.endswith(("_epoch", "_step"))


def _int_or(text: str | None, default):
    return int(float(text)) if text not in (None, "") else default


def read_final_metrics(path: Path) -> tuple[dict[str, float], dict[str, int | None]]:
    """Last value of each eval metric in a metrics.csv (largest epoch, then step, then row).

    Summary rows (final_fid, best_fid) may have no epoch: they sort after everything.
    """
    last: dict[str, tuple[tuple, float, int | None]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"metric", "value", "epoch"} - set(reader.fieldnames or [])
        if missing:
            raise BenchError(
                f"{path}: no column {sorted(missing)[0]!r}; expected run, model, "
                "seed, epoch, step, metric, value, n"
            )
        for line, row in enumerate(reader, start=2):
            name = row["metric"]
            if not _is_compared_metric(name):
                continue
            try:
                key = (_int_or(row["epoch"], math.inf), _int_or(row.get("step"), math.inf), line)
                value, n = float(row["value"]), _int_or(row.get("n"), None)
            except (TypeError, ValueError):
                raise BenchError(f"{path} line {line}: unreadable number in {row}") from None
            if name not in last or key >= last[name][0]:
                last[name] = (key, value, n)
    return {k: v[1] for k, v in last.items()}, {k: v[2] for k, v in last.items()}


def _read_json_or_fail(path: Path) -> dict:
    try:
        obj = read_json(path)
    except (OSError, ValueError) as e:
        raise BenchError(f"{path}: cannot read JSON ({e})") from None
    if not isinstance(obj, dict):
        raise BenchError(f"{path}: expected a JSON object")
    return obj


def load_run(folder: Path) -> Run:
    config = _read_json_or_fail(folder / "config.json")
    if "model" not in config or not isinstance(config.get("seed"), int):
        raise BenchError(f"{folder / 'config.json'}: needs 'model' and an integer 'seed'")
    if not (folder / "status.json").is_file():
        raise BenchError(f"run {folder.name}: no status.json; is this a `bench run` output?")
    status = _read_json_or_fail(folder / "status.json").get("status")
    if status not in ("ok", "diverged"):
        raise BenchError(
            f"run {folder.name} has status {status!r}: check needs finished runs "
            "(ok or diverged); wait for the sweep or rerun the crashed run"
        )
    env = _read_json_or_fail(folder / "env.json") if (folder / "env.json").is_file() else {}
    final, final_n = {}, {}
    if (folder / "metrics.csv").is_file():
        final, final_n = read_final_metrics(folder / "metrics.csv")
    elif status == "ok":
        raise BenchError(f"run {folder.name}: status ok but no metrics.csv")
    return Run(
        folder.name, str(config["model"]), int(config["seed"]), status, config, env, final, final_n
    )


def load_runs(results: Path) -> list[Run]:
    """Every run folder (one with a config.json) directly under a `bench run` output folder."""
    results = Path(results)
    if not results.is_dir():
        raise BenchError(f"results folder {str(results)!r} not found")
    runs = [load_run(d) for d in sorted(results.iterdir()) if (d / "config.json").is_file()]
    if not runs:
        raise BenchError(
            f"no runs in {str(results)!r}: expected the --out folder of `bench run` "
            "(one sub-folder per run with config.json)"
        )
    return runs


# ----------------------------------------------------------------------- baseline contents


def _round(value: float) -> float | None:
    """6 significant digits keeps diffs small; NaN/inf become null (JSON has no NaN)."""
    return float(f"{value:.6g}") if math.isfinite(value) else None


def _find_key(obj, names: tuple[str, ...]):
    """First value under one of ``names`` in a nested dict (layouts of env.json vary)."""
    if not isinstance(obj, dict):
        return None
    for name in names:
        if obj.get(name) not in (None, ""):
            return obj[name]
    for value in obj.values():
        found = _find_key(value, names)
        if found is not None:
            return found
    return None


def _weights_id(run: Run):
    found = _find_key(run.env, FID_WEIGHTS_KEYS) or _find_key(
        run.config.get("eval"), FID_WEIGHTS_KEYS
    )
    if isinstance(found, dict):  # e.g. {"path": ..., "sha1": ...}: the hash identifies them
        found = found.get("sha1") or json.dumps(found, sort_keys=True)
    return found


def run_settings(run: Run) -> dict:
    """The settings that must match for two runs' metrics to be comparable."""
    data, train, ev = (run.config.get(k) or {} for k in ("data", "train", "eval"))
    fid_n = next((run.final_n[m] for m in ("fid", "final_fid") if run.final_n.get(m)), None)
    return {
        "dataset": data.get("dataset"),
        "image_size": data.get("image_size"),
        "fid_samples": fid_n if fid_n is not None else ev.get("fid_samples"),
        "fid_split": ev.get("fid_split"),
        "fid_weights": _weights_id(run),
        "fid_exact": ev.get("fid_exact"),
        "epochs": train.get("epochs"),
    }


def _model_settings(label: str, runs: list[Run]) -> dict:
    usable = [r for r in runs if r.status == "ok"] or runs
    settings: dict = {}
    for r in usable:
        for key, value in run_settings(r).items():
            if key in settings and settings[key] != value:
                raise BenchError(
                    f"runs of {label} disagree on {key}: {settings[key]!r} vs "
                    f"{value!r} ({r.run_id}); one sweep must share its settings"
                )
            settings[key] = value
    return settings


def _commit(env: dict) -> str | None:
    commit = _find_key(env, COMMIT_KEYS)
    if commit is None:
        return None
    return f"{commit}+dirty" if _find_key(env, ("dirty", "git_dirty")) is True else str(commit)


def _packages(env: dict) -> dict:
    for key in ("packages", "versions"):
        if isinstance(env.get(key), dict):
            return {k: str(v) for k, v in env[key].items()}
    return {}


def make_baseline(runs: list[Run], created: str | None = None) -> dict:
    """The baseline document: per model, settings and final value of each metric per seed."""
    models: dict[str, dict] = {}
    for label in sorted({r.model for r in runs}):
        group = sorted((r for r in runs if r.model == label), key=lambda r: r.seed)
        seeds = [r.seed for r in group]
        if len(set(seeds)) != len(seeds):
            raise BenchError(f"model {label} has two runs with the same seed in one results folder")
        metrics: dict[str, dict] = {}
        for r in group:
            if r.status == "ok":  # a diverged run's numbers are not a model's quality
                for name, value in r.final.items():
                    metrics.setdefault(name, {})[str(r.seed)] = _round(value)
        models[label] = {
            "seeds": seeds,
            "diverged_seeds": [r.seed for r in group if r.status == "diverged"],
            "settings": _model_settings(label, group),
            "metrics": metrics,
        }
    commits = sorted({c for c in (_commit(r.env) for r in runs) if c})
    packages: dict = {}
    for r in runs:
        packages.update(_packages(r.env))
    return {
        "format": BASELINE_FORMAT,
        "version": 1,
        "created": created
        or datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": commits[0] if len(commits) == 1 else (commits or None),
        "packages": packages,
        "models": models,
    }


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def read_baseline(path: str | Path) -> dict:
    """Load and validate a file written by `bench baseline`; BenchError (exit 2) otherwise."""
    path = Path(path)
    hint = "expected a file written by `bench baseline`"
    if not path.is_file():
        raise BenchError(f"baseline file {str(path)!r} not found")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BenchError(f"baseline {str(path)!r} is not valid JSON ({e}); {hint}") from None
    if not isinstance(doc, dict) or doc.get("format") != BASELINE_FORMAT:
        raise BenchError(f"baseline {str(path)!r} has no format={BASELINE_FORMAT!r}; {hint}")
    models = doc.get("models")
    if not isinstance(models, dict) or not models:
        raise BenchError(f"baseline {str(path)!r} has no models; {hint}")
    for label, m in models.items():
        ok = (
            isinstance(m, dict)
            and isinstance(m.get("metrics"), dict)
            and isinstance(m.get("settings"), dict)
            and isinstance(m.get("seeds"), list)
            and isinstance(m.get("diverged_seeds"), list)
            and all(
                isinstance(v, dict) and all(x is None or _is_number(x) for x in v.values())
                for v in m["metrics"].values()
            )
        )
        if not ok:
            raise BenchError(
                f"baseline {str(path)!r}: model {label!r} is malformed "
                f"(needs seeds, diverged_seeds, settings, metrics); {hint}"
            )
    return doc


# ------------------------------------------------------------------------------ statistics


def welch_interval(base: list[float], now: list[float], confidence: float = CONFIDENCE):
    """(difference, low, high): interval of mean(now) - mean(base) (bench.analysis.stats)."""
    return shared_welch_interval(now, base, confidence)


def _relative(delta: float, scale: float) -> float:
    if scale != 0:
        return delta / abs(scale)
    return 0.0 if delta == 0 else math.copysign(math.inf, delta)


@dataclass
class Comparison:
    model: str
    metric: str
    verdict: str
    base: list[float]  # finite final values, one per seed
    now: list[float]
    change: float | None = None  # relative change of the mean, + = went up
    interval: tuple[float, float] | None = None  # 95% CI of the relative change
    tolerance: float | None = None
    note: str = ""

    @property
    def failed(self) -> bool:
        return self.verdict in FAILING


def _verdict(direction: str, point: float, low: float, high: float, tolerance: float) -> str:
    """Apply the tolerance to the interval [low, high] of the relative change."""
    if direction == TWO_SIDED:
        if low > tolerance or high < -tolerance:
            return "changed"
        return "unclear" if abs(point) > tolerance else "ok"
    sign = 1.0 if direction == LOWER else -1.0  # badness = sign * change
    bad_low, bad_high = sorted((sign * low, sign * high))
    if bad_low > tolerance:
        return "worse"
    if bad_high < -tolerance:
        return "better"
    return "unclear" if sign * point > tolerance else "ok"


def compare_metric(
    model: str,
    metric: str,
    base: list,
    base_diverged: int,
    now: list,
    now_diverged: int,
    tolerance: float,
) -> Comparison:
    """Compare one metric of one model; ``base``/``now`` hold one value per seed (None = NaN)."""
    base_ok = [v for v in base if v is not None]
    now_ok = [v for v in now if v is not None]
    base_failed = base_diverged + len(base) - len(base_ok)
    now_failed = now_diverged + len(now) - len(now_ok)
    row = Comparison(model, metric, "ok", base_ok, now_ok, tolerance=tolerance)
    if not now_ok and not now_failed:
        row.verdict, row.note = "missing", "not in results"
        return row
    base_rate = base_failed / max(1, len(base) + base_diverged)
    if now_failed / (len(now) + now_diverged) > base_rate:
        row.verdict = "diverged"
        row.note = (
            f"{now_failed} of {len(now) + now_diverged} seeds; "
            f"baseline {base_failed} of {len(base) + base_diverged}"
        )
        return row
    if not base_ok or not now_ok:
        row.verdict = "better" if now_ok else "ok"
        row.note = "no finite baseline values" if now_ok else "diverged on both sides"
        return row
    scale = float(np.mean(base_ok))
    if min(len(base_ok), len(now_ok)) < 2:  # no spread on one side: point values only
        point = _relative(float(np.mean(now_ok)) - scale, scale)
        row.change, row.note = point, "single run"
        row.verdict = _verdict(DIRECTION[metric], point, point, point, tolerance)
        return row
    diff, low, high = welch_interval(base_ok, now_ok)
    # The baseline mean is taken as a fixed scale for the relative interval; its own
    # uncertainty is already inside the interval of the difference.
    row.change = _relative(diff, scale)
    row.interval = (_relative(low, scale), _relative(high, scale))
    row.verdict = _verdict(DIRECTION[metric], row.change, *row.interval, tolerance)
    if row.verdict == "unclear":
        row.note = "too few seeds / too noisy to tell"
    return row


# ---------------------------------------------------------------------- comparing sweeps


def _metric_order(names) -> list[str]:
    known = [m for m in DIRECTION if m in names]
    return known + sorted(m for m in names if m not in DIRECTION)


def parse_metrics(text: str | None, baseline: dict) -> list[str]:
    """--metrics fid,recon_mse -> those names; default: every baseline metric with a direction."""
    in_baseline = {m for model in baseline["models"].values() for m in model["metrics"]}
    if not text:
        return [m for m in _metric_order(in_baseline) if m in DIRECTION]
    names = [m.strip() for m in text.split(",") if m.strip()]
    for name in names:
        if name not in DIRECTION:
            raise BenchError(
                f"--metrics: no direction known for {name!r}; accepted: {', '.join(DIRECTION)}"
            )
        if name not in in_baseline:
            raise BenchError(
                f"--metrics: {name!r} is not in the baseline; "
                f"it has: {', '.join(_metric_order(in_baseline))}"
            )
    return names


def _parse_fraction(text: str, where: str) -> float:
    text = text.strip()
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise BenchError(f"{where}: {text!r} is not a tolerance; use a fraction like 0.1 or 10%")
    return value


def parse_tolerances(text: str | None) -> dict[str, float]:
    """'0.1' sets every metric; 'fid=0.1,recon_mse=5%' overrides some; unset keep defaults."""
    tolerances = dict(DEFAULT_TOLERANCE)
    parts = [p for p in (text or "").split(",") if p.strip()]
    for part in (p for p in parts if "=" not in p):
        tolerances = dict.fromkeys(tolerances, _parse_fraction(part, "--tolerance"))
    for part in (p for p in parts if "=" in p):
        name, value = (s.strip() for s in part.split("=", 1))
        if name not in DIRECTION:
            raise BenchError(
                f"--tolerance: unknown metric {name!r}; accepted: {', '.join(DIRECTION)}"
            )
        tolerances[name] = _parse_fraction(value, f"--tolerance {name}")
    return tolerances


def check_settings(baseline: dict, current: dict, force: bool = False) -> list[str]:
    """Warnings for differing settings; BenchError when a blocking one differs and not force."""
    blocking, warnings = [], []
    for label in sorted(set(baseline["models"]) & set(current["models"])):
        old = baseline["models"][label]["settings"]
        new = current["models"][label]["settings"]
        for key in BLOCKING_SETTINGS + ADVISORY_SETTINGS:
            a, b = old.get(key), new.get(key)
            if a is None or b is None or a == b:
                continue
            text = f"{label}: {key} differs (baseline {a!r}, now {b!r})"
            (blocking if key in BLOCKING_SETTINGS else warnings).append(text)
    unknown = sorted(
        {
            key
            for label in set(baseline["models"]) & set(current["models"])
            for key in BLOCKING_SETTINGS
            for side in (baseline, current)
            if side["models"][label]["settings"].get(key) is None
        }
    )
    if unknown:
        warnings.append(
            f"not recorded in baseline or results, so not verified: {', '.join(unknown)}"
        )
    if blocking and not force:
        more = f" (+{len(blocking) - 1} more)" if len(blocking) > 1 else ""
        raise BenchError(
            f"settings differ, the comparison would be meaningless: {blocking[0]}"
            f"{more}; rerun with the baseline's settings, make a new baseline, "
            "or pass --force"
        )
    loud = [f"WARNING: --force: {b}: these numbers are NOT comparable" for b in blocking]
    return loud + [f"warning: {w}" for w in warnings]


def compare(
    baseline: dict, current: dict, metrics: list[str], tolerances: dict[str, float]
) -> list[Comparison]:
    """One Comparison per baseline model and metric, plus 'new' rows for extra models."""
    rows = []
    for label in sorted(baseline["models"]):
        old = baseline["models"][label]
        new = current["models"].get(label)
        if new is None:
            rows.append(Comparison(label, "-", "missing", [], [], note="model not in results"))
            continue
        for metric in (m for m in metrics if m in old["metrics"]):
            rows.append(
                compare_metric(
                    label,
                    metric,
                    list(old["metrics"][metric].values()),
                    len(old["diverged_seeds"]),
                    list(new["metrics"].get(metric, {}).values()),
                    len(new["diverged_seeds"]),
                    tolerances[metric],
                )
            )
    for label in sorted(set(current["models"]) - set(baseline["models"])):
        rows.append(Comparison(label, "-", "new", [], [], note="not in baseline"))
    return rows


# ------------------------------------------------------------------------------- reporting

HEADER = ("model", "metric", "baseline", "now", "change", "95% CI", "tolerance", "verdict")


def _describe(values: list[float]) -> str:
    """'41.2 (1)' or mean ± sample sd and the number of seeds: '41.2±1.3 (5)'."""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.4g} (1)"
    return f"{np.mean(values):.4g}±{np.std(values, ddof=1):.2g} ({len(values)})"


def _percent(x: float) -> str:
    return f"{x * 100:+.1f}%"


def table_cells(row: Comparison) -> tuple[str, ...]:
    interval = row.interval
    return (
        row.model,
        row.metric,
        _describe(row.base),
        _describe(row.now),
        _percent(row.change) if row.change is not None else "",
        f"[{_percent(interval[0])}, {_percent(interval[1])}]" if interval else "",
        f"{row.tolerance * 100:g}%" if row.tolerance is not None else "",
        f"{row.verdict} ({row.note})" if row.note else row.verdict,
    )


def format_table(rows: list[Comparison]) -> str:
    cells = [HEADER] + [table_cells(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in cells)
    return "\n".join(line.rstrip() for line in lines)


def format_markdown(rows: list[Comparison], notes: list[str], summary: str) -> str:
    def line(cells) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out = ["### bench check", ""] + [f"- {n}" for n in notes] + ([""] if notes else [])
    out += [line(HEADER), line(["---"] * len(HEADER))] + [line(table_cells(r)) for r in rows]
    return "\n".join(out + ["", f"**{summary}**", ""])


def _failure_text(row: Comparison) -> str:
    where = row.model if row.metric == "-" else f"{row.model}/{row.metric}"
    if row.verdict == "missing":
        return f"{where} missing from results"
    if row.verdict == "diverged":
        return f"{where} diverged in {row.note}"
    how = "worse" if row.verdict == "worse" else "changed"
    size = f"{abs(row.change) * 100:.1f}%" if row.verdict == "worse" else _percent(row.change)
    interval = (
        f"95% CI {_percent(row.interval[0])}..{_percent(row.interval[1])}, "
        if row.interval
        else "single runs, "
    )
    return f"{where} {how} by {size} ({interval}tolerance {row.tolerance * 100:g}%)"


def summary_line(rows: list[Comparison]) -> str:
    failed = [r for r in rows if r.failed]
    if not failed:
        return f"check: PASSED ({sum(r.verdict in COMPARED for r in rows)} compared)"
    more = f"; and {len(failed) - 1} more failing" if len(failed) > 1 else ""
    return f"check: FAILED: {_failure_text(failed[0])}{more}"


def _provenance(doc: dict, name: str, with_date: bool) -> str:
    torch = doc.get("packages", {}).get("torch")
    parts = [f"commit {doc.get('commit') or 'unknown'}"]
    parts += [f"created {doc.get('created', '?')}"] if with_date else []
    return f"{name}: " + ", ".join(parts + ([f"torch {torch}"] if torch else []))


def package_notes(baseline: dict, current: dict) -> list[str]:
    """Version changes can explain metric changes: list them."""
    old, new = baseline.get("packages", {}), current.get("packages", {})
    return [
        f"note: {k} {old[k]} -> {new[k]}" for k in sorted(set(old) & set(new)) if old[k] != new[k]
    ]


# ------------------------------------------------------------------------------- commands


@click.command("baseline")
@click.argument("results", type=click.Path(path_type=Path))
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Baseline file to write, e.g. baselines/cifar-32.json (commit it).",
)
def baseline_command(results: Path, out: Path) -> None:
    """Store a finished sweep's final metrics per model and seed as a baseline for `check`."""
    runs = load_runs(results)
    doc = make_baseline(runs)
    write_json(out, doc)
    diverged = sum(r.status == "diverged" for r in runs)
    click.echo(
        f"baseline: {len(doc['models'])} models, {len(runs)} runs ({diverged} diverged) -> {out}"
    )


@click.command("check")
@click.argument("results", type=click.Path(path_type=Path))
@click.option(
    "--baseline",
    "baseline_path",
    required=True,
    type=click.Path(path_type=Path),
    help="File written by `bench baseline`.",
)
@click.option(
    "--metrics",
    default=None,
    help="Comma list, e.g. fid,recon_mse,kl_nats (default: all in the baseline).",
)
@click.option(
    "--tolerance",
    default=None,
    help="Relative: 0.1 for all metrics, or fid=0.1,recon_mse=5% (others default). Defaults: "
    + ", ".join(f"{k} {v * 100:g}%" for k, v in DEFAULT_TOLERANCE.items())
    + ".",
)
@click.option(
    "--force",
    is_flag=True,
    help="Compare even if dataset / image size / FID samples / weights differ.",
)
@click.option(
    "--markdown",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the report as markdown (e.g. $GITHUB_STEP_SUMMARY; overwritten).",
)
@click.pass_context
def check_command(
    ctx: click.Context,
    results: Path,
    baseline_path: Path,
    metrics: str | None,
    tolerance: str | None,
    force: bool,
    markdown: Path | None,
) -> None:
    """Compare a finished sweep with a baseline; exit 1 if a metric got worse beyond tolerance.

    Tolerances are relative (0.1 = 10% worse allowed). With 2+ seeds on both sides the verdict
    uses the 95% Welch interval of the change: "worse" only if all of it is beyond the
    tolerance. kl_nats is two-sided: a change beyond tolerance either way fails ("changed").
    Missing models/metrics and more frequent divergence fail too. Exit 2: bad input.
    """
    baseline = read_baseline(baseline_path)
    current = make_baseline(load_runs(results))
    names = parse_metrics(metrics, baseline)
    tolerances = parse_tolerances(tolerance)
    notes = check_settings(baseline, current, force) + package_notes(baseline, current)
    rows = compare(baseline, current, names, tolerances)
    summary = summary_line(rows)
    lines = [
        _provenance(baseline, f"baseline {baseline_path}", True),
        _provenance(current, f"results {results}", False),
        *notes,
        "",
        format_table(rows),
        "",
        summary,
    ]
    click.echo("\n".join(lines))
    if markdown is not None:
        write_text(markdown, format_markdown(rows, notes, summary))
    ctx.exit(1 if any(r.failed for r in rows) else 0)
