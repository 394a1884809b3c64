"""One results layout (bench.core.layout) and one reader (bench.results.table): report,
claims, baseline and check find the same runs, take the same final values and leave
unfinished runs out alike. No training."""

import ast
import json
from pathlib import Path

import helpers
import pytest
from click.testing import CliRunner

import bench
from bench.analysis import claims as cl
from bench.analysis import report as rp
from bench.analysis.check import baseline_command, check_command
from bench.core import layout
from bench.core.layout import (
    BEST_FID,
    CHECKPOINT_FILE,
    CONFIG_FILE,
    COST_PREFIX,
    ENV_FILE,
    ERROR_FILE,
    FINAL_FID,
    METRICS_FILE,
    PEAK_RSS,
    STATUS_FILE,
    SWEEP_FILE,
    Status,
    run_id,
)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DOGBENCH_CACHE", str(tmp_path / "cache"))


def write_run(root: Path, model: str, seed: int, fid: float, status=Status.OK, epochs=2):
    """A run folder as `bench run` writes it, with cost/* rows and peak RSS."""
    metrics = {"fid": fid, "recon_mse": 0.01}
    helpers.write_run(
        root, model, seed, metrics, status=status, epochs=2, done=epochs, fid_n=100,
        cost={"train_seconds": 3.0 + seed}, peak_rss=900.0,
    )  # fmt: skip


def invoke(command, *args):
    return CliRunner().invoke(command, [str(a) for a in args])


def baseline(results: Path, out: Path):
    result = invoke(baseline_command, results, "--out", out)
    assert result.exit_code == 0, result.output
    return result, json.loads(out.read_text())


def test_check_and_report_accept_a_parent_of_two_sweeps(tmp_path):
    parent = tmp_path / "results"
    for seed in (0, 1):
        write_run(parent / "sweep-a", "ae", seed, 300.0 + seed)
        write_run(parent / "sweep-b", "gan", seed, 150.0 + seed)
    data = rp.collect(parent)
    assert data.order == ["ae", "gan"] and len(data.runs) == 4
    _, doc = baseline(parent, tmp_path / "base.json")
    assert sorted(doc["models"]) == data.order
    assert doc["models"]["gan"]["metrics"]["final_fid"] == {"0": 150.0, "1": 151.0}
    result = invoke(check_command, parent, "--baseline", tmp_path / "base.json")
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("check: PASSED (8 compared)")
    # One of the two sweeps against the parent's baseline: the other sweep's model is missing.
    alone = invoke(check_command, parent / "sweep-a", "--baseline", tmp_path / "base.json")
    assert alone.exit_code == 1 and "gan missing from results" in alone.output


def test_baseline_holds_no_cost_rows_and_old_ones_with_cost_still_load(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path / "sweep", "vae", seed, 100.0 + seed)
    _, doc = baseline(tmp_path / "sweep", tmp_path / "base.json")
    names = set(doc["models"]["vae"]["metrics"])
    assert names == {"fid", FINAL_FID, BEST_FID, "recon_mse"}  # no cost/*, no train/*
    # A baseline recorded before cost rows were dropped still loads; its timings are ignored.
    doc["models"]["vae"]["metrics"][PEAK_RSS] = {"0": 1.0, "1": 2.0}
    (tmp_path / "old.json").write_text(json.dumps(doc))
    result = invoke(check_command, tmp_path / "sweep", "--baseline", tmp_path / "old.json")
    assert result.exit_code == 0, result.output
    assert COST_PREFIX not in result.output


def _mixed_sweep(root: Path) -> str:
    """ae, vae, gan x 2 seeds; vae-seed1 still running, gan-seed1 crashed. Returns the note."""
    for model, fid in (("ae", 300.0), ("vae", 100.0), ("gan", 150.0)):
        write_run(root, model, 0, fid)
    write_run(root, "ae", 1, 301.0)
    write_run(root, "vae", 1, 101.0, status=Status.RUNNING, epochs=1)
    write_run(root, "gan", 1, 151.0, status=Status.RUNNING, epochs=1)
    (root / "gan-seed1" / ERROR_FILE).write_text("Traceback (most recent call last): ...\n")
    return "2 unfinished runs left out of final values: gan-seed1 (crashed), vae-seed1 (running)"


def test_unfinished_runs_are_treated_alike_by_report_claims_and_check(tmp_path):
    results = tmp_path / "sweep"
    note = _mixed_sweep(results)
    data = rp.collect(results)
    assert f"- **Note:** {note}" in rp.header_section(data)
    stats = data.metric_stats.set_index(["label", "metric"])
    assert stats.loc[("vae", "final_fid"), "n"] == 1 and stats.loc[("ae", "final_fid"), "n"] == 2
    claims = invoke(cl.claims_command, results)
    assert f"note: {note}" in claims.output
    assert len(cl.values(data.claim_inputs, "vae", FINAL_FID)) == 1
    made, doc = baseline(results, tmp_path / "base.json")
    assert f"note: {note}; not compared" in made.output
    assert doc["models"]["vae"]["seeds"] == [0] and doc["models"]["ae"]["seeds"] == [0, 1]
    assert doc["models"]["vae"]["metrics"][FINAL_FID] == {"0": 100.0}
    checked = invoke(check_command, results, "--baseline", tmp_path / "base.json")
    assert checked.exit_code == 0 and f"note: {note}; not compared" in checked.output


def test_a_model_with_only_unfinished_runs_is_missing_not_passed(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path / "base", "ae", seed, 300.0)
        write_run(tmp_path / "base", "gan", seed, 150.0)
        write_run(tmp_path / "now", "ae", seed, 300.0)
        write_run(tmp_path / "now", "gan", seed, 150.0, status=Status.RUNNING, epochs=1)
    baseline(tmp_path / "base", tmp_path / "base.json")
    result = invoke(check_command, tmp_path / "now", "--baseline", tmp_path / "base.json")
    assert result.exit_code == 1, result.output
    assert result.output.strip().endswith("check: FAILED: gan missing from results")


def test_status_keeps_its_plain_strings():
    assert json.dumps({"status": Status.DIVERGED}) == '{"status": "diverged"}'
    assert f"{Status.OK}" == "ok" and Status("running") is Status.RUNNING
    assert run_id("vae:beta=4,latent_dim=8", 0) == "vae_beta=4_latent_dim=8-seed0"


FILE_NAMES = {CONFIG_FILE, ENV_FILE, METRICS_FILE, CHECKPOINT_FILE, STATUS_FILE, ERROR_FILE}
FILE_NAMES |= {SWEEP_FILE}
# Row names and prefixes layout defines (costs, tracked points, training terms, summaries).
ROW_NAMES = {
    v
    for k, v in vars(layout).items()
    if k.isupper() and isinstance(v, str) and v.startswith(("cost/", "track/", "train/"))
} | set(layout.SUMMARY_METRICS)


def _literal_uses(path: Path) -> list[str]:
    """Code (not docstrings) in `path` that spells a run-folder file name or a row name
    (ROW_NAMES), or compares a status with a plain string, instead of using bench.core.layout."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and node.value in FILE_NAMES | ROW_NAMES:
            found.append(f"{path}:{node.lineno}: {node.value!r}")
        if isinstance(node, ast.Compare):  # status == "ok", status in ("ok", "diverged")
            sides = [node.left, *node.comparators]
        elif isinstance(node, ast.Call):  # _write_status(plan, "ok"), status.isin(["ok"])
            sides = [node.func, *node.args]
        else:
            continue
        if _names_a_status(sides) and any("status" in ast.unparse(s).lower() for s in sides):
            found.append(f"{path}:{node.lineno}: {ast.unparse(node)}")
    return found


def _names_a_status(nodes) -> bool:
    flat = [e for n in nodes for e in (n.elts if isinstance(n, ast.Tuple | ast.List) else [n])]
    return any(isinstance(n, ast.Constant) and n.value in set(Status) for n in flat)


def test_layout_strings_are_defined_only_in_layout():
    root = Path(bench.__file__).parent
    assert {"cost/peak_rss_mib", "track/fid", "train/", "final_fid"} <= ROW_NAMES
    assert all((root.parent / d).is_dir() for d in ("models", "benchmarks"))
    sources = [
        p
        for d in (root, root.parent / "models", root.parent / "benchmarks")
        for p in sorted(d.rglob("*.py"))
    ]
    sources = [p for p in sources if p.name != "layout.py"]
    assert [hit for p in sources for hit in _literal_uses(p)] == []


def test_the_literal_check_finds_row_names_and_file_names(tmp_path):
    source = tmp_path / "spells.py"
    source.write_text('x = rows["cost/peak_rss_mib"]\ny = "metrics.csv"\nz = "cost/other"\n')
    assert sorted(hit.rsplit(":", 2)[1] for hit in _literal_uses(source)) == ["1", "2"]
