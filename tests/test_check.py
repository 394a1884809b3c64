"""`bench baseline` / `bench check` on hand-made results folders (no training)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import write_run
from scipy import stats

from bench.analysis.check import (
    baseline_command,
    check_command,
    compare_metric,
    parse_tolerances,
)
from bench.analysis.stats import prediction_interval, welch_interval
from bench.core.layout import STATUS_FILE, Status

GOOD = {
    "ae": {"recon_mse": 0.0120, "psnr": 24.0},
    "vae:beta=4": {"fid": 80.0, "recon_mse": 0.0200, "psnr": 21.0, "kl_nats": 30.0},
    "gan": {"fid": 40.0},
}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DOGBENCH_CACHE", str(tmp_path / "cache"))


def write_sweep(root: Path, models: dict, seeds=(0,), **kwargs) -> Path:
    """models: label -> {metric: value} (same for every seed) or list of dicts, one per seed."""
    for label, metrics in models.items():
        per_seed = metrics if isinstance(metrics, list) else [metrics] * len(seeds)
        for seed, values in zip(seeds, per_seed, strict=True):
            write_run(root, label, seed, values, **kwargs)
    return root


def invoke(command, *args):
    return CliRunner().invoke(command, [str(a) for a in args])


def make_baseline(tmp_path, models=GOOD, seeds=(0,), **kwargs) -> Path:
    results = write_sweep(tmp_path / "base", models, seeds, **kwargs)
    out = tmp_path / "baselines" / "ref.json"
    result = invoke(baseline_command, results, "--out", out)
    assert result.exit_code == 0, result.output
    return out


def check(tmp_path, baseline, models, *extra, seeds=(0,), name="now", **kwargs):
    results = write_sweep(tmp_path / name, models, seeds, **kwargs)
    return invoke(check_command, results, "--baseline", baseline, *extra)


def last_line(result) -> str:
    return result.output.strip().splitlines()[-1]


def test_baseline_file_holds_final_values_per_seed(tmp_path):
    models = {"gan": [{"fid": 40.123456789}, {"fid": 44.0}]}
    path = make_baseline(tmp_path, models, seeds=(0, 1))
    text = path.read_text()
    doc = json.loads(text)
    assert text == json.dumps(doc, indent=2, sort_keys=True) + "\n"  # diff-friendly
    gan = doc["models"]["gan"]
    # last evaluation (not the epoch-1 decoy), 6 significant digits, one value per seed
    assert gan["metrics"]["fid"] == {"0": 40.1235, "1": 44.0}
    assert gan["metrics"]["final_fid"] == {"0": 40.1235, "1": 44.0}
    assert set(gan["metrics"]) == {"fid", "final_fid", "best_fid"}  # no train/*, no *_epoch
    assert gan["seeds"] == [0, 1] and gan["diverged_seeds"] == []
    assert gan["settings"] == {
        "dataset": "cifar10-dog",
        "image_size": 32,
        "fid_samples": 1000,
        "fid_split": "train",
        "fid_weights": "a16e4d89c0ecbc17a915dd76ea9e41211aa82562",  # the sha1, not the id
        "fid_numerics": "fp32",
        "fid_exact": False,
        "epochs": 2,
    }
    assert gan["machine"] == {
        "device": "cpu",
        "device_name": "AMD EPYC 9R14",
        "cpu_name": "AMD EPYC 9R14",
        "threads": 2,
    }
    assert doc["commit"] == "abc1234" and doc["packages"]["torch"] == "2.15.0"
    assert doc["created"][:2] == "20"


def test_sweep_checked_against_its_own_baseline_passes(tmp_path):
    seeds = (0, 1, 2)
    models = {
        k: [{m: v * (1 + 0.01 * s) for m, v in ms.items()} for s in seeds] for k, ms in GOOD.items()
    }
    baseline = make_baseline(tmp_path, models, seeds=seeds)
    result = check(tmp_path, baseline, models, seeds=seeds)
    assert result.exit_code == 0, result.output
    # ae: recon_mse, psnr; vae: fid, final_fid, best_fid, recon_mse, psnr, kl_nats; gan: 3 fid
    assert last_line(result) == "check: PASSED (11 compared)"
    assert "worse" not in result.output and "missing" not in result.output


def test_fid_fifty_percent_worse_fails_naming_model_and_metric(tmp_path):
    baseline = make_baseline(tmp_path)
    worse = {**GOOD, "gan": {"fid": 60.0}}
    result = check(tmp_path, baseline, worse)
    assert result.exit_code == 1, result.output
    assert last_line(result).startswith(
        "check: FAILED: gan/fid worse by 50.0% (single-run baseline, "
    )
    assert "tolerance 10%)" in last_line(result)
    assert "worse (single-run baseline)" in result.output
    assert "vae:beta=4  fid" in result.output  # unchanged model reported as compared


def test_tolerance_option_lets_a_change_through(tmp_path):
    baseline = make_baseline(tmp_path)
    worse = {**GOOD, "gan": {"fid": 60.0}}
    assert check(tmp_path, baseline, worse, "--tolerance", "0.6", name="a").exit_code == 0
    per_metric = "fid=0.6,final_fid=60%,best_fid=0.6"
    assert check(tmp_path, baseline, worse, "--tolerance", per_metric, name="b").exit_code == 0
    only_fid = check(tmp_path, baseline, worse, "--tolerance", "fid=0.6", name="c")
    assert only_fid.exit_code == 1 and "gan/final_fid worse" in last_line(only_fid)
    metrics_subset = check(tmp_path, baseline, worse, "--metrics", "recon_mse,psnr", name="d")
    assert metrics_subset.exit_code == 0, metrics_subset.output


def test_higher_is_better_metric_direction(tmp_path):
    baseline = make_baseline(tmp_path)
    lower_psnr = {**GOOD, "ae": {"recon_mse": 0.012, "psnr": 22.8}}  # -5%
    result = check(tmp_path, baseline, lower_psnr, name="a")
    assert result.exit_code == 1 and "ae/psnr worse by 5.0%" in last_line(result)
    higher_psnr = {**GOOD, "ae": {"recon_mse": 0.012, "psnr": 25.2}}
    result = check(tmp_path, baseline, higher_psnr, name="b")
    assert result.exit_code == 0 and "better (single-run baseline)" in result.output


def test_kl_is_two_sided(tmp_path):
    baseline = make_baseline(tmp_path)
    vae = GOOD["vae:beta=4"]
    collapsed = {**GOOD, "vae:beta=4": {**vae, "kl_nats": 15.0}}  # -50%: posterior collapse?
    result = check(tmp_path, baseline, collapsed, name="a")
    assert result.exit_code == 1
    assert "vae:beta=4/kl_nats changed by -50.0%" in last_line(result)
    higher = {**GOOD, "vae:beta=4": {**vae, "kl_nats": 45.0}}
    assert check(tmp_path, baseline, higher, name="b").exit_code == 1
    slightly = {**GOOD, "vae:beta=4": {**vae, "kl_nats": 33.0}}  # +10% < 25% default
    assert check(tmp_path, baseline, slightly, name="c").exit_code == 0


def test_multi_seed_shift_inside_noise_passes_large_shift_fails(tmp_path):
    seeds = (0, 1, 2, 3, 4)
    base_fids = [40.0, 42.0, 44.0, 41.0, 43.0]
    baseline = make_baseline(tmp_path, {"gan": [{"fid": f} for f in base_fids]}, seeds=seeds)

    def shifted(delta):
        return {"gan": [{"fid": f + delta} for f in base_fids[::-1]]}

    small = check(tmp_path, baseline, shifted(1.0), "--metrics", "fid", seeds=seeds, name="a")
    assert small.exit_code == 0, small.output
    # mean±sd (seeds), +1/42, Welch: se = 1, t(0.975, dof=8) = 2.306 -> +-5.5% of 42
    assert "42±1.6 (5)  43±1.6 (5)  +2.4%   [-3.1%, +7.9%]  10%        ok" in small.output
    large = check(tmp_path, baseline, shifted(20.0), "--metrics", "fid", seeds=seeds, name="b")
    assert large.exit_code == 1
    assert last_line(large).startswith("check: FAILED: gan/fid worse by 47.6% (95% CI +")
    # +14% with 2 noisy seeds: point beyond 10% but the interval is wide -> unclear, passes
    noisy = {"gan": [{"fid": 40.0}, {"fid": 56.0}]}
    result = check(tmp_path, baseline, noisy, "--metrics", "fid", seeds=(0, 1), name="c")
    assert result.exit_code == 0, result.output
    assert "unclear (too few seeds / too noisy to tell)" in result.output


def test_welch_interval_matches_scipy():
    base, now = [40.0, 42.0, 44.0, 41.0], [47.0, 45.5, 52.0]
    diff, low, high = welch_interval(now, base)  # mean(now) - mean(base), as check uses it
    ci = stats.ttest_ind(now, base, equal_var=False).confidence_interval(0.95)
    assert diff == pytest.approx(np.mean(now) - np.mean(base))
    assert (low, high) == pytest.approx((ci.low, ci.high))
    assert welch_interval([2.0, 2.0], [1.0, 1.0]) == (1.0, 1.0, 1.0)


def test_compare_metric_verdicts():
    base = [40.0, 41.0, 42.0]
    assert compare_metric("g", "fid", base, 0, [40.5, 41.0, 41.5], 0, 0.1).verdict == "ok"
    assert compare_metric("g", "fid", base, 0, [60.0, 61.0, 62.0], 0, 0.1).verdict == "worse"
    assert compare_metric("g", "fid", base, 0, [20.0, 21.0, 22.0], 0, 0.1).verdict == "better"
    nan_run = compare_metric("g", "fid", base, 0, [41.0, None], 0, 0.1)
    assert nan_run.verdict == "diverged" and nan_run.note == "1 of 2 seeds; baseline 0 of 3"
    assert compare_metric("g", "fid", base, 0, [], 0, 0.1).verdict == "missing"
    # baseline zero: relative change is infinite, not a crash
    assert compare_metric("g", "recall", [0.0], 0, [0.2], 0, 0.1).verdict == "better"


def test_image_size_mismatch_is_refused_unless_forced(tmp_path):
    baseline = make_baseline(tmp_path)
    result = check(tmp_path, baseline, GOOD, image_size=64, name="a")
    assert result.exit_code == 2
    assert "image_size differs (baseline 32, now 64)" in result.output
    forced = check(tmp_path, baseline, GOOD, "--force", image_size=64, name="b")
    assert forced.exit_code == 0, forced.output
    assert "WARNING: --force: ae: image_size differs (baseline 32, now 64)" in forced.output


def test_fid_sample_count_mismatch_is_refused(tmp_path):
    baseline = make_baseline(tmp_path)
    result = check(tmp_path, baseline, GOOD, fid_n=5000)
    assert result.exit_code == 2
    assert "fid_samples differs (baseline 1000, now 5000)" in result.output


def test_epochs_mismatch_only_warns(tmp_path):
    baseline = make_baseline(tmp_path)
    result = check(tmp_path, baseline, GOOD, epochs=3)
    assert result.exit_code == 0
    assert "warning: ae: epochs differs (baseline 2, now 3)" in result.output


def test_missing_model_or_metric_fails_new_model_does_not(tmp_path):
    baseline = make_baseline(tmp_path)
    no_gan = {k: v for k, v in GOOD.items() if k != "gan"}
    result = check(tmp_path, baseline, no_gan, name="a")
    assert result.exit_code == 1
    assert last_line(result) == "check: FAILED: gan missing from results"
    no_kl = {**GOOD, "vae:beta=4": {"fid": 80.0, "recon_mse": 0.02, "psnr": 21.0}}
    result = check(tmp_path, baseline, no_kl, name="b")
    assert result.exit_code == 1
    assert last_line(result) == "check: FAILED: vae:beta=4/kl_nats missing from results"
    extra = {**GOOD, "vae:beta=1": GOOD["vae:beta=4"]}
    result = check(tmp_path, baseline, extra, name="c")
    assert result.exit_code == 0 and "new (not in baseline)" in result.output


def test_diverged_run_counts_as_worse(tmp_path):
    seeds = (0, 1)
    baseline = make_baseline(tmp_path, {"gan": [{"fid": 40.0}, {"fid": 41.0}]}, seeds=seeds)
    results = tmp_path / "now"
    write_run(results, "gan", 0, {"fid": 40.0})
    write_run(results, "gan", 1, {"fid": 400.0}, status=Status.DIVERGED)
    result = invoke(check_command, results, "--baseline", baseline)
    assert result.exit_code == 1
    assert "gan/fid diverged in 1 of 2 seeds; baseline 0 of 2" in last_line(result)


def test_divergence_as_often_as_in_the_baseline_passes(tmp_path):
    for name in ("base", "now"):  # a GAN seed that diverges on both sides: not a regression
        write_run(tmp_path / name, "gan", 0, {"fid": 40.0})
        write_run(tmp_path / name, "gan", 1, {"fid": 400.0}, status=Status.DIVERGED)
    out = tmp_path / "ref.json"
    assert invoke(baseline_command, tmp_path / "base", "--out", out).exit_code == 0
    assert json.loads(out.read_text())["models"]["gan"]["diverged_seeds"] == [1]
    result = invoke(check_command, tmp_path / "now", "--baseline", out)
    assert result.exit_code == 0, result.output
    assert last_line(result) == "check: PASSED (3 compared)"


def test_markdown_report_written(tmp_path):
    baseline = make_baseline(tmp_path)
    md = tmp_path / "summary.md"
    result = check(tmp_path, baseline, {**GOOD, "gan": {"fid": 60.0}}, "--markdown", md)
    assert result.exit_code == 1
    text = md.read_text()
    assert (
        "| model | metric | baseline | now | change | 95% interval | tolerance | verdict |" in text
    )
    assert "| gan | fid | 40 (1) | 60 (1) | +50.0% |  | 10% | worse (single-run baseline) |" in text
    assert "**check: FAILED: gan/fid worse by 50.0%" in text


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "is not valid JSON"),
        ('{"models": {}}', "has no format"),
        ('{"format": "dogbench-baseline", "models": {"gan": {"metrics": 3}}}', "malformed"),
        (None, "not found"),
    ],
)
def test_bad_baseline_file_exits_2(tmp_path, content, message):
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    result = check(tmp_path, path, GOOD)
    assert result.exit_code == 2 and message in result.output


def test_bad_input_exits_2(tmp_path):
    baseline = make_baseline(tmp_path)
    results = write_sweep(tmp_path / "now", GOOD)
    for args, message in [
        (["--tolerance", "fid=abc"], "not a tolerance"),
        (["--tolerance", "fdi=0.1"], "unknown metric 'fdi'"),
        (["--metrics", "sharpness"], "no direction known"),
        (["--metrics", "kid_mean"], "not in the baseline"),
    ]:
        result = invoke(check_command, results, "--baseline", baseline, *args)
        assert result.exit_code == 2 and message in result.output, (args, result.output)
    (results / "gan-seed0" / STATUS_FILE).write_text('{"status": "running"}')
    result = invoke(check_command, results, "--baseline", baseline)
    # An unfinished run is not bad input: it is left out with a note, so its model is
    # reported missing (exit 1) instead of silently passing.
    assert result.exit_code == 1 and "gan-seed0 (running); not compared" in result.output
    assert last_line(result) == "check: FAILED: gan missing from results"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert invoke(baseline_command, empty, "--out", tmp_path / "x.json").exit_code == 2


def test_parse_tolerances():
    tol = parse_tolerances("0.2,fid=5%")
    assert tol["fid"] == pytest.approx(0.05) and tol["recon_mse"] == 0.2
    assert parse_tolerances(None)["kl_nats"] == 0.25
    defaults = parse_tolerances(None)  # collapse is gated by default, not only FID
    assert {m: defaults[m] for m in ("recall", "coverage", "diversity")} == dict.fromkeys(
        ("recall", "coverage", "diversity"), 0.10
    )
    assert math.isclose(parse_tolerances("recall=0")["recall"], 0.0)


def test_prediction_interval_matches_scipy():
    x = [40.0, 42.0, 44.0, 41.0, 43.0]
    mean, low, high = prediction_interval(x)
    s, n = np.std(x, ddof=1), len(x)
    ref = stats.t.interval(0.95, n - 1, loc=np.mean(x), scale=s * math.sqrt(1 + 1 / n))
    assert mean == pytest.approx(42.0) and (low, high) == pytest.approx(ref)
    assert prediction_interval([3.0, 3.0]) == (3.0, 3.0, 3.0)


BASE_FIDS = [40.0, 42.0, 44.0, 41.0, 43.0]  # mean 42, sd 1.58: PI 42 ± 2.776·1.58·1.095


def test_single_run_against_prediction_interval(tmp_path):
    seeds = (0, 1, 2, 3, 4)
    baseline = make_baseline(tmp_path, {"gan": [{"fid": f} for f in BASE_FIDS]}, seeds=seeds)
    # accepted: 42 ± (2.776 · 1.581 · 1.095 + 10% of 42) = 42 ± 9.01
    inside = check(tmp_path, baseline, {"gan": {"fid": 50.0}}, "--metrics", "fid", name="a")
    assert inside.exit_code == 0, inside.output
    assert "+19.0%  accept [32.99, 51.01]  10%        ok" in inside.output
    beyond = check(tmp_path, baseline, {"gan": {"fid": 52.0}}, "--metrics", "fid", name="b")
    assert beyond.exit_code == 1
    assert last_line(beyond) == (
        "check: FAILED: gan/fid worse by 23.8% (52 outside [32.99, 51.01]: "
        "95% prediction interval of 5 baseline seeds ± tolerance 10%)"
    )
    good = check(tmp_path, baseline, {"gan": {"fid": 32.0}}, "--metrics", "fid", name="c")
    assert good.exit_code == 0 and "accept [32.99, 51.01]  10%        better" in good.output


def test_single_run_two_sided_metric_fails_outside_on_either_side():
    base = [30.0, 31.0, 29.0, 30.5, 29.5]  # kl_nats, tolerance 25%: accepted ~[20.3, 39.7]
    for value, verdict in [(39.0, "ok"), (21.0, "ok"), (41.0, "changed"), (19.0, "changed")]:
        row = compare_metric("v", "kl_nats", base, 0, [value], 0, 0.25)
        assert row.verdict == verdict, (value, row.accepted)


def test_one_seed_baseline_uses_the_tolerance_alone():
    row = compare_metric("g", "fid", [40.0], 0, [45.0], 0, 0.10)  # +12.5% > 10%
    assert (row.verdict, row.note, row.accepted) == ("worse", "single-run baseline", None)
    assert compare_metric("g", "fid", [40.0], 0, [43.0], 0, 0.10).verdict == "ok"


GAN_SEEDS = [
    {"fid": 40.0 + d, "recall": 0.30 + r, "coverage": 0.50 + c, "diversity": 1.00 + v}
    for d, r, c, v in [
        (0.0, 0.00, 0.00, 0.00),
        (2.0, 0.02, 0.02, 0.02),
        (-1.0, -0.01, -0.02, -0.01),
        (1.0, 0.01, 0.01, 0.01),
        (-2.0, -0.02, -0.01, -0.02),
    ]
]


def test_gan_collapse_fails_even_when_fid_does_not_move(tmp_path):
    seeds = (0, 1, 2, 3, 4)
    baseline = make_baseline(tmp_path, {"gan": GAN_SEEDS}, seeds=seeds)
    same_fid = {"gan": {"fid": 40.0, "recall": 0.30, "coverage": 0.50, "diversity": 1.0}}
    assert check(tmp_path, baseline, same_fid, name="a").exit_code == 0
    for metric, value in [("recall", 0.05), ("coverage", 0.1), ("diversity", 0.4)]:
        collapsed = {"gan": {**same_fid["gan"], metric: value}}
        result = check(tmp_path, baseline, collapsed, name=f"collapsed-{metric}")
        assert result.exit_code == 1, result.output
        assert last_line(result).startswith(f"check: FAILED: gan/{metric} worse by"), metric
        fid_row = next(
            line for line in result.output.splitlines() if line.split()[:2] == ["gan", "fid"]
        )
        assert fid_row.endswith(" ok"), fid_row  # FID did not move


def test_baseline_warns_below_three_seeds(tmp_path):
    results = write_sweep(tmp_path / "base", {"gan": [{"fid": 40.0}, {"fid": 41.0}]}, (0, 1))
    result = invoke(baseline_command, results, "--out", tmp_path / "b.json")
    assert result.exit_code == 0
    assert "warning: gan has 2 finished seed(s); with fewer than 3" in result.output


@pytest.mark.parametrize(
    "env, message",
    [
        ({"fid_weights_sha1": "0" * 40}, "fid_weights differs (baseline 'a16e4d89"),
        ({"fid_numerics": "bf16"}, "fid_numerics differs (baseline 'fp32', now 'bf16')"),
    ],
)
def test_other_weights_or_numerics_are_refused_unless_forced(tmp_path, env, message):
    baseline = make_baseline(tmp_path)
    result = check(tmp_path, baseline, GOOD, env_extra=env, name="a")
    assert result.exit_code == 2 and message in result.output
    assert len(result.output.strip().splitlines()) == 1
    forced = check(tmp_path, baseline, GOOD, "--force", env_extra=env, name="b")
    assert forced.exit_code == 0 and "NOT comparable" in forced.output


def test_other_cpu_only_warns_and_old_baselines_are_not_verified(tmp_path):
    baseline = make_baseline(tmp_path)
    other = {"cpu_name": "Intel Xeon 8480", "device_name": "Intel Xeon 8480"}
    result = check(tmp_path, baseline, GOOD, env_extra=other, name="a")
    assert result.exit_code == 0, result.output
    assert "warning: ae: cpu_name differs (baseline 'AMD EPYC 9R14', now 'Intel Xeon" in (
        result.output
    )
    # A baseline written before provenance was recorded: weights as the id string, no
    # numerics, no machine. Compared, with what could not be verified said.
    doc = json.loads(baseline.read_text())
    for model in doc["models"].values():
        model["settings"]["fid_weights"] = "pt_inception-2015-12-05"
        del model["settings"]["fid_numerics"], model["machine"]
    old = tmp_path / "old.json"
    old.write_text(json.dumps(doc))
    result = check(tmp_path, old, GOOD, name="b")
    assert result.exit_code == 0, result.output
    assert (
        "warning: not recorded in baseline or results, so not verified: cpu_name, "
        "device_name, fid_numerics, fid_weights"
    ) in result.output
