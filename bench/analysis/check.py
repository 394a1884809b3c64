"""`bench baseline` and `bench check`: a regression gate for people who change model code.

`bench baseline RESULTS --out baselines/NAME.json` stores, per model label and metric, the
final value of every seed (the baseline is a distribution: record >= 3 seeds; it says so
when a model has fewer), plus the settings that make two sweeps comparable (dataset, image
size, FID sample count, FID weights' sha1, feature numerics, epochs), the machine (device,
CPU/GPU model, threads), package versions, commit and date. Never the cost/* rows: timings
measure the machine, not the model code.

`bench check RESULTS --baseline NAME.json` compares a finished sweep with it, model by model
and metric by metric. RESULTS is read by bench.results.table like `bench report` reads it (a
sweep folder or a parent of sweeps); unfinished runs are left out with a note, so a model
with no finished run is "missing". Exit status: 0 passed, 1 a metric got worse beyond its
tolerance (or a model / metric went missing, or runs diverged more often), 2 bad input or
settings that make the comparison meaningless (unless --force; another CPU/GPU model only
warns).

How a metric is compared depends on the seeds on each side:
  baseline >= 2 seeds, one new run: the new value against the 95% prediction interval for
      one new run of the baseline seeds (mean ± t·s·√(1 + 1/n)), widened on each side by
      tolerance × |baseline mean|; the table shows that range as "accept [lo, hi]".
  >= 2 seeds on both sides: the 95% Welch interval of the relative change of the means
      against ±tolerance; the table shows it as "[a%, b%]".
  baseline of one seed: no noise model at all, so the point change against the tolerance
      alone (note "single-run baseline"). Decided: this fails beyond the tolerance rather
      than saying "unclear", so an old one-seed baseline keeps gating (strictly, with more
      false fails); `bench baseline` warns when it writes one.

Verdicts (`change` is relative to the baseline mean, signed: + means the number went up):
  worse / better  beyond the interval / tolerance in the bad / good direction
  changed         two-sided metrics (kl_nats) only: beyond it in either direction
  unclear         several seeds on both sides, the point change beyond the tolerance but the
                  interval reaches back inside it: too few seeds / too much seed noise to
                  tell. Does not fail. (A single new run is never "unclear": the prediction
                  interval already holds the seed noise.)
  ok              within tolerance
  diverged        a larger fraction of seeds diverged (or gave NaN/inf) than in the baseline
  missing         in the baseline, not in the results
  new             model in the results only (reported, does not fail)
Fails the check: worse, changed, diverged, missing.
"""

from __future__ import annotations

import datetime
import json
import math
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import pandas as pd

from bench.analysis.markdown import md_table
from bench.analysis.stats import CONFIDENCE, prediction_interval, welch_interval
from bench.core.errors import BenchError
from bench.core.io import check_writable_file, write_json, write_text
from bench.core.layout import (
    CONFIG_FILE,
    COST_PREFIX,
    ENV_FILE,
    FINAL_FID,
    FINISHED,
    TRAIN_PREFIX,
    Status,
)
from bench.metrics import registry
from bench.results import table as rt

# Verdict semantics per registered direction; kl_nats is two-sided: a shift beyond tolerance
# either way fails as "changed" (drop it with --metrics if that is intended).
LOWER, HIGHER, TWO_SIDED = registry.LOWER, registry.HIGHER, registry.TWO_SIDED

FAILING = ("worse", "changed", "diverged", "missing")
COMPARED = ("ok", "better", "unclear", "worse", "changed", "diverged")

# A mismatch in these makes numbers incomparable: error (exit 2) unless --force.
BLOCKING_SETTINGS = (
    "dataset",
    "image_size",
    "fid_samples",
    "fid_split",
    "fid_weights",
    "fid_numerics",
)
# A mismatch in these is reported but allowed (e.g. a shorter CI budget on both sides).
ADVISORY_SETTINGS = ("epochs", "fid_exact")
# The machine: another CPU/GPU model shifts numbers slightly (kernels, rounding), so a
# mismatch is a warning, not a refusal. Stored per model as "machine", not "settings":
# runs of one sweep may legitimately differ here (workers on several hosts).
MACHINE_KEYS = ("device", "device_name", "cpu_name", "threads")
WARN_MACHINE = ("device_name", "cpu_name")
# env.json / config eval keys that may hold the FID Inception weights' identity.
FID_WEIGHTS_KEYS = ("fid_weights_sha1", "fid_weights", "fid_weights_id", "inception_sha1")
COMMIT_KEYS = ("git_commit", "commit", "git_sha")
BASELINE_FORMAT = "dogbench-baseline"
# t_{0.975, n-1} is 12.7 at n=2 and 4.3 at n=3: below 3 seeds the interval is barely a gate.
MIN_BASELINE_SEEDS = 3


# ---------------------------------------------------------------------------- reading runs


@dataclass
class RunValues:
    """One finished run as the gate sees it (read by bench.results.table, like the report)."""

    run: str  # folder, relative to the results folder
    label: str  # model label (table's label: data settings / folder added where they differ)
    seed: int
    status: str  # Status.OK or Status.DIVERGED: unfinished runs never get here
    config: dict
    env: dict
    final: dict[str, float]  # compared metric -> final value (rt.final_values)
    final_n: dict[str, int | None]  # metric -> samples behind that value


def is_compared_metric(name: str) -> bool:
    """Eval and summary metrics; not train losses, not bookkeeping like best_fid_epoch, and
    never cost/*: timings depend on the machine, not on the model code."""
    return not name.startswith((TRAIN_PREFIX, COST_PREFIX)) and not name.endswith(
        ("_epoch", "_step")
    )


def _count(value) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def finished_runs(runs_df: pd.DataFrame, metrics_df: pd.DataFrame) -> list[RunValues]:
    """The finished runs of a results folder with their compared final values."""
    finals, counts = rt.final_values(metrics_df), rt.final_counts(metrics_df)
    out = []
    for r in runs_df[runs_df["status"].isin(FINISHED)].itertuples():
        config = rt.read_run_json(Path(r.path), CONFIG_FILE)
        if "model" not in config or not isinstance(config.get("seed"), int):
            raise BenchError(f"{Path(r.path) / CONFIG_FILE}: needs 'model' and an integer 'seed'")
        final = {k: v for k, v in finals.get(r.run, {}).items() if is_compared_metric(k)}
        n = counts.loc[r.run] if r.run in counts.index else {}
        final_n = {k: _count(n.get(k)) for k in final}
        env = rt.read_run_json(Path(r.path), ENV_FILE)
        out.append(RunValues(r.run, r.label, int(r.seed), r.status, config, env, final, final_n))
    return out


def load_results(results: Path) -> tuple[list[RunValues], str | None]:
    """(finished runs, note naming the unfinished ones or None) of a results folder: a sweep
    folder or a parent of sweeps, found and read as `bench report` finds and reads them."""
    runs_df, metrics_df = rt.load_runs(results)
    note = rt.unfinished_note(runs_df)
    return finished_runs(runs_df, metrics_df), (f"note: {note}; not compared" if note else None)


# ----------------------------------------------------------------------- baseline contents


def _round(value: float) -> float | None:
    """6 significant digits keeps diffs small; NaN/inf become null (JSON has no NaN)."""
    return float(f"{value:.6g}") if math.isfinite(value) else None


def _weights_id(run: RunValues):
    found = rt.find_key(run.env, FID_WEIGHTS_KEYS) or rt.find_key(
        run.config.get("eval"), FID_WEIGHTS_KEYS
    )
    if isinstance(found, dict):  # e.g. {"path": ..., "sha1": ...}: the hash identifies them
        found = found.get("sha1") or json.dumps(found, sort_keys=True)
    return found


def run_settings(run: RunValues) -> dict:
    """The settings that must match for two runs' metrics to be comparable."""
    data, train, ev = (run.config.get(k) or {} for k in ("data", "train", "eval"))
    fid_n = next((run.final_n[m] for m in ("fid", FINAL_FID) if run.final_n.get(m)), None)
    return {
        "dataset": data.get("dataset"),
        "image_size": data.get("image_size"),
        "fid_samples": fid_n if fid_n is not None else ev.get("fid_samples"),
        "fid_split": ev.get("fid_split"),
        "fid_weights": _weights_id(run),
        "fid_numerics": rt.run_provenance(run.env)["fid_numerics"],
        "fid_exact": ev.get("fid_exact"),
        "epochs": train.get("epochs"),
    }


def _model_settings(label: str, runs: list[RunValues]) -> dict:
    usable = [r for r in runs if r.status == Status.OK] or runs
    settings: dict = {}
    for r in usable:
        for key, value in run_settings(r).items():
            if key in settings and settings[key] != value:
                raise BenchError(
                    f"runs of {label} disagree on {key}: {settings[key]!r} vs "
                    f"{value!r} ({r.run}); one sweep must share its settings"
                )
            settings[key] = value
    return settings


def _machine(runs: list[RunValues]) -> dict:
    """MACHINE_KEYS over a model's runs: the value, or a sorted list when runs differ."""
    out = {}
    for key in MACHINE_KEYS:
        values = {rt.run_provenance(r.env)[key] for r in runs} - {None}
        out[key] = values.pop() if len(values) == 1 else (sorted(map(str, values)) or None)
    return out


def _commit(env: dict) -> str | None:
    commit = rt.find_key(env, COMMIT_KEYS)
    if commit is None:
        return None
    return f"{commit}+dirty" if rt.find_key(env, ("dirty", "git_dirty")) is True else str(commit)


def _packages(env: dict) -> dict:
    for key in ("packages", "versions"):
        if isinstance(env.get(key), dict):
            return {k: str(v) for k, v in env[key].items()}
    return {}


def make_baseline(runs: list[RunValues], created: str | None = None) -> dict:
    """The baseline document: per model, settings and final value of each metric per seed."""
    models: dict[str, dict] = {}
    for label in sorted({r.label for r in runs}):
        group = sorted((r for r in runs if r.label == label), key=lambda r: r.seed)
        seeds = [r.seed for r in group]
        if len(set(seeds)) != len(seeds):
            raise BenchError(f"model {label} has two runs with the same seed in one results folder")
        metrics: dict[str, dict] = {}
        for r in group:
            if r.status == Status.OK:  # a diverged run's numbers are not a model's quality
                for name, value in r.final.items():
                    metrics.setdefault(name, {})[str(r.seed)] = _round(value)
        models[label] = {
            "seeds": seeds,
            "diverged_seeds": [r.seed for r in group if r.status == Status.DIVERGED],
            "settings": _model_settings(label, group),
            "machine": _machine(group),
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
            and isinstance(m.get("machine", {}), dict)  # absent in older baselines
            and all(
                isinstance(v, dict) and all(x is None or _is_number(x) for x in v.values())
                for v in m["metrics"].values()
            )
        )
        if not ok:
            raise BenchError(
                f"baseline {str(path)!r}: model {label!r} is malformed "
                f"(needs seeds, diverged_seeds, settings, metrics; machine a mapping); {hint}"
            )
    return doc


# ------------------------------------------------------------------------------ statistics


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
    accepted: tuple[float, float] | None = None  # values one new run may take (_predicted)
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
    if len(base_ok) < 2:  # no spread in the baseline: the tolerance alone decides
        point = _relative(float(np.mean(now_ok)) - scale, scale)
        row.change, row.note = point, "single-run baseline"
        row.verdict = _verdict(registry.direction(metric), point, point, point, tolerance)
        return row
    if len(now_ok) < 2:
        return _predicted(row, registry.direction(metric), now_ok[0], tolerance)
    diff, low, high = welch_interval(now_ok, base_ok, CONFIDENCE)  # mean(now) - mean(base)
    # The baseline mean is taken as a fixed scale for the relative interval; its own
    # uncertainty is already inside the interval of the difference.
    row.change = _relative(diff, scale)
    row.interval = (_relative(low, scale), _relative(high, scale))
    row.verdict = _verdict(registry.direction(metric), row.change, *row.interval, tolerance)
    if row.verdict == "unclear":
        row.note = "too few seeds / too noisy to tell"
    return row


def _predicted(row: Comparison, direction: str, value: float, tolerance: float) -> Comparison:
    """One new run against the baseline seeds: inside the 95% prediction interval for one
    new run (stats.prediction_interval), widened by tolerance x |baseline mean| on each
    side, is "ok"; beyond it on the bad side "worse" (either side "changed" when two-sided)."""
    mean, low, high = prediction_interval(row.base, CONFIDENCE)
    widen = tolerance * abs(mean)
    row.accepted = (low - widen, high + widen)
    row.change = _relative(value - mean, mean)
    above, below = value > row.accepted[1], value < row.accepted[0]
    if direction == TWO_SIDED:
        row.verdict = "changed" if above or below else "ok"
    else:
        bad, good = (above, below) if direction == LOWER else (below, above)
        row.verdict = "worse" if bad else "better" if good else "ok"
    return row


# ---------------------------------------------------------------------- comparing sweeps


def _metric_order(names) -> list[str]:
    known = [m for m in registry.gated_outputs() if m in names]
    return known + sorted(m for m in names if m not in known)


def parse_metrics(text: str | None, baseline: dict) -> list[str]:
    """--metrics fid,recon_mse -> those names; default: every baseline metric the registry gates."""
    in_baseline = {m for model in baseline["models"].values() for m in model["metrics"]}
    if not text:
        return [m for m in registry.gated_outputs() if m in in_baseline]
    names = [m.strip() for m in text.split(",") if m.strip()]
    for name in names:
        if registry.direction(name) == registry.NONE:
            raise BenchError(
                f"--metrics: no direction known for {name!r}; "
                f"accepted: {', '.join(registry.directed_outputs())}"
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


def parse_tolerances(text: str | None, metrics: list[str] = ()) -> dict[str, float]:
    """'0.1' sets every metric; 'fid=0.1,recon_mse=5%' overrides some; unset keep the
    registry's defaults. ``metrics``: names compared besides the gated ones (--metrics)."""
    names = list(dict.fromkeys([*registry.gated_outputs(), *metrics]))
    tolerances = {m: registry.tolerance(m) for m in names}
    parts = [p for p in (text or "").split(",") if p.strip()]
    for part in (p for p in parts if "=" not in p):
        tolerances = dict.fromkeys(names, _parse_fraction(part, "--tolerance"))
    for part in (p for p in parts if "=" in p):
        name, value = (s.strip() for s in part.split("=", 1))
        if registry.direction(name) == registry.NONE:
            raise BenchError(
                f"--tolerance: unknown metric {name!r}; "
                f"accepted: {', '.join(registry.directed_outputs())}"
            )
        tolerances[name] = _parse_fraction(value, f"--tolerance {name}")
    unset = [m for m, t in tolerances.items() if t is None]
    if unset:
        raise BenchError(f"--tolerance: {unset[0]} has no default; set one, e.g. {unset[0]}=10%")
    return tolerances


def _is_sha1(value) -> bool:
    return (
        isinstance(value, str) and len(value) == 40 and all(c in "0123456789abcdef" for c in value)
    )


def _comparable(key: str, a, b) -> bool:
    """Both recorded, and of one kind: older runs recorded the weights' id string, not their
    sha1, and an id cannot be checked against a hash (reported as not verified instead)."""
    if a is None or b is None:
        return False
    return key != "fid_weights" or _is_sha1(a) == _is_sha1(b)


def _machine_warnings(label: str, old: dict, new: dict) -> list[str]:
    out = []
    for key in WARN_MACHINE:
        a, b = old.get(key), new.get(key)
        if a is not None and b is not None and a != b:
            out.append(f"{label}: {key} differs (baseline {a!r}, now {b!r}); small shifts possible")
    return out


def check_settings(baseline: dict, current: dict, force: bool = False) -> list[str]:
    """Warnings for differing settings; BenchError when a blocking one differs and not force."""
    blocking, warnings, unknown = [], [], set()
    for label in sorted(set(baseline["models"]) & set(current["models"])):
        old_model, new_model = baseline["models"][label], current["models"][label]
        old, new = old_model["settings"], new_model["settings"]
        for key in BLOCKING_SETTINGS + ADVISORY_SETTINGS:
            a, b = old.get(key), new.get(key)
            if not _comparable(key, a, b):
                unknown |= {key} if key in BLOCKING_SETTINGS else set()
                continue
            if a != b:
                text = f"{label}: {key} differs (baseline {a!r}, now {b!r})"
                (blocking if key in BLOCKING_SETTINGS else warnings).append(text)
        old_machine, new_machine = old_model.get("machine") or {}, new_model.get("machine") or {}
        warnings += _machine_warnings(label, old_machine, new_machine)
        unknown |= {k for k in WARN_MACHINE if None in (old_machine.get(k), new_machine.get(k))}
    if unknown:
        warnings.append(
            f"not recorded in baseline or results, so not verified: {', '.join(sorted(unknown))}"
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

# "95% interval": [a%, b%] is the Welch interval of the relative change (several seeds on
# both sides); "accept [lo, hi]" the values a single new run may take (prediction interval
# of the baseline seeds widened by the tolerance).
HEADER = ("model", "metric", "baseline", "now", "change", "95% interval", "tolerance", "verdict")


def _describe(values: list[float]) -> str:
    """'41.2 (1)' or mean ± sample sd and the number of seeds: '41.2±1.3 (5)'."""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.4g} (1)"
    return f"{np.mean(values):.4g}±{np.std(values, ddof=1):.2g} ({len(values)})"


def _percent(x: float) -> str:
    return f"{x * 100:+.1f}%"


def _interval_cell(row: Comparison) -> str:
    if row.interval:
        return f"[{_percent(row.interval[0])}, {_percent(row.interval[1])}]"
    if row.accepted:
        return f"accept [{row.accepted[0]:.4g}, {row.accepted[1]:.4g}]"
    return ""


def table_cells(row: Comparison) -> tuple[str, ...]:
    return (
        row.model,
        row.metric,
        _describe(row.base),
        _describe(row.now),
        _percent(row.change) if row.change is not None else "",
        _interval_cell(row),
        f"{row.tolerance * 100:g}%" if row.tolerance is not None else "",
        f"{row.verdict} ({row.note})" if row.note else row.verdict,
    )


def format_table(rows: list[Comparison]) -> str:
    cells = [HEADER] + [table_cells(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in cells)
    return "\n".join(line.rstrip() for line in lines)


def format_markdown(rows: list[Comparison], notes: list[str], summary: str) -> str:
    out = ["### bench check", ""] + [f"- {n}" for n in notes] + ([""] if notes else [])
    out += [md_table(list(HEADER), [table_cells(r) for r in rows])]
    return "\n".join(out + ["", f"**{summary}**", ""])


def _failure_text(row: Comparison) -> str:
    where = row.model if row.metric == "-" else f"{row.model}/{row.metric}"
    if row.verdict == "missing":
        return f"{where} missing from results"
    if row.verdict == "diverged":
        return f"{where} diverged in {row.note}"
    how = "worse" if row.verdict == "worse" else "changed"
    size = f"{abs(row.change) * 100:.1f}%" if row.verdict == "worse" else _percent(row.change)
    tol = f"{row.tolerance * 100:g}%"
    if row.accepted:
        low, high = row.accepted
        return (
            f"{where} {how} by {size} ({row.now[0]:.4g} outside [{low:.4g}, {high:.4g}]: "
            f"95% prediction interval of {len(row.base)} baseline seeds ± tolerance {tol})"
        )
    interval = (
        f"95% CI {_percent(row.interval[0])}..{_percent(row.interval[1])}, "
        if row.interval
        else "single-run baseline, "
    )
    return f"{where} {how} by {size} ({interval}tolerance {tol})"


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
    check_writable_file(out, "--out")
    runs, note = load_results(results)
    if not runs:
        raise BenchError(f"no finished runs under {results}; {note or 'wait for the sweep'}")
    doc = make_baseline(runs)
    write_json(out, doc)
    diverged = sum(r.status == Status.DIVERGED for r in runs)
    if note:
        click.echo(note)
    for label, model in doc["models"].items():
        ok = len(model["seeds"]) - len(model["diverged_seeds"])
        if ok < MIN_BASELINE_SEEDS:
            click.echo(
                f"warning: {label} has {ok} finished seed(s); with fewer than "
                f"{MIN_BASELINE_SEEDS} the prediction interval is very wide (2 seeds) or "
                "absent (1: the tolerance alone decides); run more seeds"
            )
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
    + ", ".join(f"{k} {registry.tolerance(k) * 100:g}%" for k in registry.gated_outputs())
    + ".",
)
@click.option(
    "--force",
    is_flag=True,
    help="Compare even if dataset / image size / FID samples / weights / numerics differ.",
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

    Tolerances are relative (0.1 = 10% worse allowed) and come on top of seed noise: one new
    run must lie inside the baseline seeds' 95% prediction interval widened by the tolerance;
    with 2+ seeds on both sides the verdict uses the 95% Welch interval of the change ("worse"
    only if all of it is beyond the tolerance). kl_nats is two-sided: a change beyond tolerance either way fails ("changed").
    Missing models/metrics and more frequent divergence fail too. Exit 2: bad input.
    """
    if markdown is not None:
        check_writable_file(markdown, "--markdown")
    baseline = read_baseline(baseline_path)
    finished, unfinished = load_results(results)
    # With no finished run every baseline model is reported missing, not an error.
    current = make_baseline(finished) if finished else {"models": {}, "packages": {}}
    names = parse_metrics(metrics, baseline)
    tolerances = parse_tolerances(tolerance, names)
    notes = check_settings(baseline, current, force) + package_notes(baseline, current)
    notes += [unfinished] if unfinished else []
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
