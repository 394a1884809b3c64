"""`bench sample / interpolate / traverse` on tiny run folders, and MIG."""

from dataclasses import asdict

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import one_line_error
from PIL import Image

from bench.core import io
from bench.core.config import load_sweep_config
from bench.core.errors import BenchError
from bench.core.layout import run_id
from bench.harness.sweep import run_config
from bench.metrics.disentangle import latent_activity, mig
from bench.results.write import save_checkpoint
from bench.tools.sample_cli import interpolate_command, sample_command, traverse_command
from models import build_model, parse_model_spec

TINY = {
    "data.dataset": "synthetic",
    "backbone.width": 16,
    "backbone.latent_dim": 8,
    "data.train_limit": 128,
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run folders as bench run writes them (config.json + checkpoint.pt), untrained weights:
    these tests check the tools, not the models."""
    out = tmp_path_factory.mktemp("runs")
    cfg = load_sweep_config(None, TINY)
    folders = {}
    for name in ("ae", "vae", "gan"):
        spec = parse_model_spec(name)
        torch.manual_seed(0)
        model = build_model(spec, asdict(cfg.backbone), cfg.data.image_size)
        rid = run_id(spec.label, 0)
        io.write_json(out / rid / "config.json", run_config(cfg, spec, 0, rid))
        save_checkpoint(out / rid / "checkpoint.pt", model, 1, 4, {})
        folders[name] = out / rid
    return folders


def invoke(command, *args):
    return CliRunner().invoke(command, [str(a) for a in args], catch_exceptions=False)


def pixels(path):
    with Image.open(path) as im:
        return im.size, np.asarray(im.convert("RGB"))


def test_sample_grid_and_individual_files(runs, tmp_path):
    out, folder = tmp_path / "dogs.png", tmp_path / "each"
    result = invoke(sample_command, runs["vae"], "--n", 6, "--out", out, "--individual", folder)
    assert result.exit_code == 0, result.output
    assert pixels(out)[0] == (3 * 33 + 1, 2 * 33 + 1)  # 3 per row, 32 px + 1 px gaps
    files = sorted(folder.glob("*.png"))
    assert len(files) == 6 and all(pixels(f)[0] == (32, 32) for f in files)
    assert "6 samples of vae" in result.output and "sampler prior" in result.output


@pytest.mark.parametrize(
    "model, sampler", [("ae", "gmm"), ("vae", "gaussian"), ("gan", "trunc0.5")]
)
def test_sample_is_deterministic_given_a_seed(runs, tmp_path, model, sampler):
    images = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        out = tmp_path / f"{name}.png"
        result = invoke(
            sample_command,
            runs[model],
            "--n",
            4,
            "--sampler",
            sampler,
            "--seed",
            seed,
            "--out",
            out,
        )
        assert result.exit_code == 0, result.output
        images.append(pixels(out)[1])
    assert np.array_equal(images[0], images[1]) and not np.array_equal(images[0], images[2])
    if sampler == "gmm":  # fitted to the 128 training images the run's config names
        assert "n_fit=128" in result.output and "components=10" in result.output


def test_interpolate_strips_with_real_endpoints(runs, tmp_path):
    out = tmp_path / "strips.png"
    result = invoke(interpolate_command, runs["vae"], "--pairs", 2, "--steps", 4, "--out", out)
    assert result.exit_code == 0, result.output
    assert pixels(out)[0] == (6 * 33 + 1, 2 * 33 + 1)  # real + 4 frames + real, 2 rows
    assert result.output.count("cv=") == 2
    again = tmp_path / "again.png"
    invoke(interpolate_command, runs["vae"], "--pairs", 2, "--steps", 4, "--out", again)
    assert np.array_equal(pixels(out)[1], pixels(again)[1])
    arc = tmp_path / "arc.png"
    args = ("--pairs", 2, "--steps", 4, "--spherical", "--out", arc)
    assert invoke(interpolate_command, runs["vae"], *args).exit_code == 0
    assert not np.array_equal(pixels(out)[1], pixels(arc)[1])


def test_interpolate_gan_between_prior_draws(runs, tmp_path):
    out = tmp_path / "gan.png"
    result = invoke(interpolate_command, runs["gan"], "--pairs", 3, "--steps", 5, "--out", out)
    assert result.exit_code == 0, result.output
    assert pixels(out)[0] == (5 * 33 + 1, 3 * 33 + 1)  # no real endpoints for a GAN


def test_traverse_rows_and_mig_on_synthetic(runs, tmp_path):
    out = tmp_path / "t.png"
    args = ("--dims", 3, "--steps", 5, "--out", out)
    result = invoke(traverse_command, runs["vae"], *args)
    assert result.exit_code == 0, result.output
    assert pixels(out)[0] == (6 * 33 + 1, 3 * 33 + 1)  # real + 5 steps, one row per dim
    assert "nats KL" in result.output and "MIG " in result.output and "shape" in result.output
    again = tmp_path / "again.png"
    assert invoke(traverse_command, runs["vae"], *args[:-1], again).exit_code == 0
    assert np.array_equal(pixels(out)[1], pixels(again)[1])
    ae = invoke(traverse_command, runs["ae"], "--dims", 2, "--out", tmp_path / "ae.png")
    assert ae.exit_code == 0 and "code variance" in ae.output


@pytest.mark.parametrize(
    "command, model, args, fragments",
    [
        (traverse_command, "gan", [], ["needs a model with an encoder", "interpolate"]),
        (traverse_command, "vae", ["--dims", 9], ["--dims 9", "8 latent dims"]),
        (sample_command, "gan", ["--sampler", "gmm"], ["needs a model with an encoder"]),
        (sample_command, "vae", ["--sampler", "flow"], ["unknown sampler 'flow'", "accepted"]),
        (sample_command, "vae", ["--out", "x.jpg"], ["only PNG"]),
        (interpolate_command, "vae", ["--pairs", 600], ["needs 1200 held-out images"]),
    ],
)
def test_bad_requests_exit_2(runs, tmp_path, command, model, args, fragments):
    one_line_error(invoke(command, runs[model], *args), *fragments)


@pytest.mark.parametrize("command", [sample_command, interpolate_command, traverse_command])
def test_bad_run_folder_exit_2(tmp_path, command):
    one_line_error(invoke(command, tmp_path / "nope"), "not a run folder")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    one_line_error(invoke(command, tmp_path / "half"), "no checkpoint.pt")


def _factors(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    return {"a": rng.integers(0, 4, n), "b": rng.integers(0, 6, n), "c": rng.integers(0, 5, n)}


def test_mig_near_one_when_each_factor_has_its_own_dim():
    factors = _factors()
    rng = np.random.default_rng(1)
    latents = np.stack([v + 0.05 * rng.standard_normal(len(v)) for v in factors.values()], 1)
    latents = np.concatenate([latents, rng.standard_normal((len(latents), 2))], 1)  # 2 unused
    score, per_factor = mig(latents, factors)
    assert score > 0.95 and set(per_factor) == {"a", "b", "c"}


def test_mig_near_zero_for_random_or_duplicated_codes():
    factors = _factors()
    rng = np.random.default_rng(2)
    assert mig(rng.standard_normal((4000, 6)), factors)[0] < 0.05
    # every factor copied into two dims: perfectly informative, but no gap between them
    copies = np.stack([v + 0.05 * rng.standard_normal(len(v)) for v in factors.values()] * 2, 1)
    assert mig(copies, factors)[0] < 0.05


def test_mig_input_checks():
    with pytest.raises(BenchError, match="D >= 2"):
        mig(np.zeros((10, 1)), {"a": np.arange(10)})
    with pytest.raises(BenchError, match="N = 10"):
        mig(np.zeros((10, 3)), {"a": np.arange(9)})
    score, per = mig(
        np.random.default_rng(0).standard_normal((50, 3)),
        {"k": np.zeros(50), "a": np.arange(50) % 2},
    )
    assert np.isnan(per["k"]) and np.isfinite(score)


def test_latent_activity_ranks_used_dims_first():
    rng = np.random.default_rng(0)
    mu = rng.standard_normal((500, 3)) * np.array([0.01, 2.0, 0.5])
    assert list(np.argsort(-latent_activity(mu))) == [1, 2, 0]
    logvar = np.log(np.array([[1.0, 0.01, 0.2]])).repeat(500, 0)  # dim 1 narrowest posterior
    kl = latent_activity(np.zeros((500, 3)), logvar)
    assert kl[0] == pytest.approx(0.0) and np.argmax(kl) == 1


@pytest.mark.parametrize("model", ["gan", "vae"])
def test_run_pictures_are_drawn_in_eval_mode_and_leave_the_model_as_it_was(tmp_path, model):
    """samples.png / recon.png: eval-mode BatchNorm, like every evaluation; drawing them
    must not move the running statistics the checkpoint keeps, nor training's RNG."""
    from types import SimpleNamespace

    from bench.harness import train as harness_train
    from bench.metrics.samplers import generate

    torch.manual_seed(0)
    net = build_model(parse_model_spec(model), {"width": 4, "latent_dim": 4}, 32).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    heldout = SimpleNamespace(images=torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8))
    rng = torch.get_rng_state()
    plan = SimpleNamespace(dir=tmp_path)
    harness_train._save_pictures(plan, net, heldout, 16, {})
    assert net.training and torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    net.eval()
    want = generate(net, 16)
    saved = np.asarray(Image.open(tmp_path / "samples.png").convert("RGB"))
    # The grid's first tile (1 px padding) is the first eval-mode sample.
    first = (want[0].permute(1, 2, 0).numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8)
    assert np.abs(saved[1:33, 1:33].astype(int) - first.astype(int)).max() <= 1
