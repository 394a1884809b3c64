"""`bench run` / `bench report` end to end on the synthetic set, and every bad input."""

import json

import pandas as pd
import pytest
from click.testing import CliRunner
from helpers import one_line_error

from bench.cli import cli

TINY = [
    "--dataset", "synthetic", "--epochs", "2", "--batch-size", "32",
    "--set", "backbone.width=16", "--set", "backbone.latent_dim=8",
    "--set", "data.train_limit=128", "--set", "eval.heldout_images=32",
    "--set", "eval.grid_images=16", "--set", "eval.every=1", "--set", "eval.track_points=0",
]  # fmt: skip


def bench(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result


def snapshot(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory, session_cache):
    """One real tiny sweep with FID, shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("sweep") / "r"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DOGBENCH_CACHE", str(session_cache))
        result = bench(
            "run", "--models", "ae,vae:beta=4,gan", *TINY, "--fid-samples", 40, "--out", out
        )
    assert result.exit_code == 0, result.output
    return out, result.output


def test_run_writes_every_result_file(finished):
    out, output = finished
    runs = {"ae-seed0", "vae_beta=4-seed0", "gan-seed0"}
    assert runs <= {p.name for p in out.iterdir()}
    for run in runs:
        assert json.loads((out / run / "status.json").read_text())["status"] == "ok"
        config = json.loads((out / run / "config.json").read_text())
        assert config["data"]["dataset"] == "synthetic" and config["seed"] == 0
        env = json.loads((out / run / "env.json").read_text())
        assert env["packages"]["torch"] and env["fid_weights"]
        metrics = pd.read_csv(out / run / "metrics.csv")
        assert list(metrics.columns) == [
            "run",
            "model",
            "seed",
            "epoch",
            "step",
            "metric",
            "value",
            "n",
        ]
        fid = metrics[metrics.metric == "fid"]
        assert list(fid.epoch) == [1, 2] and set(fid.n) == {40}
        assert {
            "best_fid",
            "final_fid",
            "best_fid_epoch",
            "kid_mean",
            "precision",
            "sharpness",
        } <= set(metrics.metric)
        assert (out / run / "samples.png").exists() and (out / run / "checkpoint.pt").exists()
    vae = pd.read_csv(out / "vae_beta=4-seed0" / "metrics.csv")
    assert {"train/kl_nats", "train/recon_nll", "kl_nats", "recon_mse", "psnr"} <= set(vae.metric)
    assert (
        json.loads((out / "vae_beta=4-seed0" / "config.json").read_text())["model_params"]["beta"]
        == 4.0
    )
    gan = pd.read_csv(out / "gan-seed0" / "metrics.csv")
    assert {"train/d_loss", "train/g_loss"} <= set(gan.metric) and "recon_mse" not in set(
        gan.metric
    )
    assert not (out / "gan-seed0" / "recon.png").exists()
    assert "final_fid" in output and "vae:beta=4" in output  # the summary table


def test_every_run_records_its_cost(finished):
    out, _ = finished
    for run in ("ae-seed0", "vae_beta=4-seed0", "gan-seed0"):
        m = pd.read_csv(out / run / "metrics.csv")
        per_epoch = ("cost/train_seconds", "cost/train_cpu_seconds", "cost/train_images_per_s")
        for metric in (*per_epoch, "cost/epoch_wall_seconds", "cost/eval_seconds"):
            rows = m[m.metric == metric]
            assert list(rows.epoch) == [1, 2] and (rows.value > 0).all(), (run, metric)
        wall = m[m.metric == "cost/epoch_wall_seconds"].value.to_numpy()
        train_eval = m[m.metric.isin(["cost/train_seconds", "cost/eval_seconds"])]
        assert (wall >= train_eval.groupby("epoch").value.sum().to_numpy()).all()
        assert m[m.metric == "cost/peak_rss_mib"].value.item() > 100
        env = json.loads((out / run / "env.json").read_text())
        assert env["device"] == "cpu" and env["threads"] >= 1


def test_report_reads_results(finished, tmp_path):
    out, _ = finished
    before = snapshot(out)
    result = bench("report", out, "--out", tmp_path / "rep")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "rep" / "REPORT.md").read_text()
    assert "FID (N=40)" in text and "vae:beta=4" in text and "gan" in text
    assert "run wall (s)" in text and "train CPU-s/epoch" in text  # the cost table
    assert (tmp_path / "rep" / "fid_vs_epoch.png").exists()
    assert snapshot(out) == before


def test_rerun_skips_finished_runs(finished):
    out, _ = finished
    before = snapshot(out)
    result = bench("run", "--models", "ae,vae:beta=4,gan", *TINY, "--fid-samples", 40, "--out", out)
    assert result.exit_code == 0, result.output
    assert result.output.count("already finished, skipped") == 3
    after = snapshot(out)
    assert {p: b for p, b in after.items() if p.name != "sweep.json"} == {
        p: b for p, b in before.items() if p.name != "sweep.json"
    }


def test_same_seed_same_metrics(tmp_path):
    frames = []
    for name in ("a", "b"):
        result = bench(
            "run", "--models", "vae,gan", *TINY, "--fid-samples", 0, "--out", tmp_path / name
        )
        assert result.exit_code == 0, result.output
        frame = pd.concat(pd.read_csv(p) for p in sorted((tmp_path / name).glob("*/metrics.csv")))
        frames.append(frame[~frame.metric.str.startswith("cost/")].reset_index(drop=True))
    pd.testing.assert_frame_equal(frames[0], frames[1])


def test_divergence_stops_run_and_sweep_goes_on(tmp_path):
    result = bench(
        "run",
        "--models",
        "ae,gan",
        *TINY,
        "--fid-samples",
        0,
        "--set",
        "train.loss_bound=0.5",
        "--out",
        tmp_path / "r",
    )
    assert result.exit_code == 0, result.output
    status = {
        p.parent.name: json.loads(p.read_text()) for p in (tmp_path / "r").glob("*/status.json")
    }
    assert status["gan-seed0"]["status"] == "diverged"  # d_loss starts near 1.39 > 0.5
    assert status["gan-seed0"]["diverged_step"] == 1 and "d_loss" in status["gan-seed0"]["reason"]
    assert status["ae-seed0"]["status"] == "ok"  # ae's MSE stays below 0.5


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--models", "ae,vqvae"], ["unknown model 'vqvae'", "accepted: ae, dogvae, gan, vae"]),
        (["--models", "vae:gamma=1"], ["unknown key 'gamma'"]),
        (["--dataset", "imagenet"], ["unknown dataset 'imagenet'", "accepted"]),
        (["--set", "train.epochs=many"], ["config.train.epochs", "expected int"]),
        (["--set", "train.epoch=3"], ["unknown key 'epoch'", "accepted: epochs"]),
        (["--set", "data.image_size=48"], ["image_size", "32, 64"]),
        (["--seeds", "x"], ["--seeds"]),
        (["--seeds", "0"], ["--seeds 0", "--seeds 0,"]),
        (["--epochs", "0"], ["train.epochs must be >= 1"]),
        (["--set", "train.epochs=-2"], ["train.epochs must be >= 1"]),
        (["--set", "train.batch_size=0"], ["train.batch_size must be >= 1"]),
        (["--set", "eval.extras=[kid,is]"], ["unknown eval.extras 'is'"]),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, args, fragments):
    result = bench("run", *TINY, "--fid-samples", 0, *args, "--out", tmp_path / "r")
    one_line_error(result, *fragments)


def test_bad_config_file_and_empty_folder(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  epochs: 2\n  learning_rate: 3\n")
    one_line_error(bench("run", "--config", cfg, "--out", tmp_path / "r"), "learning_rate")
    (tmp_path / "empty").mkdir()
    one_line_error(
        bench("run", *TINY, "--dataset", f"folder:{tmp_path / 'empty'}", "--out", tmp_path / "r"),
        "no images",
    )


def test_other_config_in_same_folder_is_refused(finished, tmp_path):
    out, _ = finished
    before = snapshot(out)
    result = bench(
        "run",
        "--models",
        "ae",
        *TINY,
        "--fid-samples",
        40,
        "--set",
        "backbone.width=32",
        "--out",
        out,
    )
    one_line_error(result, "backbone.width", "--overwrite")
    assert snapshot(out) == before


def test_evaluation_leaves_training_rng_untouched(tmp_path):
    """A first Inception build inside an evaluation must not shift the training RNG."""
    import torch

    from bench.core.config import EvalConfig
    from bench.data.images import load_images
    from bench.metrics import fid
    from bench.metrics.evaluate import Evaluator
    from models import build_model, parse_model_spec

    train = load_images("synthetic", "train", 32, tmp_path)
    test = load_images("synthetic", "test", 32, tmp_path)
    cfg = EvalConfig(fid_samples=8, heldout_images=8, extras=[], samplers=["prior"])
    model = build_model(parse_model_spec("vae"), {"width": 16, "latent_dim": 8}, 32)
    fid.clear_inception_cache()
    torch.manual_seed(3)
    before = torch.get_rng_state()
    Evaluator(cfg, train, test, torch.device("cpu"), train_images=train.images[:64])(model)
    assert torch.equal(torch.get_rng_state(), before)
