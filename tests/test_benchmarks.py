"""The benchmark scripts run end to end (one tiny block each) and print their result lines."""

import importlib.util
import re
import sys
from pathlib import Path

import torch

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load(name):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_speed_prints_both_rates_ratio_and_matching_losses(monkeypatch, capsys):
    train_speed = load("train_speed")
    argv = "train_speed --models ae --sizes 32 --steps 2 --repeats 2 --batch 8".split()
    plain = "--precision fp32 --channels-last 0 --matmul-4x4 0 --fused-adam 0".split()
    monkeypatch.setattr(sys, "argv", argv + plain)
    train_speed.main()
    row = capsys.readouterr().out.splitlines()[-1].split()
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
