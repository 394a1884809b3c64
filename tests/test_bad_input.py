"""Every bad input of issue 15 ends with one 'Error:' line, exit status 2, and nothing already
on disk changed; and the faults that are repaired (a corrupt checkpoint) are said in one line."""

import json
import os
import shutil

import pandas as pd
import pytest
import torch
from helpers import bench, finished_sweep, one_line_error, snapshot
from PIL import Image

from bench.core.config import load_sweep_config
from bench.harness.sweep import plan_sweep
from bench.harness.train import recon_grid

TINY = [
    "--dataset", "synthetic", "--epochs", "2", "--batch-size", "32", "--fid-samples", "0",
    "--set", "backbone.width=8", "--set", "backbone.latent_dim=8",
    "--set", "data.train_limit=64", "--set", "eval.heldout_images=16",
    "--set", "eval.grid_images=16", "--set", "train.threads=1",
]  # fmt: skip
ROOT = os.geteuid() == 0  # root writes through read-only modes: those tests need a user


@pytest.fixture(scope="module")
def finished(tmp_path_factory, session_cache):
    """One tiny finished AE run (no FID), shared by the tests that only copy or read it."""
    with finished_sweep(
        tmp_path_factory, session_cache, "finished", "--models", "ae", *TINY
    ) as out:
        yield out


@pytest.fixture
def occupied(finished, tmp_path):
    """A copy of a results folder, and its contents, to check that a refusal changed nothing."""
    out = tmp_path / "r"
    shutil.copytree(finished, out)
    return out, snapshot(out)


# ----------------------------------------------------------------------- bench run: planning


@pytest.mark.parametrize("flag", [["--image-size", "48"], ["--set", "data.image_size=100"]])
def test_unsupported_image_size_refused_before_writing(occupied, tmp_path, flag):
    out, before = occupied
    one_line_error(bench("run", "--models", "ae", *TINY, *flag, "--out", out), "accepted: 32, 64")
    assert snapshot(out) == before
    result = bench("run", "--models", "ae", *TINY, *flag, "--out", tmp_path / "new")
    one_line_error(result, "data.image_size", "not supported")
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    "models, samplers, fragments",
    [
        ("ae", "[trunc0.5]", ["'trunc0.5' applies to none of the models (ae)", "gaussian, gmm"]),
        ("gan", "[gmm]", ["'gmm' applies to none of the models (gan)", "prior, trunc<T>"]),
        ("gan", "[prior,gaussian]", ["'gaussian' applies to none"]),
        ("ae,vae", "[prior,gmm,trunc1]", ["'trunc1' applies to none of the models (ae, vae)"]),
    ],
)
def test_sampler_no_model_of_the_sweep_can_use_is_refused(occupied, models, samplers, fragments):
    out, before = occupied
    args = ["--models", models, *TINY, "--set", f"eval.samplers={samplers}", "--out", out]
    one_line_error(bench("run", *args), "eval.samplers", *fragments)
    assert snapshot(out) == before


@pytest.mark.parametrize(
    "models, samplers",
    [
        ("ae,vae,gan", None),  # the defaults: fitted samplers just do not apply to the GAN
        ("gan", None),  # a GAN-only sweep with the default samplers still runs
        ("ae,gan", "[prior,gmm,trunc0.5]"),  # each applies to one of the models
    ],
)
def test_samplers_that_apply_to_some_model_are_planned(tmp_path, models, samplers):
    overrides = {"models": models.split(",")}
    if samplers:
        overrides["eval.samplers"] = samplers.strip("[]").split(",")
    plans = plan_sweep(load_sweep_config(None, overrides), tmp_path / "r")
    assert [p.spec.name for p in plans] == models.split(",")


# ------------------------------------------------------------------------ unwritable --out


def test_run_out_under_a_file_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    before = snapshot(tmp_path)
    result = bench("run", "--models", "ae", *TINY, "--out", tmp_path / "notes.txt" / "r")
    one_line_error(result, "--out", "is not a folder", "notes.txt is a file")
    one_line_error(bench("run", "--models", "ae", *TINY, "--out", tmp_path / "notes.txt"))
    assert snapshot(tmp_path) == before


def test_report_out_under_a_file_or_a_file_is_refused(occupied, tmp_path):
    out, before = occupied
    (tmp_path / "notes.txt").write_text("keep me")
    for target in (tmp_path / "notes.txt", tmp_path / "notes.txt" / "report"):
        one_line_error(bench("report", out, "--out", target), "--out", "is not a folder")
    assert snapshot(out) == before and (tmp_path / "notes.txt").read_text() == "keep me"


def _no_write_access(monkeypatch, folder):
    real = os.access

    def access(path, mode, **kw):
        return real(path, mode, **kw) and not (mode & os.W_OK and str(path) == str(folder))

    monkeypatch.setattr(os, "access", access)


def test_unwritable_out_folder_is_refused(occupied, tmp_path, monkeypatch):
    """Where the process may not write (os.access says so: true for a user in a read-only
    folder, and for root on a read-only filesystem) both commands refuse before any work."""
    out, before = occupied
    _no_write_access(monkeypatch, out)
    one_line_error(bench("run", "--models", "ae", *TINY, "--out", out), "not readable and writable")
    one_line_error(bench("report", out), "--out", "not readable and writable")
    one_line_error(bench("report", out, "--out", out / "sub"), "not readable and writable")
    assert snapshot(out) == before and not (out / "sub").exists()


@pytest.mark.skipif(ROOT, reason="root can write into a read-only folder")
def test_read_only_and_unreadable_folders_are_refused(occupied, tmp_path):
    out, before = occupied
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    out.chmod(0o000)
    try:
        one_line_error(bench("run", "--models", "ae", *TINY, "--out", locked / "r"), "writable")
        one_line_error(bench("report", tmp_path / "r", "--out", locked), "writable")
        one_line_error(bench("run", "--models", "ae", *TINY, "--out", out), "readable")
    finally:
        out.chmod(0o755)
        locked.chmod(0o755)
    assert snapshot(out) == before and not list(locked.iterdir())


# ------------------------------------------------------------------------ dataset folders


def _image_folder(folder, n, seed=0):
    folder.mkdir(parents=True)
    g = torch.Generator().manual_seed(seed)
    for i in range(n):
        pixels = torch.randint(0, 256, (32, 32, 3), generator=g, dtype=torch.uint8)
        Image.fromarray(pixels.numpy()).save(folder / f"{i:03d}.png")


def test_dataset_folder_smaller_than_a_batch_is_refused(occupied, tmp_path):
    out, before = occupied
    _image_folder(tmp_path / "dogs" / "train", 12)
    _image_folder(tmp_path / "dogs" / "test", 4, seed=1)
    dataset = f"folder:{tmp_path / 'dogs'}"
    args = ["--models", "ae", *TINY, "--dataset", dataset, "--batch-size", 16, "--out", out]
    one_line_error(bench("run", *args), "12 training images", "batch_size 16", "--batch-size 12")
    assert snapshot(out) == before


def test_dataset_folder_smaller_than_fid_n_says_n_and_short_grids_work(tmp_path):
    """FID N falls to the real images there are (as the evaluator does), said in one line;
    recon.png is drawn from the 4 held-out images there are (grid_images/2 = 8 asked)."""
    _image_folder(tmp_path / "dogs" / "train", 12)
    _image_folder(tmp_path / "dogs" / "test", 4, seed=1)
    out = tmp_path / "r"
    args = ["--models", "ae", *TINY, "--dataset", f"folder:{tmp_path / 'dogs'}", "--epochs", 1]
    result = bench("run", *args, "--batch-size", 4, "--fid-samples", 20, "--out", out)
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if "fid_samples" in line]
    assert notes == [
        f"note: eval.fid_samples 20 but 'folder:{tmp_path / 'dogs'}' has 12 train images: "
        "FID uses N=12 (FIDs compare only at equal N)"
    ]
    metrics = pd.read_csv(out / "ae-seed0" / "metrics.csv")
    assert set(metrics[metrics.metric == "fid"].n) == {12}
    with Image.open(out / "ae-seed0" / "recon.png") as png:  # 2 rows of 4, 1 px gaps
        assert png.size == (4 * 33 + 1, 2 * 33 + 1)


# ------------------------------------------------------------------------ pictures


def test_recon_grid_rows_of_up_to_8_real_then_their_reconstructions():
    real, recon = torch.rand(12, 3, 4, 4), torch.rand(12, 3, 4, 4)
    grid, nrow = recon_grid(real, recon)
    assert nrow == 8 and grid.shape == (32, 3, 4, 4)  # rows: real 0-7, recon 0-7, real 8-11, ...
    assert torch.equal(grid[:8], real[:8]) and torch.equal(grid[8:16], recon[:8])
    assert torch.equal(grid[16:20], real[8:]) and torch.equal(grid[24:28], recon[8:])
    assert not grid[20:24].any() and not grid[28:].any()  # black padding of the short rows
    grid, nrow = recon_grid(real[:3], recon[:3])
    assert nrow == 3 and torch.equal(grid, torch.cat([real[:3], recon[:3]]))


def test_grid_images_not_a_multiple_of_16_draws_recon_png(tmp_path):
    out = tmp_path / "r"
    args = ["--models", "ae", *TINY, "--epochs", 1, "--set", "eval.grid_images=8"]
    result = bench("run", *args, "--out", out)  # crashed before: 4 images, rows of 8
    assert result.exit_code == 0, result.output
    with Image.open(out / "ae-seed0" / "recon.png") as png:
        assert png.size == (4 * 33 + 1, 2 * 33 + 1)


# ------------------------------------------------------------------------ corrupt checkpoint


def _make_unfinished(out):
    """The finished run, made to look killed after epoch 1: status 'running'."""
    status = out / "ae-seed0" / "status.json"
    status.write_text(json.dumps({**json.loads(status.read_text()), "status": "running"}))


CORRUPTIONS = {
    "truncated": lambda b: b[: len(b) // 3],
    "garbage": lambda b: os.urandom(64) + b"\x00 not a checkpoint",
    "empty": lambda b: b"",
    "foreign": None,  # a valid torch file that save_checkpoint did not write
}


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_corrupt_checkpoint_is_set_aside_and_the_run_restarts(finished, tmp_path, kind):
    out = tmp_path / "r"
    shutil.copytree(finished, out)
    _make_unfinished(out)
    ckpt = out / "ae-seed0" / "checkpoint.pt"
    if CORRUPTIONS[kind] is None:
        torch.save({"weights": torch.zeros(3)}, ckpt)
    else:
        ckpt.write_bytes(CORRUPTIONS[kind](ckpt.read_bytes()))
    bad = ckpt.read_bytes()
    (out / "ae-seed0" / ".metrics.csv.k1l2m3.tmp").write_text("half a file")  # a killed write
    result = bench("run", "--models", "ae", *TINY, "--out", out)
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    said = [line for line in result.output.splitlines() if "checkpoint.pt" in line]
    assert len(said) == 1 and "moved to checkpoint.pt.corrupt-" in said[0], result.output
    assert "restarting this run from scratch" in said[0]
    (kept,) = (out / "ae-seed0").glob("checkpoint.pt.corrupt-*")
    assert kept.read_bytes() == bad and kept.name in said[0]
    assert not list((out / "ae-seed0").glob(".*.tmp"))
    quality = lambda f: f[~f.metric.str.startswith("cost/")].reset_index(drop=True)  # noqa: E731
    redone = pd.read_csv(out / "ae-seed0" / "metrics.csv")
    reference = pd.read_csv(finished / "ae-seed0" / "metrics.csv")
    pd.testing.assert_frame_equal(quality(redone), quality(reference), check_exact=True)
    assert json.loads((out / "ae-seed0" / "status.json").read_text())["status"] == "ok"


# ------------------------------------------------------------------------ bench check


@pytest.mark.parametrize(
    "content, fragment",
    [
        (b"\x89PNG\r\n\x1a\n\x00\xff garbage", "is not valid JSON"),
        (b'{"format": "someone-elses-benchmark/3", "models": {}}', "has no format="),
        (b'[{"model": "ae", "fid": 300}]', "has no format="),
        (b'"just a string"', "has no format="),
    ],
)
def test_corrupt_or_foreign_baseline_is_refused(occupied, tmp_path, content, fragment):
    out, before = occupied
    baseline = tmp_path / "baseline.json"
    baseline.write_bytes(content)
    one_line_error(bench("check", out, "--baseline", baseline), fragment, "bench baseline")
    assert snapshot(out) == before and baseline.read_bytes() == content


def test_unwritable_baseline_out_and_check_markdown_are_refused(occupied, tmp_path, monkeypatch):
    out, before = occupied
    baseline = tmp_path / "b.json"
    assert bench("baseline", out, "--out", baseline).exit_code == 0
    locked = tmp_path / "locked"
    locked.mkdir()
    _no_write_access(monkeypatch, locked)
    one_line_error(bench("baseline", out, "--out", locked / "b.json"), "--out", "cannot write")
    one_line_error(bench("baseline", out, "--out", tmp_path), "--out", "is a directory")
    result = bench("check", out, "--baseline", baseline, "--markdown", locked / "summary.md")
    one_line_error(result, "--markdown", "cannot write")
    assert snapshot(out) == before and not list(locked.iterdir())


@pytest.mark.parametrize("name", ["sweep.json", "ae-seed0/status.json", "ae-seed0/config.json"])
def test_corrupt_sweep_status_or_config_file_is_one_line(occupied, name):
    """A hand-damaged file of a results folder is named in one line, and nothing is changed
    (sweep.json is rewritten with the same bytes before the runs' status is read)."""
    out, _ = occupied
    (out / name).write_bytes(b"{ not json")
    before = snapshot(out)
    result = bench("run", "--models", "ae", *TINY, "--out", out)
    one_line_error(result, name.split("/")[-1], "not valid JSON")
    assert snapshot(out) == before


# ------------------------------------------------------------------------ generation tools

TOOLS = [["sample", "--n", "4"], ["interpolate", "--pairs", "1"], ["traverse", "--dims", "2"]]


def _png_out(tool, tmp_path):
    return ["--out", tmp_path / f"{tool[0]}.png"]


@pytest.mark.parametrize("tool", TOOLS, ids=lambda t: t[0])
def test_tools_on_a_folder_that_is_not_a_run(occupied, tmp_path, tool):
    out, before = occupied
    (tmp_path / "notes.txt").write_text("keep me")
    cases = [
        (out, ["is not a run folder", "runs in it: ae-seed0"]),  # the sweep folder
        (tmp_path / "missing", ["is not a run folder", "give RESULTS/<run>"]),
        (tmp_path / "notes.txt", ["is not a run folder"]),
    ]
    for folder, fragments in cases:
        one_line_error(bench(*tool, folder, *_png_out(tool, tmp_path)), *fragments)
    assert snapshot(out) == before and not list(tmp_path.glob("*.png"))


@pytest.mark.parametrize("tool", TOOLS, ids=lambda t: t[0])
def test_tools_on_a_run_with_corrupt_files(occupied, tmp_path, tool):
    out, _ = occupied
    run = out / "ae-seed0"
    run.joinpath("checkpoint.pt").write_bytes(b"PK\x03\x04 truncated")
    before = snapshot(out)
    result = bench(*tool, run, *_png_out(tool, tmp_path))
    one_line_error(result, "checkpoint.pt is unreadable", "re-run the bench run command")
    run.joinpath("config.json").write_text('{"model": "ae", "seed": 0')  # cut short
    one_line_error(bench(*tool, run, *_png_out(tool, tmp_path)), "config.json is unreadable")
    run.joinpath("config.json").write_text('["ae"]')
    one_line_error(bench(*tool, run, *_png_out(tool, tmp_path)), "is not a run config")
    assert snapshot(out).keys() == before.keys() and not list(tmp_path.glob("*.png"))
