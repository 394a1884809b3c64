"""Assertions and fixtures' building blocks shared by the test files."""

import contextlib
import json
from pathlib import Path

from bench.core.layout import (
    CONFIG_FILE,
    COST_PREFIX,
    ENV_FILE,
    METRICS_FILE,
    PEAK_RSS,
    STATUS_FILE,
    Status,
    run_id,
)


def one_line_error(result, *fragments):
    """A bad input ends with exit status 2 and one 'Error:' line (no traceback) naming it."""
    assert result.exit_code == 2, result.output
    last = [line for line in result.output.splitlines() if line.strip()][-1]
    assert last.startswith("Error:") and "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in last, last


def snapshot(folder):
    """Every file under ``folder`` with its bytes: equal before and after = nothing changed."""
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def bench(*args):
    """`bench ARGS` in this process; exceptions propagate (a traceback fails the test)."""
    from click.testing import CliRunner

    from bench.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@contextlib.contextmanager
def finished_sweep(tmp_path_factory, session_cache, name, *run_args):
    """Yields the folder of one `bench run RUN_ARGS` made once (for a module-scoped fixture),
    with the session cache; restores torch's thread count, which train.threads sets."""
    import pytest
    import torch

    threads = torch.get_num_threads()
    out = tmp_path_factory.mktemp(name) / "r"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DOGBENCH_CACHE", str(session_cache))
        result = bench("run", *run_args, "--out", out)
    assert result.exit_code == 0, result.output
    try:
        yield out
    finally:
        torch.set_num_threads(threads)


def write_run(
    root: Path,
    model: str,
    seed: int,
    metrics: dict,
    status: str = Status.OK,
    image_size: int = 32,
    fid_n: int = 1000,
    epochs: int = 2,
    env_extra: dict | None = None,
    cost: dict | None = None,
    peak_rss: float | None = None,
    done: int | None = None,
) -> None:
    """One run folder as `bench run` writes it. Epoch 1 holds a decoy (worse) value so that
    reading anything but the last evaluation shows up in the tests. `cost`: cost/<name> rows
    per epoch; `peak_rss`: the run's peak_rss_mb row; `done`: epochs trained so far, of the
    `epochs` planned (default: all)."""
    done = epochs if done is None else done
    rid = run_id(model, seed)
    folder = root / rid
    folder.mkdir(parents=True)
    config = {
        "run": rid,
        "model": model,
        "model_name": model.split(":")[0],
        "model_params": {},
        "seed": seed,
        "data": {"dataset": "cifar10-dog", "image_size": image_size},
        "train": {"epochs": epochs},
        "eval": {"fid_samples": fid_n, "fid_split": "train", "fid_exact": False},
    }
    env = {
        "packages": {"torch": "2.15.0", "numpy": "2.3.0"},
        "git": {"commit": "abc1234"},
        "fid_weights": "pt_inception-2015-12-05",
        "fid_weights_sha1": "a16e4d89c0ecbc17a915dd76ea9e41211aa82562",
        "fid_numerics": "fp32",
        "device": "cpu",
        "device_name": "AMD EPYC 9R14",
        "cpu_name": "AMD EPYC 9R14",
        "threads": 2,
        **(env_extra or {}),
    }
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    (folder / ENV_FILE).write_text(json.dumps(env))
    (folder / STATUS_FILE).write_text(
        json.dumps(
            {
                "status": status,
                "diverged_step": 7 if status == Status.DIVERGED else None,
                "epoch": done,
                "step": 10 * done,
                "reason": None,
            }
        )
    )
    rows = ["run,model,seed,epoch,step,metric,value,n"]
    for epoch in range(1, done + 1):
        rows.append(f"{rid},{model},{seed},{epoch},{10 * epoch},train/loss,{1.0 / epoch},")
        for name, value in metrics.items():
            decoy = value * 3 if epoch < done else value
            n = fid_n if name == "fid" else 500
            rows.append(f"{rid},{model},{seed},{epoch},{10 * epoch},{name},{decoy},{n}")
        for name, value in (cost or {}).items():
            rows.append(f"{rid},{model},{seed},{epoch},{10 * epoch},{COST_PREFIX}{name},{value},")
    if "fid" in metrics:
        fid = metrics["fid"]
        rows += [
            f"{rid},{model},{seed},{done},{10 * done},final_fid,{fid},{fid_n}",
            f"{rid},{model},{seed},,,best_fid,{fid},{fid_n}",
            f"{rid},{model},{seed},,,best_fid_epoch,{done},",
        ]
    if peak_rss is not None:
        rows.append(f"{rid},{model},{seed},{done},{10 * done},{PEAK_RSS},{peak_rss},")
    (folder / METRICS_FILE).write_text("\n".join(rows) + "\n")
