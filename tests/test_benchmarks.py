"""The benchmark scripts run end to end (one tiny block each) and print their result lines."""

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load(name):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_speed_prints_both_rates_ratio_and_matching_losses(monkeypatch, capsys):
    train_speed = load("train_speed")
    argv = "train_speed --models ae --sizes 32 --steps 2 --repeats 2 --batch 8 --width 16".split()
    plain = "--precision fp32 --channels-last 0 --matmul-4x4 0 --fused-adam 0".split()
    monkeypatch.setattr(sys, "argv", argv + plain)
    train_speed.main()
    out = capsys.readouterr().out
    assert "backbone width 16, latent 128" in out.splitlines()[0]
    row = out.splitlines()[-1].split()
    assert row[:2] == ["ae", "32"], row
    plain_ips, harness_ips, ratio = float(row[2]), float(row[3]), float(row[4].rstrip("x"))
    assert plain_ips > 0 and harness_ips > 0
    assert abs(ratio - harness_ips / plain_ips) < 0.01
    assert re.fullmatch(r"\d+\.\d\d-\d+\.\d\d", row[5]), row
    # Same weights, batches and noise, every switch off: the two runs take the same steps.
    assert float(row[6]) == float(row[7])


def test_profile_step_splits_the_step_into_phases_that_sum_to_the_wall_time(monkeypatch, capsys):
    profile_step = load("profile_step")
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    monkeypatch.setattr(profile_step, "training_images", lambda size: images)
    monkeypatch.setattr(profile_step, "gemm_peak", lambda dtype: 1e11)
    argv = "profile_step --models ae --steps 2 --warmup 1 --batch 8".split()
    monkeypatch.setattr(sys, "argv", argv)
    profile_step.main()
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("ae")]
    assert [r[1] for r in rows] == ["before", "after"]
    for row in rows:
        shares = [float(s.rstrip("%")) for s in row[3:8]]
        assert abs(sum(shares) - 100) < 0.5, row
        assert float(row[8]) > 0  # GFLOP per step


def test_gate_error_rates_counts_false_fails_and_names_what_caught_each_variant(tmp_path, capsys):
    import json

    from helpers import write_run

    gate = load("gate_error_rates")
    gan = {"fid": 40.0, "recall": 0.3, "coverage": 0.5, "diversity": 1.0}
    vae = {"recon_mse": 0.02, "psnr": 21.0, "kl_nats": 30.0}
    for seed, k in enumerate([0, 2, -1, 1, -2]):  # +-2% seed noise
        for label, values in (("gan", gan), ("vae", vae)):
            write_run(
                tmp_path / "sweep", label, seed, {m: v * (1 + 0.01 * k) for m, v in values.items()}
            )
    write_run(tmp_path / "quarter", "gan", 0, {**gan, "fid": 70.0}, epochs=1)
    write_run(tmp_path / "beta0", "vae:beta=0", 0, {**vae, "kl_nats": 0.5})
    write_run(tmp_path / "harmless", "gan", 0, {**gan, "fid": 40.5})
    variants = [f"{n}={tmp_path / n}" for n in ("quarter", "beta0", "harmless")]
    argv = [str(tmp_path / "sweep")] + [a for v in variants for a in ("--variant", v)]
    assert gate.main(argv) == 1  # the harmless "variant" is (rightly) not caught
    out = capsys.readouterr().out
    # 5 seeds x (gan: fid, final_fid, best_fid, recall, coverage, diversity; vae: 3)
    assert "false fails: 0 of 45 checks (0.0%; target <= 5%: met)" in out
    assert any(line.split()[:4] == ["diversity", "0", "5", "0.0%"] for line in out.splitlines())
    assert "variant quarter: gan/fid worse +75.0%" in out
    assert "variant beta0: vae/kl_nats changed -98.3%" in out  # relabelled vae:beta=0 -> vae
    assert "variant harmless: NOT caught" in out
    assert "variants caught: 2 of 3 (target: every one)" in out
    config = json.loads((tmp_path / "beta0" / "vae_beta=0-seed0" / "config.json").read_text())
    assert config["model"] == "vae:beta=0"  # the variant's own folder is not rewritten
    assert gate.main(argv[:3]) == 0  # quarter only: both targets met
    few = tmp_path / "few"
    write_run(few, "gan", 0, gan)
    assert gate.main([str(few)]) == 2
    assert "needs >= 5 finished seeds per model; gan has 1" in capsys.readouterr().err


def test_bn_sampling_recomputes_statistics_from_prior_batches_on_a_copy():
    from models import build_model, parse_model_spec

    bn_sampling = load("bn_sampling")
    torch.manual_seed(0)
    model = build_model(parse_model_spec("gan"), {"width": 8, "latent_dim": 8}, 32).eval()
    bn = bn_sampling.batchnorms(model)[0]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    z = torch.randn(6, 8)
    outs = {
        m: bn_sampling.decode_in_mode(model, m, z, batch=3, recompute_batches=4)
        for m in bn_sampling.MODES
    }
    for k, v in model.state_dict().items():  # the model itself is never touched
        assert torch.equal(v, before[k]), k
    assert not torch.allclose(outs["eval"], outs["train"])
    # The recomputed mean of the first BatchNorm is the mean of its inputs over the 4 batches
    # of fresh prior latents (equal batches: the cumulative average is the overall mean).
    inputs = []
    copy_ = bn_sampling.copy.deepcopy(model)
    first = bn_sampling.batchnorms(copy_)[0]
    first.register_forward_pre_hook(lambda m, args: inputs.append(args[0].detach()))
    bn_sampling.recompute_statistics(copy_, batches=4, batch=3, seed=5)
    want = torch.cat(inputs).transpose(0, 1).flatten(1).mean(1)
    torch.testing.assert_close(first.running_mean, want, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(first.running_mean, bn.running_mean)
    assert not first.training


def test_equal_time_textbook_loops_train_and_sample_as_the_examples_do():
    equal_time = load("equal_time")
    images = torch.randint(0, 256, (130, 3, 32, 32), dtype=torch.uint8)  # >= one VAE batch
    for name in ("gan", "vae"):
        model, seen, epochs = equal_time.train_textbook(name, 0, 0.5, images)
        assert seen > 0 and epochs == seen / 130  # partial last batches count too
        samples = model.sample(70)
        assert samples.shape == (70, 3, 32, 32)
        assert 0 <= samples.min() and samples.max() <= 1
    assert model.decoder.training is False  # the VAE example samples in eval mode
    gan = equal_time.TextbookGAN(width=8)
    gan.sample(3)
    assert gan.netG.training  # the DCGAN example samples G in train mode
    torch.manual_seed(0)
    vae = equal_time.TextbookVAE(width=8)
    batch = images[:16].float().div(127.5).sub(1)
    losses = [vae.step(batch) for _ in range(5)]
    assert losses[-1] < losses[0], losses


def test_equal_time_summary_says_whether_dogbench_is_no_worse():
    equal_time = load("equal_time")
    rows = [dict(model="gan", who="textbook", fid=f) for f in (100.0, 120.0)] + [
        dict(model="gan", who="dogbench", fid=f) for f in (90.0, 110.0)
    ]
    assert "dogbench FID 100.0 ± 14.1 vs textbook 110.0 ± 14.1 over 2 seeds" in (
        equal_time.summary(rows, "gan")
    )
    assert equal_time.summary(rows, "gan").endswith("no worse: met")
    rows[-1]["fid"] = 140.0
    assert equal_time.summary(rows, "gan").endswith("WORSE: not met")


def test_equal_time_runs_both_contenders_end_to_end(tmp_path, monkeypatch, capsys):
    import numpy as np
    from PIL import Image

    equal_time = load("equal_time")
    rng = np.random.default_rng(0)
    for split, n in (("train", 70), ("test", 30)):  # a tiny stand-in for CIFAR's dogs
        folder = tmp_path / "cifar10-dog" / split / "dog"
        folder.mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    argv = "equal_time --models gan --minutes 0.01 --seeds 3 --n 24 --data-root".split()
    monkeypatch.setattr(sys, "argv", [*argv, str(tmp_path)])
    equal_time.main()
    out = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in out if line.startswith("gan ")]
    assert [r[2] for r in rows] == ["textbook", "dogbench"], out
    for r in rows:
        assert r[1] == "3" and int(r[3]) > 0 and float(r[5]) > 0
    assert out[-1].startswith("gan: dogbench FID") and "over 1 seeds" in out[-1]


def test_kl_spike_prints_the_kl_per_warm_up_length(monkeypatch, capsys):
    kl_spike = load("kl_spike")
    argv = "kl_spike --dataset synthetic --size 32 --width 8 --latent 8 --batch 8 --steps 3"
    monkeypatch.setattr(sys, "argv", [*argv.split(), "--warmup", "0,2"])
    kl_spike.main()
    rows = capsys.readouterr().out.splitlines()
    assert rows[1].split() == ["warm-up", "KL@1", "KL@2", "KL@3", "max", "KL"]
    plain, warmed = (row.split() for row in rows[2:4])
    assert plain[0] == "0" and warmed[0] == "2"
    assert plain[1] == warmed[1]  # the first step is taken before any update: same KL
    assert float(plain[-1]) == max(map(float, plain[1:4]))


def test_track_cost_times_each_part_against_the_reference_on_the_same_features(monkeypatch, capsys):
    track_cost = load("track_cost")
    argv = "track_cost --dataset synthetic --size 32 --n 12 --repeats 1".split()
    monkeypatch.setattr(sys, "argv", argv)
    track_cost.main()
    rows = [r.split(" | ") for r in capsys.readouterr().out.splitlines() if r.startswith("| 12 ")]
    assert [r[1] for r in rows] == [
        "Inception (fast, " + track_cost.fid.feature_mode("cpu", "fast") + ")",
        "Fréchet (gram)",
        "Fréchet (gram)",
        "KID",
    ]
    gram_vs_eigh, kid_vs_torchmetrics = rows[1], rows[3]
    assert abs(float(gram_vs_eigh[-1].rstrip(" |"))) < 1e-5  # the same FID
    assert abs(float(kid_vs_torchmetrics[-1].rstrip(" |"))) < 1e-6  # the same KID
    # The speed-up is the benchmark's output, not this test's: timings on a shared machine
    # are noise (one subset instead of 100 measured 0.7× here with the cores contended).
    assert float(kid_vs_torchmetrics[5].rstrip("×")) > 0


def test_fid_bf16_switches_layers_as_the_library_computes_and_restores_the_network(
    monkeypatch, capsys
):
    fid_bf16 = load("fid_bf16")
    fid = fid_bf16.fid
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    net = fid._folded_inception(torch.device("cpu"), 2048)
    assert len(fid_bf16.layers(net)) == 19  # 5 stem convs, 2 max pools, 11 blocks, avg pool
    folded = fid.inception_features(images, numerics="folded")
    fast = fid.inception_features(images, numerics="fast")
    with fid_bf16.bf16_layers(net, set()):
        none = fid_bf16.features(net, images, batch=2)
    with fid_bf16.bf16_layers(net, set(fid_bf16.layers(net))):
        every = fid_bf16.features(net, images, batch=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the whole net, as the fast path runs it
        whole = fid_bf16.features(net, images, batch=2)
    np.testing.assert_allclose(none, folded, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(every, whole, rtol=1e-5, atol=1e-6)
    if fid._native_bf16_cpu():  # elsewhere the library's fast path is fp32
        np.testing.assert_allclose(every, fast, rtol=1e-5, atol=1e-6)
    for variant in (fid_bf16.rounded_weights, fid_bf16.rounded_activations, fid_bf16.split_weights):
        with variant(net):
            assert not np.allclose(fid_bf16.features(net, images, batch=2), folded, rtol=1e-5)
        # and the network is restored: the library's folded features are as before
        np.testing.assert_array_equal(fid.inception_features(images, numerics="folded"), folded)

    sets = {
        k: torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
        for k in ("cifar_train", "cifar_test", "pet64", "pet64_b")
    }
    monkeypatch.setattr(fid_bf16, "image_sets", lambda data, n, generated: sets)
    monkeypatch.setattr(sys, "argv", "fid_bf16 --n 2 --pairs cifar".split())
    fid_bf16.main()
    rows = capsys.readouterr().out.splitlines()
    assert rows[2].startswith("folded fp32 (published): FID")
    labels = [r[:42].strip() for r in rows[3:]]
    assert labels[:2] == ["fp32, final features rounded to bf16", "bf16 everywhere (fast path)"]
    assert "fp32 math, bf16-rounded weights" in labels
    for row in rows[3:]:
        *_, diff, rate = row.split()
        assert diff.endswith("%") and float(diff.rstrip("%")) == float(diff.rstrip("%")), row
        emulated = row.startswith(("fp32 math", "fp32, final"))
        assert (rate == "(emulated)") if emulated else float(rate) > 0, row


def test_verdict_noise_prints_each_runs_change_with_its_standard_error(tmp_path, capsys):
    from test_tracked import write_tracked_sweep

    verdict_noise = load("verdict_noise")
    results = write_tracked_sweep(tmp_path / "r")
    assert verdict_noise.main([str(results)]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in lines[2:]}
    assert len(rows) == 4
    gan = rows["r/gan-seed0"]
    # the rising curve's last 4 points 150, 160, 165, 170: slope 6.5 per point, so +19.5 FID
    # units ± 2.6 (scipy's linregress), / 170; residuals -1.5, 2, 0.5, -1 give a residual sd
    # of sqrt(7.5 / 2) = 1.94, 1.1% of 170
    assert gan[3:7] == ["+19.5", "+11.5%", "1.1%", "1.5%"]
    assert gan[-1].rstrip(" |") == "degrading"
    assert verdict_noise.main([str(tmp_path / "none")]) == 2


def test_pixel_scale_prints_windows_and_the_first_step_below_the_mean_image(capsys):
    pixel_scale = load("pixel_scale")
    halves = torch.zeros(4, 3, 2, 2, dtype=torch.uint8)
    halves[2:] = 255  # per pixel: half the images 0, half 1 -> variance 0.25
    assert abs(pixel_scale.mean_image_mse(halves, chunk=3) - 0.25) < 1e-12
    argv = "--model ae --dataset synthetic --size 32 --width 8 --latent 8 --batch 8".split()
    pixel_scale.main([*argv, "--steps", "4", "--every", "2"])
    rows = capsys.readouterr().out.splitlines()
    assert rows[1].split() == ["step", "recon", "MSE", "decoded", "mean", "data", "mean"]
    assert [r.split()[0] for r in rows[2:4]] == ["2", "4"]
    assert rows[-1].startswith("first batch below the mean-image MSE: ")
    args = pixel_scale.parse_args([*argv, "--steps", "2"])
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    quiet = lambda line: None  # noqa: E731
    assert pixel_scale.run(args, images, baseline=float("inf"), say=quiet) == 1
    assert pixel_scale.run(args, images, baseline=0.0, say=quiet) is None


def test_memory_phases_names_the_call_chains_of_a_bench_run(tmp_path, capsys):
    memory_phases = load("memory_phases")
    args = ["--every", "0.01", "--", "run", "--models", "ae", "--dataset", "synthetic"]
    args += ["--epochs", "1", "--fid-samples", "0", "--out", str(tmp_path / "r")]
    args += ["--set", "data.train_limit=64", "--set", "backbone.width=4"]
    args += ["--set", "eval.track_points=0", "--set", "eval.extras="]
    peaks, status = memory_phases.main(args)
    out = capsys.readouterr().out
    assert status == 0
    assert (tmp_path / "r" / "ae-seed0" / "metrics.csv").exists()  # the command really ran
    assert any("train." in chain for chain in peaks)  # frames of bench.harness.train
    assert all(peak > 2**20 for peak in peaks.values())
    lines = out.splitlines()
    table = lines[
        lines.index(next(x for x in lines if x.startswith("peak RSS per call chain"))) + 1 :
    ]
    assert len(table) == min(len(peaks), 25) and all(row.split()[1] == "GiB" for row in table)
    assert memory_phases.parse_args(["--", "run", "--epochs", "1"])[1] == ["run", "--epochs", "1"]
    for bad in (["--every", "1"], ["--every", "0", "--", "run"], ["--depth", "0", "--", "run"]):
        with pytest.raises(SystemExit) as exit_info:
            memory_phases.parse_args(bad)
        assert exit_info.value.code == 2
    # Bad input to the bench command itself: one line, its exit status 2, still a table.
    _, status = memory_phases.main(
        ["--", "run", "--models", "nosuchmodel", "--out", str(tmp_path / "x")]
    )
    assert status == 2 and "nosuchmodel" in capsys.readouterr().err
