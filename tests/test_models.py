import math
import shutil

import pytest
import torch

import models
from bench.core.errors import BenchError
from bench.harness import speed
from models.gan import GAN
from models.registry import ModelSpec, build_model, parse_model_spec, register_model
from models.vae import VAE, gaussian_nll_nats, kl_standard_normal_nats

TINY = {"width": 16, "latent_dim": 8}


def tiny(name: str, size: int = 32, **params):
    spec = ModelSpec(name, {k: str(v) for k, v in params.items()})
    torch.manual_seed(0)
    return build_model(spec, TINY, size)


def batch(size: int = 32, n: int = 16) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1


@pytest.mark.parametrize("size", [32, 64, 128])
@pytest.mark.parametrize("name", ["ae", "vae", "gan"])
def test_output_shapes(name, size):
    # 128 px is one more doubling stage (16x the 4x4 map's channels): width 4 keeps it cheap.
    model = tiny(name, size, **({"width": 4} if size == 128 else {}))
    x = batch(size, 4)
    samples = model.sample(3)
    assert samples.shape == (3, 3, size, size)
    assert samples.min() >= -1 and samples.max() <= 1
    recon = model.reconstruct(x)
    if name == "gan":
        assert recon is None
    else:
        assert recon.shape == x.shape
        assert model.encode(x).shape == (4, TINY["latent_dim"])
    terms = model.train_step(x, 0.0)
    assert all(math.isfinite(float(v)) for v in terms.values())


def test_128px_is_one_more_doubling_stage_and_bad_sizes_name_the_accepted_ones():
    from models.backbone import SUPPORTED_SIZES, EncoderTrunk, Generator

    trunk = EncoderTrunk(4, 128)
    assert trunk(torch.zeros(2, 3, 128, 128)).shape == (2, 4 * 2**4, 4, 4)  # 5 stages
    assert Generator(8, 4, 128)(torch.zeros(2, 8)).shape == (2, 3, 128, 128)
    accepted = ", ".join(map(str, SUPPORTED_SIZES))
    with pytest.raises(ValueError, match=f"accepted: {accepted}$"):
        EncoderTrunk(4, 48)


def test_loss_bound_grows_with_the_pixel_count():
    """A VAE's nats are sums over pixels: a healthy 128 px VAE starts at ~2e4 > 1e4."""
    from bench.core.config import DataConfig, SweepConfig
    from bench.harness.train import _loss_bound

    for size, factor in ((32, 1), (64, 4), (128, 16)):
        cfg = SweepConfig(data=DataConfig(image_size=size))
        assert _loss_bound(cfg, tiny("vae")) == pytest.approx(cfg.train.loss_bound * factor)
    # and with a fixed decoder sigma's 1 / sigma^2 (its NLL is SSE / (2 sigma^2))
    cfg = SweepConfig()
    sharp, wide = tiny("vae", decoder_sigma=0.01), tiny("vae", decoder_sigma=2)
    assert _loss_bound(cfg, sharp) == pytest.approx(cfg.train.loss_bound * 1e4)
    assert _loss_bound(cfg, wide) == _loss_bound(cfg, tiny("gan")) == cfg.train.loss_bound


def test_backbone_is_shared():
    """The fairness claim: AE/VAE decoder == GAN generator; encoders share the D trunk."""
    ae, vae, gan = tiny("ae"), tiny("vae"), tiny("gan")
    shapes = lambda m: [tuple(p.shape) for p in m.parameters()]  # noqa: E731
    assert shapes(ae.decoder) == shapes(vae.decoder) == shapes(gan.generator)
    assert shapes(ae.trunk) == shapes(vae.trunk) == shapes(gan.discriminator[0])


@pytest.mark.parametrize("name", ["ae", "vae"])
def test_one_step_lowers_autoencoder_loss(name):
    model = tiny(name)
    x = batch()

    def loss():
        if name == "ae":
            return float(((model.decode(model.encode(x)) - x) ** 2).mean())
        g = torch.Generator().manual_seed(5)
        return float(model.loss_terms(x, 1.0, generator=g)["loss"])

    before = loss()
    model.train_step(x, 1.0)
    assert loss() < before


def test_gan_step_improves_each_player():
    model = tiny("gan")
    x = batch()
    z = torch.randn(16, TINY["latent_dim"], generator=torch.Generator().manual_seed(2))
    bce = torch.nn.functional.binary_cross_entropy_with_logits

    def d_loss():
        real, fake = model.discriminator(x), model.discriminator(model.generator(z))
        return float(bce(real, torch.ones_like(real)) + bce(fake, torch.zeros_like(fake)))

    def g_loss():
        fake = model.discriminator(model.generator(z))
        return float(bce(fake, torch.ones_like(fake)))

    # Losses are measured in train mode (batch statistics), as train_step sees them.
    with torch.no_grad():
        d0 = d_loss()
    for group in model.opt_g.param_groups:  # freeze G: only D learns
        group["lr"] = 0.0
    torch.manual_seed(2)
    model.train_step(x, 0.0)
    with torch.no_grad():
        assert d_loss() < d0
        g0 = g_loss()
    for group in model.opt_g.param_groups:
        group["lr"] = 2e-4
    for group in model.opt_d.param_groups:  # freeze D: only G learns
        group["lr"] = 0.0
    model.train_step(x, 0.0)
    with torch.no_grad():
        assert g_loss() < g0


def test_gan_g_step_skips_d_weight_gradients_and_takes_the_textbook_step():
    """G's update through a D with requires_grad off equals the DCGAN example's step, which
    also fills D's weight gradients in G's backward (discarded: the D step zeroes them)."""
    import torch.nn.functional as F

    def textbook_step(gan, x):
        z = torch.randn(x.shape[0], gan.config.latent_dim)
        fake = gan.generator(z)
        real_logits, fake_logits = gan.discriminator(x), gan.discriminator(fake.detach())
        d_loss = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
        d_loss = d_loss + F.binary_cross_entropy_with_logits(
            fake_logits, torch.zeros_like(fake_logits)
        )
        gan.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        gan.opt_d.step()
        gen_logits = gan.discriminator(fake)
        g_loss = F.binary_cross_entropy_with_logits(gen_logits, torch.ones_like(gen_logits))
        gan.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        gan.opt_g.step()

    torch.manual_seed(0)
    ours = build_model(parse_model_spec("gan"), {"width": 8, "latent_dim": 8}, 32)
    book = build_model(parse_model_spec("gan"), {"width": 8, "latent_dim": 8}, 32)
    book.load_state_dict(ours.state_dict())
    x = torch.rand(4, 16, 3, 32, 32) * 2 - 1
    for batch in x:
        rng = torch.get_rng_state()
        ours.train_step(batch, 0.0)
        torch.set_rng_state(rng)
        textbook_step(book, batch)
    for (name, a), b in zip(ours.state_dict().items(), book.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    assert all(p.requires_grad for p in ours.discriminator.parameters())
    from torch.utils.flop_counter import FlopCounterMode

    counted = []
    for step, gan in ((GAN.train_step, ours), (textbook_step, book)):
        with FlopCounterMode(display=False) as counter:
            step(gan, x[0]) if step is textbook_step else step(gan, x[0], 0.0)
        counted.append(counter.get_total_flops())
    assert counted[0] < counted[1]  # D's weight gradients skipped in G's backward


def test_step_context_uses_weights_updated_earlier_in_the_same_step():
    # A GAN's G update runs D again after D's optimiser step, inside one train_step. With
    # autocast's weight-cast cache it would see D's stale pre-update bf16 weights.
    layer, x = torch.nn.Linear(8, 8), torch.randn(4, 8)
    cpu = torch.device("cpu")
    with speed.step_context("bf16", cpu):
        before = layer(x)
        with torch.no_grad():
            layer.weight.mul_(-1.0)
        after = layer(x)
    with speed.step_context("bf16", cpu):
        fresh = layer(x)
    assert after.dtype == torch.bfloat16
    assert torch.equal(after, fresh) and not torch.equal(after, before)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_matmul_4x4_switch_keeps_each_models_function_and_gradients(layout):
    for name in ("ae", "vae", "gan"):
        model = tiny(name).to(memory_format=layout)
        x = batch().contiguous(memory_format=layout)
        z = torch.randn(16, TINY["latent_dim"])
        outputs = []
        for on in (False, True):
            speed.set_matmul_4x4(model, on)
            # Two such layers in each model: the latent head (or D's logit) and G's first.
            assert sum(getattr(m, "as_matmul", False) for m in model.modules()) == 2 * on
            model.zero_grad()
            encoded = model.encode(x) if name != "gan" else model.discriminator(x).flatten(1)
            decoded = model.decode(z)
            (encoded.square().sum() + decoded.square().sum()).backward()
            grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
            outputs.append((encoded, decoded, grads))
        (e0, d0, g0), (e1, d1, g1) = outputs
        torch.testing.assert_close(e1, e0, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(d1, d0, rtol=1e-4, atol=1e-5)
        assert len(g1) == len(g0) > 0
        for a, b in zip(g1, g0, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4 * float(b.abs().max()))


def test_matmul_layers_reject_shapes_their_product_form_does_not_cover():
    from models.backbone import LatentConvTranspose2d, WholeMapConv2d

    with pytest.raises(ValueError, match="stride 1"):
        WholeMapConv2d(8, 4, 4, stride=2)
    with pytest.raises(ValueError, match="padding 0"):
        LatentConvTranspose2d(8, 4, 4, 1, 1)
    conv = WholeMapConv2d(8, 4, 4)
    conv.as_matmul = True
    x = torch.randn(2, 8, 6, 6)  # larger map than the kernel: falls back to the convolution
    torch.testing.assert_close(conv(x), torch.nn.functional.conv2d(x, conv.weight, conv.bias))


def test_fused_adam_switch_takes_the_same_steps_and_survives_a_checkpoint_load():
    cpu = torch.device("cpu")
    plain, fused = tiny("gan"), tiny("gan")
    assert speed.set_fused_adam(fused, cpu, True)
    assert all(g["fused"] for opt in fused.optimizers().values() for g in opt.param_groups)
    for model in (plain, fused):
        torch.manual_seed(3)
        model.train_step(batch(), 0.0)
    for a, b in zip(plain.parameters(), fused.parameters(), strict=True):
        # Adam moves each weight by about lr = 2e-4; rounding differs where |grad| ~ eps.
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    saved = {k: o.state_dict() for k, o in fused.optimizers().items()}
    for k, opt in plain.optimizers().items():
        opt.load_state_dict(saved[k])  # a fused checkpoint, resumed with the switch off
    assert not speed.set_fused_adam(plain, cpu, False)
    assert not any(g["fused"] for opt in plain.optimizers().values() for g in opt.param_groups)
    plain.train_step(batch(), 0.0)  # the fused run's state steps on in the default loop


def test_vae_terms_by_hand():
    # KL(N(mu, s^2) || N(0,1)) = 0.5 (mu^2 + s^2 - 1 - log s^2) per dim.
    mu = torch.tensor([[1.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)]])
    expected_kl = 0.5 * (1 + 1 - 1 - 0) + 0.5 * (0 + 2 - 1 - math.log(2))
    assert float(kl_standard_normal_nats(mu, logvar)) == pytest.approx(expected_kl, rel=1e-6)
    # -log N(0.5; 0.3, 0.1^2) = 0.5 (0.2/0.1)^2 + log 0.1 + 0.5 log(2 pi), per pixel.
    x = torch.full((1, 3, 2, 2), 0.5)
    mean = torch.full((1, 3, 2, 2), 0.3)
    per_pixel = 0.5 * 4 + math.log(0.1) + 0.5 * math.log(2 * math.pi)
    nll = gaussian_nll_nats(x, mean, torch.tensor(math.log(0.1)))
    assert float(nll) == pytest.approx(12 * per_pixel, rel=1e-5)


@pytest.mark.parametrize("sigma", ["0.1", "learned", "optimal"])
def test_vae_loss_is_negative_elbo_at_beta_1(sigma):
    model = tiny("vae", decoder_sigma=sigma)
    terms = model.loss_terms(batch(), 5.0, generator=torch.Generator().manual_seed(0))
    assert float(terms["loss"]) == pytest.approx(
        float(terms["recon_nll"] + terms["kl_nats"]), rel=1e-6
    )
    if sigma == "0.1":
        assert float(terms["sigma"]) == pytest.approx(0.1, rel=1e-5)
    if sigma == "optimal":  # sigma^2 = batch MSE (Rybkin et al. 2021)
        assert float(terms["sigma"]) ** 2 == pytest.approx(float(terms["recon_mse"]), rel=1e-4)


def test_beta_and_kl_warmup():
    model = tiny("vae", beta=4, kl_warmup_epochs=2)
    terms = model.loss_terms(batch(), 0.5, generator=torch.Generator().manual_seed(0))
    assert float(terms["kl_weight"]) == pytest.approx(0.25)
    expected = terms["recon_nll"] + 4 * 0.25 * terms["kl_nats"]
    assert float(terms["loss"]) == pytest.approx(float(expected), rel=1e-6)


def test_registry_validates():
    assert set(models.MODELS) >= {"ae", "vae", "gan"}
    assert parse_model_spec("vae:beta=4").label == "vae:beta=4"
    with pytest.raises(BenchError, match="unknown model 'vqvae'; accepted: ae, dogvae, gan, vae"):
        parse_model_spec("vqvae")
    with pytest.raises(BenchError, match="unknown key 'gamma'"):
        parse_model_spec("vae:gamma=2")
    with pytest.raises(BenchError, match="beta"):
        parse_model_spec("vae:beta=lots")
    with pytest.raises(BenchError, match="decoder_sigma"):
        parse_model_spec("vae:decoder_sigma=blurry")
    with pytest.raises(ValueError, match="already registered"):
        register_model("vae", VAE)
    with pytest.raises(TypeError):
        register_model("mlp", torch.nn.Linear)


@pytest.mark.parametrize("name", ["ae", "vae", "gan"])
def test_declared_capabilities_match_what_the_model_does(name):
    """Callers trust has_encoder / has_posterior instead of probing the model."""
    model, x = tiny(name), batch()
    assert model.has_encoder == (name != "gan") and model.has_posterior == (name == "vae")
    assert (model.encode(x) is not None) == model.has_encoder
    assert (model.reconstruct(x) is not None) == model.has_encoder
    if model.has_posterior:
        mu, logvar = model.posterior(x)
        assert mu.shape == logvar.shape == (len(x), TINY["latent_dim"])
    else:
        with pytest.raises(NotImplementedError):
            model.posterior(x)


def test_registry_refuses_a_capability_without_its_method():
    class Claims(GAN):
        has_encoder = True  # but no encode()

    with pytest.raises(TypeError, match="declares has_encoder but does not define encode"):
        register_model("claims", Claims)
    assert "claims" not in models.MODELS


@pytest.mark.skipif(shutil.which("g++") is None, reason="torch.compile on CPU needs a C++ compiler")
def test_compile_switch_compiles_matches_eager_and_loads_eager_checkpoints():
    """train.compile: graphs are really compiled, losses equal eager, and a checkpoint of an
    eager model loads into a compiled one (same parameter names)."""
    from torch._dynamo.utils import counters

    from bench.harness import speed

    eager, compiled = tiny("ae"), tiny("ae")
    speed.compile_modules(compiled)
    counters.clear()
    compiled.load_state_dict(eager.state_dict())
    x = batch()
    for _ in range(2):
        want, got = eager.train_step(x, 0.0)["loss"], compiled.train_step(x, 0.0)["loss"]
        assert float(got) == pytest.approx(float(want), rel=1e-4)
    assert counters["stats"]["unique_graphs"] >= 3  # trunk, head, decoder


def test_lr_warm_up_ramps_every_optimiser_and_resumes_on_the_same_ramp():
    from bench.core.config import TrainConfig
    from bench.harness.train import optimizer_lrs, warm_up_lr

    model = tiny("gan")  # two optimisers
    base = optimizer_lrs(model)
    seen = []
    for step in range(7):
        if step == 2:  # a checkpoint saved mid-warm-up loads its reduced lr: the ramp decides
            for o in model.optimizers().values():
                o.param_groups[0]["lr"] = 123.0
        warm_up_lr(model, base, step, 4)
        seen.append(
            {k: o.param_groups[0]["lr"] / base[k][0] for k, o in model.optimizers().items()}
        )
    assert [round(s["opt_g"], 6) for s in seen] == [0.25, 0.5, 0.75, 1, 1, 1, 1]
    assert all(s["opt_g"] == s["opt_d"] for s in seen)
    with pytest.raises(BenchError, match="lr_warmup_steps must be >= 0"):
        TrainConfig(lr_warmup_steps=-1)
