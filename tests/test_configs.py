"""The shipped configs (configs/*.yaml): each loads, names registered models, and every model
in it builds and takes one training step at the config's image size (tiny width)."""

import dataclasses
from pathlib import Path

import pytest
import torch

from bench.core.config import load_sweep_config
from bench.harness.train import _bad_terms, _loss_bound
from models.registry import build_model, parse_model_spec

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


def test_the_protocols_are_shipped():
    names = {p.stem for p in CONFIGS}
    assert {"smoke", "standard", "dogs64", "dogvae"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_loads_and_each_model_takes_a_step_at_its_size(path):
    cfg = load_sweep_config(path)
    assert cfg.name == path.stem and cfg.models and cfg.seeds
    if cfg.train.epochs == 0:  # no epoch limit: a reproducible budget must stop the runs
        assert cfg.train.budget_flops > 0 or cfg.train.budget_images > 0
    assert cfg.eval.track_n <= cfg.eval.fid_samples
    shared = dataclasses.asdict(cfg.backbone) | {"width": 4, "latent_dim": 8}  # tiny
    size = cfg.data.image_size
    for label in cfg.models:
        spec = parse_model_spec(label)
        assert spec.label == label  # what the results will be labelled with
        torch.manual_seed(0)
        model = build_model(spec, shared, size)
        x = torch.rand(2, 3, size, size) * 2 - 1
        terms = {k: float(v) for k, v in model.train_step(x, 0.0).items()}
        # a fresh model's first step must not count as divergence under the config's bound
        assert not _bad_terms(terms, _loss_bound(cfg, model)), (label, terms)


def test_real_photo_configs_compare_at_equal_compute_on_petimages():
    for name in ("dogs64", "dogvae"):
        cfg = load_sweep_config(Path(__file__).parents[1] / "configs" / f"{name}.yaml")
        assert cfg.data.dataset == "petimages-dog"
        assert cfg.train.epochs == 0 and cfg.train.budget_flops > 0
    dogvae = load_sweep_config(Path(__file__).parents[1] / "configs" / "dogvae.yaml")
    assert dogvae.data.image_size == 128 and dogvae.backbone.latent_dim == 256
    assert {"dogvae", "dogvae:noise=uniform", "vae", "ae", "gan"} <= set(dogvae.models)


def test_dogvae_config_puts_the_seeds_loss_on_the_shared_backbone():
    from models.dogvae import DogVAEConfig, equivalent_sigma

    cfg = load_sweep_config(Path(__file__).parents[1] / "configs" / "dogvae.yaml")
    fixed = [m for m in cfg.models if m.startswith("vae:decoder_sigma=")]
    assert len(fixed) == 1
    sigma = float(fixed[0].partition("=")[2])
    pixels = 3 * cfg.data.image_size**2
    assert sigma == pytest.approx(equivalent_sigma(pixels, DogVAEConfig().kl_weight), rel=1e-5)
