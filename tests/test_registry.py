"""bench.metrics.registry: validation at registration, and a metric added in one place only
shows up in the evaluator, `bench report` and `bench check`."""

import pytest
from click.testing import CliRunner
from test_check import check, make_baseline
from test_samplers import _evaluator, pixel_features, tiny_model  # noqa: F401 (fixture)

from bench.analysis import report as rp
from bench.metrics import registry
from bench.metrics.registry import HIGHER, LOWER, Output, RegistryError, register_metric
from bench.results import table as rt


@pytest.fixture
def scratch():
    """Register metrics for one test only: whatever it added is removed afterwards."""
    added = []

    def register(name, fn, outputs):
        metric = register_metric(name, fn, outputs)
        added.append(name)
        return metric

    yield register
    for name in added:
        registry.unregister_metric(name)


@pytest.mark.parametrize(
    "name, outputs, fragment",
    [
        ("kid", [Output("toy_a")], "already registered"),  # metric name taken
        ("toy", [Output("fid")], "output name already registered"),  # output of 'fid'
        ("toy", [Output("toy_a"), Output("toy_a")], "output name already registered"),
        ("toy", [Output("toy_a", "smaller")], "direction 'smaller'"),
        ("toy", [Output("toy_a", tolerance=0.1)], "needs a direction"),
        ("toy", [Output("toy_a", LOWER, -0.1)], "not a fraction"),
        ("toy", [Output("toy_a", headline=1)], "headline position 1 already taken"),
        ("toy", [Output("cost/toy")], "not a metric name"),
        ("toy", [Output("toy_a@gmm", LOWER)], "variant of an undeclared output"),
        ("toy", [Output("fid@trunc", HIGHER)], "takes its base's direction"),
        ("toy", [], "declares no outputs"),
    ],
)
def test_bad_declarations_raise_and_leave_the_registry_unchanged(name, outputs, fragment):
    before = registry.headline_columns(), registry.gated_outputs(), registry.fid_outputs()
    with pytest.raises(RegistryError, match=fragment):
        register_metric(name, None, outputs)
    assert registry.output("toy_a") is None
    assert (registry.headline_columns(), registry.gated_outputs(), registry.fid_outputs()) == before


def test_builtin_facts():
    assert registry.headline_columns() == (
        "final_fid", "best_fid", "fid@gmm", "kid_mean", "precision", "recall", "coverage",
        "sharpness", "recon_mse", "psnr", "ssim", "kl_nats", "interp_cv",
    )  # fmt: skip
    assert set(registry.fid_outputs()) == {"fid", "final_fid", "best_fid", "fid@gmm"}
    assert registry.direction("kl_nats") == registry.TWO_SIDED
    assert list(registry.feature_metrics()) == ["kid", "prdc", "sharpness", "diversity", "memorization"]  # fmt: skip
    # sampler variants measure what their base does; only declared ones are decorated
    assert registry.direction("precision@trunc0.5") == HIGHER
    assert registry.tolerance("fid@gaussian") == registry.tolerance("fid") == 0.10
    assert (
        registry.label("fid@gmm") == "FID@gmm" and registry.label("kid_mean@gmm") == "kid_mean@gmm"
    )
    assert registry.shown_direction("coverage@gmm") == registry.NONE
    assert "fid@gmm" not in registry.gated_outputs()
    assert registry.label(rt.RUN_SECONDS) == "run wall (s)"
    assert registry.direction("never_declared") == registry.NONE


def test_undeclared_output_of_a_function_raises(scratch):
    scratch("toy", lambda *_: {"toy_a": 1.0, "toy_b": 2.0}, [Output("toy_a")])
    with pytest.raises(RegistryError, match="returned 'toy_b', which it does not declare"):
        registry.compute("toy", None, None, None, None, 0.0)


def test_evaluator_refuses_an_undeclared_output(scratch, pixel_features):  # noqa: F811
    scratch("toy", lambda *_: {"toy_a": 1.0, "toy_b": 2.0}, [Output("toy_a")])
    evaluator = _evaluator(["prior"], train_images=False)
    evaluator.cfg.extras = ["toy"]
    with pytest.raises(RegistryError, match="'toy' returned 'toy_b'"):
        evaluator(tiny_model("ae"), final=True)


TOY = [Output("toy_score", HIGHER, 0.05, label="toy score", headline=99)]
MODELS = {"ae": {"fid": 50.0, "toy_score": 0.80}, "gan": {"fid": 40.0, "toy_score": 0.60}}


def test_a_registered_metric_reaches_the_report(scratch, tmp_path):
    scratch("toy", None, TOY)
    make_baseline(tmp_path, MODELS)  # writes run folders under tmp_path/base
    result = CliRunner().invoke(rp.report_command, [str(tmp_path / "base")])
    assert result.exit_code == 0, result.output
    final = (tmp_path / "base" / "REPORT.md").read_text().split("## Final metrics")[1]
    header, _, *rows = final.split("##")[0].strip().splitlines()[:4]
    assert header.endswith("| toy score ↑ |")  # headline 99: the last headline column
    assert "| ae | 1/1 | 50 | 50 | **0.8** |" in rows  # higher is better: ae is bolded


def test_a_registered_metric_is_gated_by_bench_check(scratch, tmp_path):
    scratch("toy", None, TOY)
    baseline = make_baseline(tmp_path, MODELS)
    within = {**MODELS, "ae": {"fid": 50.0, "toy_score": 0.78}}  # -2.5%, tolerance 5%
    result = check(tmp_path, baseline, within, name="within")
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "toy_score" in line)
    assert row.split()[:2] == ["ae", "toy_score"] and {"5%", "ok"} <= set(row.split())
    worse = {
        **MODELS,
        "ae": {"fid": 50.0, "toy_score": 0.70},
    }  # -12.5%: worse when higher is better
    result = check(tmp_path, baseline, worse, name="worse")
    assert result.exit_code == 1, result.output
    assert any(
        line.split()[:2] == ["ae", "toy_score"] and "worse" in line
        for line in result.output.splitlines()
    )
