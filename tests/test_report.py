"""bench report: loading/aggregation with known numbers, and the command end to end."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torchvision.utils import save_image

from bench.analysis import report as rp
from bench.results import table as rt

NAN = float("nan")


def rows(run: str, metric: str, values: list[float], epochs: list[int] | None = None) -> list:
    epochs = epochs or list(range(1, len(values) + 1))
    return [
        {"run": run, "model": run[0], "seed": 0, "epoch": e, "step": 10 * e, "metric": metric}
        | {"value": v, "n": NAN if metric.startswith("train/") else 500}
        for e, v in zip(epochs, values, strict=True)
    ]


# ---------------------------------------------------------------- pure functions


def test_mean_ci_of_1_2_3():
    s = rt.mean_ci([1.0, 2.0, 3.0])
    assert s["n"] == 3 and s["mean"] == 2.0 and s["std"] == 1.0 and s["median"] == 2.0
    # t_{0.975, 2} = 4.302653; half-width = 4.302653 * 1 / sqrt(3)
    assert s["ci_half"] == pytest.approx(2.484138, abs=1e-6)
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((2 - 2.484138, 2 + 2.484138), abs=1e-6)


def test_mean_ci_single_and_empty():
    one = rt.mean_ci([7.0, NAN])
    assert one["n"] == 1 and one["mean"] == 7.0
    assert math.isnan(one["std"]) and math.isnan(one["ci_half"])
    assert rt.mean_ci([])["n"] == 0


def test_final_metrics_last_epoch_summary_rows_and_fallback():
    df = pd.DataFrame(
        rows("a1", "fid", [50, 40, 45])
        + rows("a1", "psnr", [10, 11, 12])
        + rows("a1", "train/loss", [3, 2, 1])
        + rows("a1", "cost/train_seconds", [5, 6, 7])
        + rows("a1", "best_fid", [40], [3])
        + rows("a1", "best_fid_epoch", [2], [3])
        + rows("a1", "final_fid", [45], [3])
        # b1: still running, no summary rows; its last psnr is NaN and must stay NaN
        + rows("b1", "fid", [30, 20])
        + rows("b1", "psnr", [9, NAN])
    )
    fm = rt.final_metrics(df).set_index("run")
    assert fm.loc["a1", ["fid", "psnr", "best_fid", "best_fid_epoch", "final_fid"]].tolist() == [
        45,
        12,
        40,
        2,
        45,
    ]
    assert fm.loc["b1", ["best_fid", "best_fid_epoch", "final_fid"]].tolist() == [20, 2, 20]
    assert math.isnan(fm.loc["b1", "psnr"])
    assert not any(c.startswith(("train/", "cost/")) for c in fm.columns)


def test_run_seconds_sums_wall_time_or_train_plus_eval():
    df = pd.DataFrame(
        rows("new", "cost/train_seconds", [5, 6])
        + rows("new", "cost/eval_seconds", [3], [2])
        + rows("new", "cost/epoch_wall_seconds", [5.5, 9.5])
        # recorded before cost/epoch_wall_seconds existed: train + eval seconds
        + rows("old", "cost/train_seconds", [5, 6])
        + rows("old", "cost/eval_seconds", [3], [2])
        # resumed across the change: epoch 1 old-style, epoch 2 with the wall row
        + rows("mixed", "cost/train_seconds", [5, 6])
        + rows("mixed", "cost/eval_seconds", [3], [2])
        + rows("mixed", "cost/epoch_wall_seconds", [9.5], [2])
        + rows("no_eval", "cost/train_seconds", [5, 6])  # e.g. diverged before evaluating
    )
    costs = rt.run_costs(df)
    assert costs[rt.RUN_SECONDS].to_dict() == {
        "mixed": 14.5,
        "new": 15.0,
        "no_eval": 11.0,
        "old": 14.0,
    }
    assert costs.loc["new", "cost/train_seconds"] == 5.5  # other cost rows: mean over epochs
    assert costs[rt.EVAL_SHARE].to_dict() == {
        "mixed": 3 / 14.5,
        "new": 0.2,
        "no_eval": 0.0,
        "old": 3 / 14,
    }


def test_eval_share_counts_tracked_points_and_every_evaluation():
    df = pd.DataFrame(
        rows("r", "cost/train_seconds", [6, 6])
        + rows("r", "cost/track_seconds", [1, 1, 1])  # three tracked points, in epochs 1-3
        + rows("r", "cost/eval_seconds", [2], [2])
        + rows("r", "cost/epoch_wall_seconds", [8, 7, 5])
    )
    assert rt.run_costs(df).loc["r", rt.EVAL_SHARE] == pytest.approx((3 + 2) / 20)
    # a diverged epoch 4 keeps its tracked point's row but has no wall time: not counted
    diverged = pd.concat([df, pd.DataFrame(rows("r", "cost/track_seconds", [9], [4]))])
    assert rt.run_costs(diverged).loc["r", rt.EVAL_SHARE] == pytest.approx((3 + 2) / 20)


def test_per_run_stability_gap_and_oscillation():
    df = pd.DataFrame(
        rows("a1", "fid", [50, 40, 45])
        + rows("a1", "train/loss", [10, 9, 1, 2, 3])  # last 3 epochs: std 1 / mean 2
        + rows("a1", "train/d_loss", [4, -4])  # mean |x| = 4, std = sqrt(32)
        + rows("b1", "fid", [30])
        + rows("b1", "train/loss", [5])  # one epoch: oscillation undefined
    )
    runs = pd.DataFrame({"run": ["a1", "b1"], "model": ["a", "b"], "seed": [0, 0]})
    runs = runs.assign(status=["ok", "running"], diverged_step=[None, None])
    st = rt.per_run_stability(df, runs, window=3).set_index("run")
    assert st.loc["a1", ["best_fid", "best_fid_epoch", "final_fid", "fid_gap"]].tolist() == [
        40,
        2,
        45,
        5,
    ]
    assert st.loc["a1", "fid_gap_rel"] == pytest.approx(0.125)
    assert st.loc["a1", "osc/loss"] == pytest.approx(0.5)
    assert st.loc["a1", "osc/d_loss"] == pytest.approx(math.sqrt(32) / 4)
    assert math.isnan(st.loc["b1", "osc/loss"]) and st.loc["b1", "fid_gap"] == 0
    assert st.loc["b1", "status"] == "running"


def test_aggregate_over_seeds_stats_and_success_rate():
    per_run = pd.DataFrame(
        {
            "run": ["m1-0", "m1-1", "m1-2", "m2-0", "m2-1", "m2-2"],
            "model": ["m1"] * 3 + ["m2"] * 3,
            "seed": [0, 1, 2] * 2,
            "status": ["ok", "ok", "ok", "ok", "diverged", "running"],
            "final_fid": [41.0, 44.0, 50.0, 30.0, NAN, 31.0],
            "psnr": [1.0, 2.0, 3.0, 9.0, 8.0, 7.0],
            "fid_gap": [0.0, 2.0, 10.0, 1.0, NAN, NAN],
        }
    )
    metric_stats, model_stats = rt.aggregate_over_seeds(per_run, by="model", tolerance=0.10)
    s = metric_stats.set_index(["model", "metric"])
    assert s.loc[("m1", "psnr"), ["n", "mean", "std", "median"]].tolist() == [3, 2.0, 1.0, 2.0]
    assert s.loc[("m1", "psnr"), "ci_half"] == pytest.approx(2.484138, abs=1e-6)
    assert s.loc[("m1", "final_fid"), "mean"] == pytest.approx(45.0)
    # m2: only the ok seed counts for means; one value -> no std, no CI
    assert s.loc[("m2", "psnr"), ["n", "mean"]].tolist() == [1, 9.0]
    assert math.isnan(s.loc[("m2", "psnr"), "ci_half"])
    ms = model_stats.set_index("model")
    # m1: best 41 -> within 10% is <= 45.1: seeds 41 and 44 succeed, 50 does not
    assert ms.loc["m1", ["n_success", "n_finished"]].tolist() == [2, 3]
    assert ms.loc["m1", "success_rate"] == pytest.approx(2 / 3)
    assert ms.loc["m1", "median_fid_gap"] == 2.0
    # m2: the diverged run fails, the running one is not counted yet
    assert ms.loc["m2", ["n_ok", "n_diverged", "n_running", "n_finished"]].tolist() == [1, 1, 1, 2]
    assert ms.loc["m2", "success_rate"] == 0.5


def test_format_mean_std():
    assert rp.fmt_mean_std(2, 41.0, math.sqrt(2)) == "41.0 ± 1.4"
    assert rp.fmt_mean_std(2, 0.011, 0.0014142) == "0.0110 ± 0.0014"
    assert rp.fmt_mean_std(1, 35.0, NAN) == "35"
    assert rp.fmt_mean_std(0, NAN, NAN) == "—"
    values = np.array([0.05, 0.05, 0.05])
    assert rp.fmt_mean_std(3, values.mean(), values.std(ddof=1) + 1e-18) == "0.05 ± 0"


# ---------------------------------------------------------------- fake results folder


def write_run(root: Path, model: str, seed: int, status: dict, metrics: list[dict], images=()):
    run_id = f"{model.replace(':', '_').replace(',', '_')}-seed{seed}"
    d = root / run_id
    d.mkdir(parents=True)
    model_name, _, params = model.partition(":")
    config = {
        "run": run_id,
        "model": model,
        "model_name": model_name,
        "model_params": {"latent_dim": 16} | ({"beta": 1.0} if params else {}),
        "seed": seed,
        "data": {"dataset": "cifar10-dog", "image_size": 32},
        "train": {"epochs": 3},
        "eval": {"fid_samples": 500, "fid_split": "train", "fid_exact": False},
    }
    (d / "config.json").write_text(json.dumps(config))
    (d / "status.json").write_text(json.dumps({"diverged_step": None, "reason": None} | status))
    env = {"git_commit": "abc1234", "device": "cpu", "device_name": "Test CPU"}
    (d / "env.json").write_text(json.dumps(env | {"data_source": "/data/cifar10-dog"}))
    if metrics:
        df = pd.DataFrame(metrics).assign(run=run_id, model=model, seed=seed)
        df[["run", "model", "seed", "epoch", "step", "metric", "value", "n"]].to_csv(
            d / "metrics.csv", index=False
        )
    for name in images:
        save_image(torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(seed)), d / name)
    return d


def curves(fid, train: dict, evals: dict, summary=True) -> list[dict]:
    out = rows("x", "fid", fid)
    for metric, values in train.items():
        out += rows("x", metric, values)
    for metric, value in evals.items():
        out += rows("x", metric, [value], [len(fid)])
    out += rows("x", "cost/train_seconds", [2.0] * len(fid))
    if summary:
        best = int(np.argmin(fid))
        out += rows("x", "best_fid", [fid[best]], [len(fid)])
        out += rows("x", "best_fid_epoch", [best + 1], [len(fid)])
        out += rows("x", "final_fid", [fid[-1]], [len(fid)])
        out += rows("x", "cost/peak_rss_mib", [1000.0], [len(fid)])
    return out


def make_results(root: Path) -> Path:
    ok = {"status": "ok", "epoch": 3, "step": 300}
    vae_loss = {"train/loss": [90, 80, 78], "train/recon_nll": [60, 55, 54], "train/kl_nats": [30, 25, 24]}  # fmt: skip
    gan_loss = {"train/d_loss": [1.2, 0.8, 1.1], "train/g_loss": [2.0, 3.1, 2.2]}
    write_run(
        root, "vae:beta=1", 0, ok,
        curves([60, 45, 40], vae_loss, {"recon_mse": 0.010, "psnr": 20.0, "kl_nats": 30.0, "kid_mean": 0.02}),
        ["samples.png", "recon.png"],
    )  # fmt: skip
    write_run(
        root, "vae:beta=1", 1, ok,
        curves([62, 41, 42], vae_loss, {"recon_mse": 0.012, "psnr": 19.2, "kl_nats": 32.0, "kid_mean": 0.03}),
        ["samples.png", "recon.png"],
    )  # fmt: skip
    write_run(
        root, "dcgan", 0, ok, curves([80, 50, 35], gan_loss, {"kid_mean": 0.01}), ["samples.png"]
    )
    diverged = {"status": "diverged", "epoch": 1, "step": 345, "diverged_step": 345}
    write_run(
        root, "dcgan", 1, diverged | {"reason": "d_loss=nan at step 345"},
        curves([90], {"train/d_loss": [NAN], "train/g_loss": [5.0]}, {}, summary=False),
    )  # fmt: skip
    # a run that has just started: status.json only, no metrics.csv, no images yet
    write_run(root, "ae", 0, {"status": "running", "epoch": 0, "step": 0}, [])
    return root


def snapshot(root: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_load_runs_on_folder(tmp_path):
    make_results(tmp_path / "sweep")
    runs, metrics = rt.load_runs(tmp_path)
    assert len(runs) == 5 and set(runs["status"]) == {"ok", "diverged", "running"}
    assert runs["run"].str.startswith("sweep/").all()  # relative path: unique across sweeps
    vae = runs[runs["model"] == "vae:beta=1"]
    assert vae["beta"].tolist() == [1.0, 1.0] and vae["dataset"].tolist() == ["cifar10-dog"] * 2
    assert (runs["label"] == runs["model"]).all()
    assert set(metrics["run"]) == set(runs["run"]) - {"sweep/ae-seed0"}
    assert rt.model_order(runs) == ["ae", "dcgan", "vae:beta=1"]


def test_labels_separate_datasets(tmp_path):
    ok = {"status": "ok", "epoch": 1, "step": 1}
    write_run(tmp_path / "a", "ae", 0, ok, rows("x", "fid", [10]))
    d = write_run(tmp_path / "b", "ae", 0, ok, rows("x", "fid", [20]))
    config = json.loads((d / "config.json").read_text())
    config["data"]["dataset"] = "petimages-dog"
    (d / "config.json").write_text(json.dumps(config))
    runs, _ = rt.load_runs(tmp_path)
    assert sorted(runs["label"]) == ["ae dataset=cifar10-dog", "ae dataset=petimages-dog"]
    # same settings, same seed in two sweep folders: a repeat, kept apart by folder
    config["data"]["dataset"] = "cifar10-dog"
    (d / "config.json").write_text(json.dumps(config))
    runs, _ = rt.load_runs(tmp_path)
    assert sorted(runs["label"]) == ["ae [a]", "ae [b]"]


def test_report_command_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("DOGBENCH_CACHE", str(tmp_path / "cache"))
    results = make_results(tmp_path / "results")
    before = snapshot(results)
    result = CliRunner().invoke(rp.report_command, [str(results)])
    assert result.exit_code == 0, result.output
    outputs = {"REPORT.md", "fid_vs_epoch.png", "final_fid_by_model.png", "losses.png"}
    outputs |= {"samples.png", "reconstructions.png", "rate_distortion.png", "fid_vs_compute.png"}
    for name in outputs:
        assert (results / name).is_file(), name
        if name.endswith(".png"):
            assert Image.open(results / name).size[0] > 300
    # only the report outputs were added; no run file was touched
    after = snapshot(results)
    assert {p.name for p in set(after) - set(before)} == outputs
    assert all(after[p] == t for p, t in before.items())

    md = (results / "REPORT.md").read_text()
    final = md.split("## Final metrics")[1].split("##")[0]
    assert "FID (N=500) ↓" in final and "PSNR (dB) ↑" in final and "KID ↓" in final
    vae_row = next(line for line in final.splitlines() if line.startswith("| vae:beta=1 |"))
    # FID 40, 42; best FID 40, 41; recon MSE 0.010, 0.012; PSNR 20.0, 19.2; KL 30, 32
    header = next(line for line in final.splitlines() if line.startswith("| model |"))
    cells = dict(
        zip(
            [c.strip() for c in header.strip("|").split("|")],
            [c.strip() for c in vae_row.strip("|").split("|")],
            strict=True,
        )
    )
    assert vae_row.split(" | ")[1:4] == ["2/2", "41.0 ± 1.4", "40.50 ± 0.71"]
    assert cells["recon MSE ↓"] == "0.0110 ± 0.0014"
    assert cells["PSNR (dB) ↑"] == "19.60 ± 0.57"  # only one model has PSNR: nothing to bold
    assert cells["KL (nats)"] == "31.0 ± 1.4"
    dcgan_row = next(line for line in final.splitlines() if line.startswith("| dcgan |"))
    assert dcgan_row.split(" | ")[1:3] == ["1/2", "**35**"]  # the diverged seed is left out
    stability = md.split("## Stability over seeds")[1].split("##")[0]
    dcgan_stab = next(line for line in stability.splitlines() if line.startswith("| dcgan |"))
    assert "| 2 | 1 | 1/2 (50%) |" in dcgan_stab
    assert "1 running" in stability
    cost = md.split("## Cost")[1].split("##")[0]
    assert "train s/epoch" in cost and "peak RSS (MiB)" in cost
    assert "**FID:** N=500 generated samples" in md and "**Commit:** abc1234" in md
    runs = md.split("## Runs")[1]
    assert "**diverged** at step 345 (d_loss=nan)" in runs
    assert "| `ae-seed0` | ae | 0 | running | 0/3 |" in runs
    for name in outputs - {"REPORT.md"}:
        assert f"]({name})" in md


def test_report_out_dir_leaves_results_untouched(tmp_path):
    results = make_results(tmp_path / "results")
    before = snapshot(results)
    result = CliRunner().invoke(rp.report_command, [str(results), "--out", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    assert snapshot(results) == before
    assert (tmp_path / "rep" / "REPORT.md").is_file()


def test_report_plots_are_the_same_on_every_run(tmp_path):
    # A pure reader re-run any time gives the same files: the final-FID strip plot's jitter
    # (np.random in seaborn) is seeded, and the caller's global numpy state is left as it was.
    results = make_results(tmp_path / "results")
    np.random.seed(123)
    np.random.random(5)  # a state part way into the key
    saved = np.random.get_state()
    expected_draws = np.random.random(3)
    np.random.set_state(saved)
    pictures = []
    for out in ("a", "b"):
        result = CliRunner().invoke(rp.report_command, [str(results), "--out", str(tmp_path / out)])
        assert result.exit_code == 0, result.output
        pictures.append((tmp_path / out / "final_fid_by_model.png").read_bytes())
    assert pictures[0] == pictures[1]
    assert (np.random.random(3) == expected_draws).all()


@pytest.mark.parametrize("kind", ["empty", "missing", "file"])
def test_bad_results_path_exits_2(tmp_path, kind):
    path = tmp_path / "results"
    if kind == "empty":
        path.mkdir()
    if kind == "file":
        path.write_text("x")
    result = CliRunner().invoke(rp.report_command, [str(path)])
    assert result.exit_code == 2
    assert result.output.startswith("Error: ") and len(result.output.strip().splitlines()) == 1


def test_report_of_sweep_that_just_started(tmp_path):
    # no metrics.csv, no images anywhere yet: the report still lists the runs as running
    for model in ("ae", "gan"):
        write_run(tmp_path, model, 0, {"status": "running", "epoch": 0, "step": 0}, [])
    result = CliRunner().invoke(rp.report_command, [str(tmp_path)])
    assert result.exit_code == 0, result.output
    md = (tmp_path / "REPORT.md").read_text()
    assert "| `gan-seed0` | gan | 0 | running | 0/3 |" in md
    assert "*fid_vs_epoch: no data yet.*" in md
    assert not list(tmp_path.glob("*.png"))


def test_collapse_indicators_flag_lost_variety():
    rows = []
    for run, recall in (("steady", [0.3, 0.35, 0.4]), ("collapsing", [0.3, 0.4, 0.1])):
        for epoch, value in enumerate(recall, 1):
            rows.append({"run": run, "epoch": epoch, "metric": "recall", "value": value})
            rows.append({"run": run, "epoch": epoch, "metric": "diversity", "value": 0.8})
    flags = rt.collapse_indicators(pd.DataFrame(rows))
    assert not flags.loc["steady", "collapse"]
    assert (
        flags.loc["collapsing", "collapse"]
        and flags.loc["collapsing", "collapse_signal"] == "recall"
    )
