"""`bench run` killed with SIGKILL in the middle of a run, then re-run into the same folder,
gives the results of an uninterrupted run, exactly; other settings in that folder are refused
(exit 2) and nothing is deleted unless --overwrite."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
from helpers import bench, finished_sweep, one_line_error, snapshot

from bench.core.config import load_sweep_config
from bench.harness.sweep import load_sweep_data, plan_sweep
from bench.harness.train import train_run
from bench.metrics.evaluate import Evaluator

TINY = [
    "--models", "ae,gan", "--dataset", "synthetic", "--epochs", "4", "--batch-size", "32",
    "--fid-samples", "0", "--set", "backbone.width=16", "--set", "backbone.latent_dim=8",
    "--set", "data.train_limit=256", "--set", "eval.heldout_images=32",
    "--set", "eval.grid_images=16", "--set", "train.threads=1",
    "--set", "train.lr_warmup_steps=20",  # 8 steps per epoch: the kill lands mid-warm-up
]  # fmt: skip
RUNS = ("ae-seed0", "gan-seed0")
KEY = ["run", "epoch", "metric"]


def metrics(folder):
    return pd.concat(pd.read_csv(folder / run / "metrics.csv") for run in RUNS)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, session_cache):
    with finished_sweep(tmp_path_factory, session_cache, "uninterrupted", *TINY) as out:
        yield out


def _epochs_done(status_file) -> int:
    try:
        return json.loads(status_file.read_text())["epoch"]
    except FileNotFoundError:  # os.replace makes it appear whole, never half-written
        return 0


def test_sigkill_mid_run_then_rerun_equals_uninterrupted(uninterrupted, tmp_path):
    out, log = tmp_path / "r", tmp_path / "killed.log"
    command = [sys.executable, "-c", "from bench.cli import main; main()", "run", *TINY]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with open(log, "wb") as f:
        proc = subprocess.Popen([*command, "--out", str(out)], env=env, stdout=f, stderr=f)
    deadline = time.monotonic() + 300
    try:  # kill as soon as the first run has finished an epoch: inside its next epoch
        while _epochs_done(out / "ae-seed0" / "status.json") < 1:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed = json.loads((out / "ae-seed0" / "status.json").read_text())
    assert killed["status"] == "running" and 1 <= killed["epoch"] < 4, killed
    assert not (out / "gan-seed0").exists()

    result = bench("run", *TINY, "--out", out)
    assert result.exit_code == 0, result.output
    assert f"[ae-seed0] resuming after epoch {killed['epoch']}" in result.output

    resumed, reference = metrics(out), metrics(uninterrupted)
    assert not resumed.duplicated(KEY).any()  # every (run, epoch, metric) row exactly once
    assert set(map(tuple, resumed[KEY].values)) == set(map(tuple, reference[KEY].values))
    assert len(resumed[resumed.metric == "train/loss"]) == 4  # ae: epochs 1..4
    timings = resumed.metric.str.startswith("cost/")
    pd.testing.assert_frame_equal(
        resumed[~timings].reset_index(drop=True),
        reference[~reference.metric.str.startswith("cost/")].reset_index(drop=True),
        check_exact=True,
    )
    for run in RUNS:
        assert json.loads((out / run / "status.json").read_text())["status"] == "ok"
        assert (out / run / "samples.png").read_bytes() == (
            uninterrupted / run / "samples.png"
        ).read_bytes()
        final = torch.load(out / run / "checkpoint.pt", weights_only=False)["model"]
        expected = torch.load(uninterrupted / run / "checkpoint.pt", weights_only=False)["model"]
        assert all(torch.equal(final[k], expected[k]) for k in expected)


def test_other_settings_refused_until_overwrite(uninterrupted, tmp_path):
    out = tmp_path / "r"
    shutil.copytree(uninterrupted, out)
    before = snapshot(out)
    one_line_error(bench("run", *TINY, "--epochs", 1, "--out", out), "train.epochs", "--overwrite")
    assert snapshot(out) == before

    (out / "sweep.json").unlink()  # without the sweep file the run folders still say it
    before = snapshot(out)
    one_line_error(bench("run", *TINY, "--epochs", 1, "--out", out), "train.epochs=4")
    assert snapshot(out) == before

    result = bench("run", *TINY, "--models", "ae", "--epochs", 1, "--overwrite", "--out", out)
    assert result.exit_code == 0, result.output
    # gan-seed0 was made with 4 epochs: left there it would be reported next to 1-epoch runs
    assert sorted(p.name for p in out.iterdir()) == ["ae-seed0", "sweep.json"]
    assert "--overwrite: removing" in result.output
    assert json.loads((out / "ae-seed0" / "config.json").read_text())["train"]["epochs"] == 1
    assert set(pd.read_csv(out / "ae-seed0" / "metrics.csv").epoch) == {1}
    assert json.loads((out / "sweep.json").read_text())["models"] == ["ae"]


def test_results_written_before_a_setting_existed_still_resume(uninterrupted, tmp_path):
    """A setting added to the code later is absent from older config.json / sweep.json: it
    counts at its default (what the older code did), so the folder is not refused, and the
    run can still be continued or paired with a longer one."""
    from bench.results import table as rt

    out = tmp_path / "r"
    shutil.copytree(uninterrupted, out)
    for recorded in [out / "sweep.json", *out.glob("*/config.json")]:
        config = json.loads(recorded.read_text())
        del config["train"]["budget_seconds"]  # as if written before budgets existed
        recorded.write_text(json.dumps(config))
    before = {p: b for p, b in snapshot(out).items() if "sweep.json" not in str(p)}
    result = bench("run", *TINY, "--out", out)
    assert result.exit_code == 0, result.output
    assert all(f"[{run}] already finished, skipped" in result.output for run in RUNS)
    assert {p: b for p, b in snapshot(out).items() if "sweep.json" not in str(p)} == before
    old = json.loads((out / "ae-seed0" / "config.json").read_text())
    current = json.loads((uninterrupted / "ae-seed0" / "config.json").read_text())
    assert rt.settings_apart_from_length(old) == rt.settings_apart_from_length(current)


class CrashingEvaluator(Evaluator):
    """Records the evaluation index train_run passes it; raises at evaluation `crash_at`."""

    crash_at, seen = 0, None

    def __call__(self, model, final=False, *, index=1):
        out = super().__call__(model, final, index=index)
        self.seen.append(index)
        if index == self.crash_at:
            raise RuntimeError("simulated crash before this epoch's checkpoint")
        return out


def test_resumed_run_continues_its_evaluation_count(tmp_path):
    """eval.extras_every counts a run's evaluations: the count must survive a resume and
    must not carry over from an earlier run that shared the evaluator (sequential sweeps)."""
    cfg = load_sweep_config(
        None,
        {
            "models": ["ae"],
            "data.dataset": "synthetic",
            "data.train_limit": 64,
            "train.epochs": 4,
            "train.batch_size": 32,
            "backbone.width": 16,
            "backbone.latent_dim": 8,
            "eval.fid_samples": 0,
            "eval.extras_every": 2,
            "eval.every": 1,
            "eval.heldout_images": 16,
            "eval.grid_images": 16,
        },  # fmt: skip
    )
    (plan,) = plan_sweep(cfg, tmp_path / "r")
    train, heldout = load_sweep_data(cfg, tmp_path, say=lambda line: None)
    evaluator = CrashingEvaluator(cfg.eval, train, heldout, torch.device("cpu"))
    evaluator.seen, evaluator.crash_at = [], 3
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_run(plan, train, evaluator, torch.device("cpu"), say=lambda line: None)
    evaluator.crash_at = 0  # the same evaluator, as the next run of a sequential sweep has it
    assert train_run(plan, train, evaluator, torch.device("cpu"), say=print) == "ok"
    assert evaluator.seen == [1, 2, 3, 3, 4]  # epochs 1-2 checkpointed; 3 and 4 done again
