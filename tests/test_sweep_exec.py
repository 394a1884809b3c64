"""Executors: --jobs N local processes and --executor ray give the in-process results; a run
that crashes is reported and the others finish; Ray stays optional."""

import json
import sys

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from bench.cli import cli
from bench.core.config import SweepConfig, from_dict
from bench.harness import executors
from bench.harness.executors import RunTask, run_shipped, write_shipped
from bench.harness.sweep import load_sweep_data, plan_sweep, run_config

TINY = [
    "--dataset", "synthetic", "--epochs", "2", "--batch-size", "32", "--fid-samples", "0",
    "--set", "backbone.width=16", "--set", "backbone.latent_dim=8",
    "--set", "data.train_limit=128", "--set", "eval.heldout_images=32",
    "--set", "eval.grid_images=16", "--set", "train.threads=1",
]  # fmt: skip
RUNS = ("ae-seed0", "gan-seed0")
CRASHING = "gan:lr=-1"  # passes config checks, then torch.optim.Adam raises: a run that crashes


def bench(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def results(folder, runs=RUNS):
    """Metrics without timings, and the final sample grids."""
    frame = pd.concat(pd.read_csv(folder / run / "metrics.csv") for run in runs)
    frame = frame[~frame.metric.str.startswith("cost/")].reset_index(drop=True)
    return frame, [(folder / run / "samples.png").read_bytes() for run in runs]


def assert_same_results(folder, reference, runs=RUNS):
    (got, got_png), (want, want_png) = results(folder, runs), results(reference, runs)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert got_png == want_png
    for run in runs:
        assert json.loads((folder / run / "status.json").read_text())["status"] == "ok"


def assert_crash_reported(result, out):
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("Error: 1 of 3 runs crashed (gan_lr=-1-seed0)"), lines[-1]
    assert any("crashed" in line and "gan:lr=-1" in line for line in lines)  # summary table
    error = (out / "gan_lr=-1-seed0" / "error.txt").read_text()
    assert "Traceback" in error and "Invalid learning rate" in error


@pytest.fixture(scope="module")
def in_process(tmp_path_factory, session_cache):
    """The default executor; one run crashes and the two others must still finish."""
    threads = torch.get_num_threads()  # train.threads=1 sets it for this process
    out = tmp_path_factory.mktemp("in-process") / "r"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DOGBENCH_CACHE", str(session_cache))
        result = bench("run", "--models", f"ae,{CRASHING},gan", *TINY, "--out", out)
    yield out, result
    torch.set_num_threads(threads)


def test_in_process_crash_is_reported_and_sweep_goes_on(in_process):
    out, result = in_process
    assert_crash_reported(result, out)
    for run in RUNS:
        assert json.loads((out / run / "status.json").read_text())["status"] == "ok"


def test_jobs_2_equals_jobs_1(in_process, tmp_path):
    reference, _ = in_process
    out = tmp_path / "r"
    result = bench("run", "--models", f"ae,{CRASHING},gan", *TINY, "--jobs", 2, "--out", out)
    assert_crash_reported(result, out)
    assert result.output.count("started: process") == 3
    assert_same_results(out, reference)
    assert json.loads((out / "ae-seed0" / "env.json").read_text())["threads"] == 1


def test_processes_share_the_cpus():
    cpus = executors.usable_cpus()
    assert executors.threads_per_process(0, jobs=2, runs=5) == max(1, cpus // 2)
    assert executors.threads_per_process(0, jobs=4, runs=1) == cpus  # one run: all of them
    assert executors.threads_per_process(3, jobs=2, runs=5) == 3  # train.threads decides


def test_shipped_run_returns_its_files(in_process, tmp_path, capsys):
    """A Ray worker that cannot see the results folder trains in a temporary one."""
    reference, _ = in_process
    cfg = from_dict(SweepConfig, json.loads((reference / "sweep.json").read_text()))
    plan = next(p for p in plan_sweep(cfg, tmp_path / "r") if p.run_id == "ae-seed0")
    data = load_sweep_data(cfg, tmp_path, say=lambda line: None)
    task = RunTask(plan, run_config(cfg, plan.spec, plan.seed, plan.run_id), data, threads=1)
    status, files = run_shipped(task, {})
    assert status == "ok" and not plan.dir.exists()
    assert {"config.json", "env.json", "status.json", "metrics.csv", "checkpoint.pt"} <= set(files)
    write_shipped(plan.dir, files)
    assert_same_results(tmp_path / "r", reference, runs=["ae-seed0"])
    # Resuming from shipped files: the finished checkpoint leaves nothing to train.
    shipped = {n: (reference / "ae-seed0" / n).read_bytes() for n in executors.RESUME_FILES}
    status, files = run_shipped(task, shipped)
    assert status == "ok" and "resuming after epoch 2" in capsys.readouterr().out


def test_executor_options_are_checked(tmp_path, monkeypatch):
    def one_line_error(result, fragment):
        assert result.exit_code == 2, result.output
        last = [line for line in result.output.splitlines() if line.strip()][-1]
        assert last.startswith("Error:") and fragment in last, last

    run = ["run", "--models", "ae", *TINY, "--out", tmp_path / "r"]
    one_line_error(bench(*run, "--jobs", 0), "--jobs 0")
    one_line_error(bench(*run, "--ray-address", "auto"), "needs --executor ray")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    one_line_error(bench(*run, "--executor", "ray"), "pip install dogbench[ray]")
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_ray_equals_in_process(in_process, tmp_path):
    pytest.importorskip("ray")
    reference, _ = in_process
    out = tmp_path / "r"
    result = bench("run", "--models", "ae,gan", *TINY, "--executor", "ray", "--out", out)
    assert result.exit_code == 0, result.output
    assert_same_results(out, reference)
    assert not (out / executors.TOKEN_FILE).exists()
