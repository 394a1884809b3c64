"""Training budgets (images, FLOPs, seconds) stop a run at the right step, resume to the same
result, and tracked points are cheap evaluations that leave training untouched."""

import json
import math

import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from helpers import one_line_error

from bench.cli import cli
from bench.core.config import load_sweep_config
from bench.core.layout import (
    BUDGET_REPRODUCIBLE,
    CUM_IMAGES,
    CUM_TRAIN_FLOPS,
    TRACK_FID,
    TRACK_KID,
    TRACK_PREFIX,
    TRACK_RECON,
    TRAIN_PREFIX,
)
from bench.harness.sweep import load_sweep_data, plan_sweep, run_config
from bench.harness.train import train_run
from bench.metrics import fid, registry
from bench.metrics.evaluate import Evaluator

CPU = torch.device("cpu")
TINY = {
    "models": ["ae"],
    "data.dataset": "synthetic",
    "data.train_limit": 128,  # batch 32: 4 steps per epoch
    "train.batch_size": 32,
    "backbone.width": 4,
    "backbone.latent_dim": 4,
    "eval.fid_samples": 0,
    "eval.heldout_images": 16,
    "eval.grid_images": 16,
}  # fmt: skip


def quiet(line):
    pass


def train(tmp_path, name, evaluator_class=Evaluator, **overrides):
    """One tiny run in tmp_path/name; returns (status, metrics rows, plan, evaluator)."""
    cfg = load_sweep_config(None, {**TINY, **overrides})
    (plan,) = plan_sweep(cfg, tmp_path / name)
    data, heldout = load_sweep_data(cfg, tmp_path, say=quiet)
    evaluator = evaluator_class(cfg.eval, data, heldout, CPU)
    status = train_run(plan, data, evaluator, CPU, say=quiet)
    return status, pd.read_csv(plan.dir / "metrics.csv"), plan, evaluator


def last(rows, metric):
    return rows[rows.metric == metric].iloc[-1]


def test_images_flops_and_epochs_budgets_stop_at_their_step(tmp_path):
    # 200 images at 32 per step: the 7th step reaches them, in the middle of epoch 2
    status, rows, plan, _ = train(
        tmp_path, "images", **{"train.epochs": 0, "train.budget_images": 200}
    )
    assert status == "ok"
    assert json.loads((plan.dir / "status.json").read_text())["step"] == 7
    assert (last(rows, CUM_IMAGES).step, last(rows, CUM_IMAGES).value) == (7, 224)
    assert list(rows[rows.metric == "train/loss"].epoch) == [1, 2]  # the partial epoch counts
    flops_per_step = last(rows, CUM_TRAIN_FLOPS).value / 7
    assert flops_per_step > 0 and rows[rows.metric == "recon_mse"].epoch.max() == 2

    budget = {"train.epochs": 0, "train.budget_flops": 2.5 * flops_per_step}
    _, rows, plan, _ = train(tmp_path, "flops", **budget)
    assert json.loads((plan.dir / "status.json").read_text())["step"] == 3
    assert last(rows, CUM_TRAIN_FLOPS).value == pytest.approx(3 * flops_per_step)

    # epochs stay a limit: whichever comes first
    _, rows, plan, _ = train(
        tmp_path, "epochs", **{"train.epochs": 1, "train.budget_images": 10**6}
    )
    assert json.loads((plan.dir / "status.json").read_text())["step"] == 4


def test_seconds_budget_stops_and_is_recorded_as_not_reproducible(tmp_path):
    _, rows, plan, _ = train(tmp_path, "s", **{"train.epochs": 3, "train.budget_seconds": 1e-9})
    assert json.loads((plan.dir / "status.json").read_text())["step"] == 1
    cfg = plan.config
    assert run_config(cfg, plan.spec, 0, plan.run_id)[BUDGET_REPRODUCIBLE] is False
    cfg.train.budget_seconds = 0
    assert run_config(cfg, plan.spec, 0, plan.run_id)[BUDGET_REPRODUCIBLE] is True


class CrashingEvaluator(Evaluator):
    """Raises at its first evaluation of epoch 2: after the epoch-1 checkpoint, before the
    end of training (what kill -9 leaves, as far as the run folder is concerned)."""

    crash = True

    def __call__(self, model, final=False, *, index=1):
        if index == 2 and self.crash:
            raise RuntimeError("simulated crash")
        return super().__call__(model, final, index=index)


def test_resumed_budget_run_equals_uninterrupted(tmp_path):
    budget = {"train.epochs": 0, "train.budget_images": 200, "eval.every": 1}
    _, reference, _, _ = train(tmp_path, "whole", **budget)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(tmp_path, "killed", CrashingEvaluator, **budget)
    CrashingEvaluator.crash = False
    try:
        status, resumed, plan, _ = train(tmp_path, "killed", CrashingEvaluator, **budget)
    finally:
        CrashingEvaluator.crash = True
    assert status == "ok" and json.loads((plan.dir / "status.json").read_text())["step"] == 7
    timings = (
        "cost/cum_train_seconds",
        "cost/train",
        "cost/eval",
        "cost/epoch",
        "cost/peak",
        "cost/track",
    )
    keep = [not m.startswith(timings) for m in reference.metric]
    resumed_keep = [not m.startswith(timings) for m in resumed.metric]
    pd.testing.assert_frame_equal(
        resumed[resumed_keep].reset_index(drop=True),
        reference[keep].reset_index(drop=True),
        check_exact=True,
    )


def test_tracked_points_leave_training_identical(tmp_path):
    """GAN (the model with most random draws per step): 2 epochs of 2 steps, 3 points."""
    common = {"models": ["gan"], "data.train_limit": 64, "train.epochs": 2, "eval.extras": []}
    off_cfg = {"eval.fid_samples": 8, "eval.track_points": 0}
    _, off, plan_off, _ = train(tmp_path, "off", **common, **off_cfg)
    track = {"eval.track_points": 3, "eval.track_n": 8, "eval.fid_samples": 8}
    _, on, plan_on, _ = train(tmp_path, "on", **common, **track)

    fids = on[on.metric == TRACK_FID]
    assert list(fids.step) == [2, 3, 4] and set(fids.n) == {8}  # k/3 of 4 steps, rounded up
    assert list(on[on.metric == TRACK_KID].step) == [2, 3, 4]
    assert all(math.isfinite(v) for v in fids.value)
    assert set(on[on.metric == CUM_IMAGES].step) == {2, 3, 4}  # every point has its counters
    assert not off.metric.str.startswith(TRACK_PREFIX).any()
    assert not (on.metric == TRACK_RECON).any()  # a GAN reconstructs nothing

    def training(rows):
        return rows[rows.metric.str.startswith("train/")].reset_index(drop=True)

    pd.testing.assert_frame_equal(training(on), training(off), check_exact=True)
    final = [torch.load(p.dir / "checkpoint.pt", weights_only=False) for p in (plan_on, plan_off)]
    assert all(torch.equal(final[0]["model"][k], v) for k, v in final[1]["model"].items())
    assert (plan_on.dir / "samples.png").read_bytes() == (plan_off.dir / "samples.png").read_bytes()


def test_tracked_points_of_a_vae_carry_its_held_out_recon_mse_and_leave_training_alone(
    tmp_path,
):
    common = {"models": ["vae"], "data.train_limit": 64, "train.epochs": 2, "eval.extras": []}
    common |= {"eval.fid_samples": 8}
    _, on, _, _ = train(tmp_path, "on", **common, **{"eval.track_points": 2, "eval.track_n": 8})
    _, off, _, _ = train(tmp_path, "off", **common, **{"eval.track_points": 0})
    recon = on[on.metric == TRACK_RECON]
    assert list(recon.step) == list(on[on.metric == TRACK_FID].step) == [2, 4]
    assert set(recon.n) == {8}  # the first track_n of the 16 held-out images
    final = on[on.metric == "recon_mse"].iloc[-1]  # all 16, at the same last step
    assert 0 < recon.value.iloc[-1] < 1 and final.step == 4
    assert recon.value.iloc[-1] != final.value

    def training(rows):
        return rows[rows.metric.str.startswith("train/")].reset_index(drop=True)

    pd.testing.assert_frame_equal(training(on), training(off), check_exact=True)


def test_a_first_tracked_point_that_builds_inception_leaves_training_alone(tmp_path, monkeypatch):
    """The first tracked point in a process builds Inception, whose init draws from the global
    RNG, and computes the real statistics: a run with a cold network and statistics cache
    trains bit for bit as one whose Inception was built before it started."""
    common = {"models": ["vae"], "data.train_limit": 64, "train.epochs": 2, "eval.extras": []}
    common |= {"eval.fid_samples": 8, "eval.track_points": 2, "eval.track_n": 8}
    fid.inception_features(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), numerics="fast")
    _, warm, _, _ = train(tmp_path, "warm", **common)
    fid.clear_inception_cache()
    monkeypatch.setenv("DOGBENCH_CACHE", str(tmp_path / "cold-cache"))
    _, cold, _, _ = train(tmp_path, "cold", **common)
    assert any((tmp_path / "cold-cache" / "fid_stats").iterdir())  # real statistics made afresh
    steps = list(cold[cold.metric == TRACK_FID].step)
    assert steps == [2, 4]  # the first point came before training ended

    def training_and_tracked(rows):
        keep = rows.metric.str.startswith((TRAIN_PREFIX, TRACK_PREFIX))
        return rows[keep].reset_index(drop=True)

    pd.testing.assert_frame_equal(
        training_and_tracked(warm), training_and_tracked(cold), check_exact=True
    )


def test_tracked_metrics_are_registered_never_gated():
    for name in (TRACK_FID, TRACK_KID, TRACK_RECON):
        assert registry.direction(name) == registry.LOWER
        assert registry.tolerance(name) is None and name not in registry.headline_columns()


@pytest.mark.parametrize(
    "flag, fragment",
    [
        ("train.budget_images=-1", "train.budget_images must be >= 0"),
        ("train.budget_flops=-2e9", "train.budget_flops must be >= 0"),
        ("train.budget_seconds=-5", "train.budget_seconds must be >= 0"),
        ("train.epochs=0", "train.epochs must be >= 1"),  # no epoch limit needs a budget
        ("eval.track_points=-1", "eval.track_points must be >= 0"),
    ],
)
def test_bad_budget_refused_in_one_line(tmp_path, flag, fragment):
    args = ["run", "--dataset", "synthetic", "--set", flag, "--out", str(tmp_path / "r")]
    one_line_error(CliRunner().invoke(cli, args), fragment)
    assert not (tmp_path / "r").exists()


CONTINUE = [
    *("run", "--models", "gan", "--dataset", "synthetic", "--seeds", "0,", "--epochs", "0"),
    *("--batch-size", "32", "--fid-samples", "8", "--set", "data.train_limit=64"),
    *("--set", "backbone.width=4", "--set", "backbone.latent_dim=4", "--set", "eval.extras="),
    *("--set", "eval.track_points=4", "--set", "eval.track_n=8", "--set", "eval.grid_images=16"),
    *("--set", "eval.heldout_images=16", "--set", "eval.samplers=prior"),
]  # fmt: skip


@pytest.fixture(scope="module")
def short_gan(tmp_path_factory, session_cache):
    """A tiny GAN finished after 4 steps (2 epochs of 2), with tracked points."""
    from helpers import finished_sweep

    args = [*CONTINUE[1:], "--set", "train.budget_images=128"]
    with finished_sweep(tmp_path_factory, session_cache, "short", *args) as out:
        yield out


def test_continued_run_equals_a_fresh_longer_run_and_respreads_its_tracked_points(
    tmp_path, short_gan
):
    """--continue-from: the GAN (most random draws per step) continued to 8 steps equals a
    fresh 8-step run: the shorter budget ends at an epoch end, so the batch order is the
    same too, and evaluations and pictures leave training's state alone."""
    from helpers import bench

    longer = ["--set", "train.budget_images=256"]
    result = bench(*CONTINUE, *longer, "--out", tmp_path / "fresh")
    assert result.exit_code == 0, result.output
    result = bench(
        *CONTINUE, *longer, "--out", tmp_path / "continued", "--continue-from", short_gan
    )
    assert result.exit_code == 0 and "continuing from" in result.output, result.output
    runs = {n: tmp_path / n / "gan-seed0" for n in ("fresh", "continued")}
    rows = {n: pd.read_csv(d / "metrics.csv") for n, d in runs.items()}

    def training(frame):
        return frame[frame.metric.str.startswith("train/")].reset_index(drop=True)

    pd.testing.assert_frame_equal(training(rows["continued"]), training(rows["fresh"]))
    weights = [torch.load(d / "checkpoint.pt", weights_only=False)["model"] for d in runs.values()]
    assert all(torch.equal(weights[0][k], v) for k, v in weights[1].items())
    # The shorter run's points (k/4 of 4 steps) stay; of the 8-step budget's (k/4 of 8), the
    # two due by step 4 count as done, the other two come at steps 6 and 8.
    assert list(rows["continued"].query("metric == @TRACK_FID").step) == [1, 2, 3, 4, 6, 8]
    assert list(rows["fresh"].query("metric == @TRACK_FID").step) == [2, 4, 6, 8]
    # Its full evaluation at step 4 stays as an evaluation; the final one equals the fresh run's.
    assert list(rows["continued"].query("metric == 'fid'").step) == [4, 8]
    final = [last(rows[n], "final_fid").value for n in ("fresh", "continued")]
    assert final[0] == final[1]


@pytest.mark.parametrize(
    "change, fragment",
    [
        (["--set", "train.budget_images=128"], "no later than where it stopped (step 4)"),
        (["--set", "train.budget_images=64"], "at step 2 (or 0 s), no later than"),
        (["--set", "train.budget_images=256", "--fid-samples", "9"], "eval.fid_samples=8 vs 9"),
        (["--set", "train.budget_images=256", "--models", "ae"], "has no run ae-seed0"),
    ],
)
def test_continue_from_refuses_another_setting_in_one_line_and_writes_nothing(
    tmp_path, short_gan, change, fragment
):
    from helpers import bench, snapshot

    before = snapshot(short_gan)
    out = tmp_path / "longer"
    result = bench(*CONTINUE, *change, "--out", out, "--continue-from", short_gan)
    one_line_error(result, fragment)
    assert not any(p.name != "sweep.json" for p in out.rglob("*") if p.is_file())
    assert snapshot(short_gan) == before
