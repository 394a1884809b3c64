"""SIGKILL at precise phases of a sweep with FID on (the AE's evaluation, the GAN's checkpoint
write, the GAN's evaluation), each followed by a re-run into the same folder: in the end every
(run, epoch, step, metric) row is there exactly once and every metric equals the uninterrupted
sweep's. The kills come from hooks a child process installs before `bench run` starts."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch
from helpers import bench, finished_sweep

FAULTY = [
    "--models", "ae,gan", "--dataset", "synthetic", "--epochs", "2", "--batch-size", "32",
    "--fid-samples", "24", "--set", "backbone.width=8", "--set", "backbone.latent_dim=8",
    "--set", "data.train_limit=64", "--set", "eval.heldout_images=16",
    "--set", "eval.grid_images=16", "--set", "train.threads=1", "--set", "eval.samplers=[prior]",
    "--set", "eval.every=1", "--set", "eval.track_points=0",
]  # fmt: skip
RUNS = ("ae-seed0", "gan-seed0")
ROW = ["run", "epoch", "step", "metric"]

# Runs `bench run` with one fault armed: argv = PHASE MODEL_OR_RUN AT, then bench's arguments.
#   eval RUN K:       SIGKILL when run RUN's evaluation K has computed its metrics (no rows yet)
#   checkpoint RUN K: SIGKILL halfway through writing RUN's K-th checkpoint, leaving the
#                     half-written temporary file that atomic_write would have renamed
CHILD = r"""
import os, signal, sys, tempfile
from pathlib import Path
import bench.core.io as io
import bench.harness.train as train
from bench.metrics.evaluate import Evaluator

phase, target, at = sys.argv[1], sys.argv[2], int(sys.argv[3])
writes = []

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if phase == "eval":
    evaluate, current = Evaluator.__call__, {}
    run = train.train_run
    def train_run(plan, *args, **kw):
        current["run"] = plan.run_id
        return run(plan, *args, **kw)
    def call(self, model, final=False, *, index=1):
        out = evaluate(self, model, final, index=index)
        if current.get("run") == target and index == at:
            die()
        return out
    train.train_run, Evaluator.__call__ = train_run, call
    import bench.harness.executors as executors
    executors.train_run = train_run
else:
    atomic_write = io.atomic_write
    def half_write(path, write):
        path = Path(path)
        if path.name == "checkpoint.pt" and path.parent.name == target:
            writes.append(path)
            if len(writes) == at:
                fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=path.parent)
                os.close(fd)
                write(tmp)
                os.truncate(tmp, os.path.getsize(tmp) // 2)
                die()
        return atomic_write(path, write)
    io.atomic_write = half_write

from bench.cli import main
sys.argv = ["bench", *sys.argv[4:]]
main()
"""


def killed_run(tmp_path, out, phase, target, at):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, "-c", CHILD, phase, target, str(at), "run", *FAULTY]
    done = subprocess.run(
        [*command, "--out", str(out)], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == -9, done.stdout + done.stderr  # the hook fired, nothing crashed
    return done.stdout


def status(out, run):
    return json.loads((out / run / "status.json").read_text())


def metrics(folder):
    return pd.concat(pd.read_csv(folder / run / "metrics.csv") for run in RUNS)


def quality(frame):
    return frame[~frame.metric.str.startswith("cost/")].reset_index(drop=True)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, session_cache):
    with finished_sweep(tmp_path_factory, session_cache, "uninterrupted", *FAULTY) as out:
        yield out


def test_kills_in_evaluation_and_checkpoint_writes_then_rerun_equals_uninterrupted(
    uninterrupted, tmp_path
):
    out = tmp_path / "r"
    killed_run(tmp_path, out, "eval", "ae-seed0", 2)  # the AE's last evaluation, FID computed
    assert status(out, "ae-seed0")["epoch"] == 1 and not (out / "gan-seed0").exists()
    assert set(pd.read_csv(out / "ae-seed0" / "metrics.csv").epoch) == {1}

    log = killed_run(tmp_path, out, "checkpoint", "gan-seed0", 2)  # mid-write, epoch 2
    assert "[ae-seed0] resuming after epoch 1" in log
    assert status(out, "ae-seed0")["status"] == "ok"
    gan = out / "gan-seed0"
    assert len(list(gan.glob(".checkpoint.pt.*.tmp"))) == 1  # what the kill left behind
    assert torch.load(gan / "checkpoint.pt", weights_only=False)["epoch"] == 1  # the old one
    assert set(pd.read_csv(gan / "metrics.csv").epoch) == {1, 2}  # flushed before the write

    log = killed_run(tmp_path, out, "eval", "gan-seed0", 2)
    assert "[gan-seed0] resuming after epoch 1" in log
    assert not list(gan.glob(".*.tmp"))  # the stray file is removed on resume
    assert status(out, "gan-seed0")["epoch"] == 1  # killed in epoch 2's evaluation

    result = bench("run", *FAULTY, "--out", out)
    assert result.exit_code == 0, result.output
    assert "[ae-seed0] already finished" in result.output
    assert "[gan-seed0] resuming after epoch 1" in result.output

    resumed, reference = metrics(out), metrics(uninterrupted)
    assert not resumed.duplicated(ROW).any()  # every row exactly once
    assert sorted(map(tuple, resumed[ROW].values)) == sorted(map(tuple, reference[ROW].values))
    assert set(resumed[resumed.metric == "fid"].n) == {24}
    pd.testing.assert_frame_equal(quality(resumed), quality(reference), check_exact=True)
    for run in RUNS:
        assert status(out, run)["status"] == "ok"
        assert not list((out / run).glob(".*.tmp"))
        for png in ("samples.png", "interpolation.png"):
            assert (out / run / png).read_bytes() == (uninterrupted / run / png).read_bytes()
