"""bench claims: each claim holds / fails / is inconclusive on hand-made numbers, the
command's exit codes, and the Claims section of REPORT.md."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image
from scipy import stats

from bench.analysis import claims as cl
from bench.analysis import report as rp
from bench.analysis.stats import welch_interval

HOLDS, FAILS, INCONCLUSIVE = cl.HOLDS, cl.FAILS, cl.INCONCLUSIVE


def table(groups: dict[str, list[dict]], statuses: dict[str, list[str]] | None = None):
    """A per-run table: {model label: [metrics of seed 0, seed 1, ...]}; status ok unless
    statuses says otherwise."""
    rows = []
    for model, seeds in groups.items():
        for seed, metrics in enumerate(seeds):
            status = (statuses or {}).get(model, ["ok"] * len(seeds))[seed]
            rows.append(
                {"run": f"{model}-seed{seed}", "model": model, "seed": seed, "status": status}
                | metrics
            )
    return pd.DataFrame(rows)


def seeds(metric: str, values: list[float], **fixed) -> list[dict]:
    return [{metric: v} | fixed for v in values]


def by_id(claims: list[cl.Claim]) -> dict[str, cl.Claim]:
    return {c.id: c for c in claims}


# ---------------------------------------------------------------- decision rule


def test_welch_interval_matches_the_formula():
    a, b = np.array([300.0, 310, 295]), np.array([150.0, 160, 155])
    va, vb = a.var(ddof=1) / 3, b.var(ddof=1) / 3
    dof = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 2)  # Welch-Satterthwaite
    half = stats.t.ppf(0.975, dof) * math.sqrt(va + vb)
    _, low, high = welch_interval(a, b)
    assert (low, high) == pytest.approx((a.mean() - b.mean() - half, a.mean() - b.mean() + half))
    assert welch_interval(np.array([2.0, 2.0]), np.array([1.0, 1.0]))[1:] == (1.0, 1.0)


def test_decide_and_single_seed_margin():
    assert cl.decide(1.0, 2.0, +1) == HOLDS and cl.decide(1.0, 2.0, -1) == FAILS
    assert cl.decide(-1.0, 2.0, +1) == INCONCLUSIVE
    assert cl.decide(0.5, 0.9, -1, at=1.0) == HOLDS
    assert cl.decide(math.nan, math.nan, +1) == INCONCLUSIVE
    # one seed: called only beyond 5% of the larger value
    assert cl.compare_groups([300.0], [150.0], +1)[0] == HOLDS
    assert cl.compare_groups([140.0], [150.0], +1)[0] == FAILS
    assert cl.compare_groups([0.0], [0.0], +1)[0] == INCONCLUSIVE
    verdict, diff, reason = cl.compare_groups([152.0], [150.0], +1)
    assert verdict == INCONCLUSIVE and "single seed" in diff and "within the 5% margin" in reason


def test_rate_difference_interval_newcombe():
    # 3/3 vs 0/3: Wilson intervals [0.4385, 1] and [0, 0.5615]; low = 1 - sqrt(2) * 0.5615
    low, high = cl.rate_difference_interval(3, 3, 0, 3)
    assert low == pytest.approx(1 - math.sqrt(2) * 0.56150, abs=1e-4) and high == pytest.approx(1)
    assert cl.rate_difference_interval(1, 1, 0, 1)[0] < 0  # one run each tells nothing


def test_variance_ratio_interval():
    ratio, low, high = cl.variance_ratio_interval(np.array([100.0, 140, 60]), np.array([150.0, 160, 155]))  # fmt: skip
    assert ratio == pytest.approx(64.0)  # std 40 vs 5
    assert low == pytest.approx(64 / stats.f.ppf(0.975, 2, 2)) and high > ratio


# ---------------------------------------------------------------- claim 1


@pytest.mark.parametrize(
    ("ae", "vae", "verdict"),
    [
        ([300, 310, 295], [150, 160, 155], HOLDS),
        ([150, 160, 155], [300, 310, 295], FAILS),
        ([150, 200, 250], [160, 210, 240], INCONCLUSIVE),
    ],
)
def test_claim_1_verdicts(ae, vae, verdict):
    claim = cl.claim_ae_prior_samples_worse(table({"ae": seeds("fid", ae), "vae": seeds("fid", vae)}))  # fmt: skip
    assert claim.verdict == verdict
    assert "(n=3)" in claim.evidence and f"fid ae {np.mean(ae):.4g}" in claim.evidence


def test_claim_1_missing_runs_and_metric():
    claim = cl.claim_ae_prior_samples_worse(table({"vae": seeds("fid", [150, 160])}))
    assert claim.verdict == INCONCLUSIVE and claim.reason == "no ae runs"
    claim = cl.claim_ae_prior_samples_worse(
        table({"ae": seeds("fid", [300]), "vae": seeds("fid", [150])}, {"ae": ["diverged"]})
    )
    assert claim.verdict == INCONCLUSIVE and "no ae run finished ok" in claim.reason
    claim = cl.claim_ae_prior_samples_worse(
        table({"ae": seeds("psnr", [1]), "vae": seeds("psnr", [2])})
    )
    assert claim.reason == "metric fid not recorded"


def test_claim_1_single_seed_and_vae_choice():
    per_run = table(
        {
            "ae": seeds("fid", [300]),
            "vae:beta=4": seeds("fid", [100]),
            "vae:beta=2": seeds("fid", [150]),
        }  # fmt: skip
    )
    claim = cl.claim_ae_prior_samples_worse(per_run)
    assert claim.verdict == HOLDS and "single seed" in claim.evidence
    assert "vae:beta=2 150" in claim.evidence  # no β=1 run: the β closest to 1
    per_run = table({"ae": seeds("fid", [160]), "vae": seeds("fid", [150])})
    assert cl.claim_ae_prior_samples_worse(per_run).verdict == HOLDS  # 10 = 6.2% of 160
    per_run = table({"ae": seeds("fid", [156]), "vae": seeds("fid", [150])})
    claim = cl.claim_ae_prior_samples_worse(per_run)  # 6 = 3.8% of 156: within the margin
    assert claim.verdict == INCONCLUSIVE and "3.8% of 156, within the 5% margin" in claim.reason


def test_plain_vae_choice():
    assert cl.plain_vae(table({"vae:beta=0.5": [{}], "vae:beta=2": [{}]})) == "vae:beta=0.5"
    assert cl.plain_vae(table({"vae:beta=1": [{}], "vae:beta=4": [{}]})) == "vae:beta=1"
    assert cl.plain_vae(table({"vae": [{}], "vae:beta=1": [{}]})) == "vae"


# ---------------------------------------------------------------- claim 2


def gap_table(fitted: list[float], name: str = "fid@gmm") -> pd.DataFrame:
    ae = [{"fid": f, name: g} for f, g in zip([300, 310, 295], fitted, strict=True)]
    return table({"ae": ae, "vae": seeds("fid", [150, 160, 155])})


def test_claim_2_holds_and_reports_share():
    claim = cl.claim_latent_density_closes_gap(gap_table([180, 170, 175]))
    assert claim.verdict == HOLDS
    # (301.67 - 175) / (301.67 - 155) = 86%
    assert "fid@gmm closes 86%" in claim.evidence


def test_claim_2_fails_when_less_than_half_closed():
    claim = cl.claim_latent_density_closes_gap(gap_table([280, 270, 275]))  # closes 18%
    assert claim.verdict == FAILS and "midpoint" in claim.reason


def test_claim_2_falls_back_to_gaussian_and_missing():
    claim = cl.claim_latent_density_closes_gap(gap_table([180, 170, 175], "fid@gaussian"))
    assert claim.verdict == HOLDS and "fid@gaussian closes" in claim.evidence
    per_run = table({"ae": seeds("fid", [300, 310]), "vae": seeds("fid", [150, 160])})
    claim = cl.claim_latent_density_closes_gap(per_run)
    assert claim.verdict == INCONCLUSIVE
    assert claim.reason == "metric fid@gmm / fid@gaussian not recorded"


def test_claim_2_without_a_gap_is_inconclusive():
    per_run = table({"ae": [{"fid": 150, "fid@gmm": 140}] * 2, "vae": seeds("fid", [300, 310])})
    claim = cl.claim_latent_density_closes_gap(per_run)
    assert claim.verdict == INCONCLUSIVE and "no established AE-VAE FID gap" in claim.reason


# ---------------------------------------------------------------- claim 3


def test_claim_3a():
    per_run = table({"ae": seeds("recon_mse", [0.010, 0.011, 0.012]), "vae": seeds("recon_mse", [0.020, 0.021, 0.022])})  # fmt: skip
    assert cl.claim_vae_reconstructs_worse(per_run).verdict == HOLDS
    per_run = table({"ae": seeds("recon_mse", [0.020, 0.021, 0.022]), "vae": seeds("recon_mse", [0.010, 0.011, 0.012])})  # fmt: skip
    assert cl.claim_vae_reconstructs_worse(per_run).verdict == FAILS


def beta_table(kl: dict[str, list[float]], mse: dict[str, list[float]]) -> pd.DataFrame:
    groups = {
        label: [{"kl_nats": k, "recon_mse": m} for k, m in zip(kl[label], mse[label], strict=True)]
        for label in kl
    }
    return table(groups | {"ae": seeds("recon_mse", [0.005])})


def test_claim_3b_monotone_over_three_betas():
    kl = {"vae:beta=0.5": [60, 61, 62], "vae": [30, 31, 32], "vae:beta=4": [12, 13, 14]}
    mse = {"vae:beta=0.5": [0.015, 0.016, 0.017], "vae": [0.020, 0.021, 0.022], "vae:beta=4": [0.030, 0.031, 0.032]}  # fmt: skip
    claim = cl.claim_beta_trades_rate_for_distortion(beta_table(kl, mse))
    assert claim.verdict == HOLDS
    assert all(f"β={b}: {k}" in claim.evidence for b, k in [(0.5, 61), (1, 31), (4, 13)])
    assert "Spearman ρ(β, mean) -1.00" in claim.evidence  # KL falls
    assert "Spearman ρ(β, mean) +1.00" in claim.evidence  # recon MSE rises


def test_claim_3b_not_monotone_fails():
    kl = {"vae:beta=0.5": [60, 61, 62], "vae": [30, 31, 32], "vae:beta=4": [12, 13, 14]}
    # recon MSE at β=4 clearly below β=1: the grid is not monotone
    mse = {"vae:beta=0.5": [0.015, 0.016, 0.017], "vae": [0.030, 0.031, 0.032], "vae:beta=4": [0.020, 0.021, 0.022]}  # fmt: skip
    claim = cl.claim_beta_trades_rate_for_distortion(beta_table(kl, mse))
    assert claim.verdict == FAILS and "recon_mse β 1→4" in claim.reason


def test_claim_3b_noisy_step_is_inconclusive_and_one_beta_is_missing():
    kl = {"vae": [30, 20, 40], "vae:beta=4": [31, 19, 25]}
    mse = {"vae": [0.02, 0.021, 0.022], "vae:beta=4": [0.03, 0.031, 0.032]}
    assert cl.claim_beta_trades_rate_for_distortion(beta_table(kl, mse)).verdict == INCONCLUSIVE
    claim = cl.claim_beta_trades_rate_for_distortion(beta_table({"vae": [30]}, {"vae": [0.02]}))
    assert claim.verdict == INCONCLUSIVE and "2 distinct β" in claim.reason


def test_claim_3b_uses_config_beta_and_skips_other_variants():
    per_run = table(
        {
            "vae": [{"kl_nats": 30.0, "recon_mse": 0.02}],
            "vae:beta=4": [{"kl_nats": 10.0, "recon_mse": 0.03}],
            "vae:latent_dim=8": [{"kl_nats": 99.0, "recon_mse": 0.001}],  # not on the grid
        }
    ).assign(beta=[1.0, 4.0, 1.0])
    claim = cl.claim_beta_trades_rate_for_distortion(per_run)
    assert claim.verdict == HOLDS and "99" not in claim.evidence


# ---------------------------------------------------------------- claims 4-6


def blur_table(vae_sharp: list[float], gan: bool = True) -> pd.DataFrame:
    vae = [{"sharpness": s, "sharpness_recon": s + 0.1} for s in vae_sharp]
    return table({"vae": vae} | ({"gan": seeds("sharpness", [1.1, 1.2, 1.0])} if gan else {}))


def test_claim_4():
    assert cl.claim_vae_blurrier(blur_table([0.40, 0.42, 0.41])).verdict == HOLDS
    claim = cl.claim_vae_blurrier(blur_table([1.5, 1.6, 1.55]))
    assert claim.verdict == FAILS and "sharpness vae < 1" in claim.reason
    claim = cl.claim_vae_blurrier(blur_table([0.40, 0.42, 0.41], gan=False))
    assert claim.verdict == INCONCLUSIVE and claim.reason == "no gan runs"
    assert "sharpness vae 0.41" in claim.evidence  # the parts that could be computed


def test_claim_5_majority_of_three_measures():
    gan = [{"final_fid": f, "fid_gap_rel": g} for f, g in [(100, 0.3), (140, 0.4), (60, 0.5)]]
    vae = [{"final_fid": f, "fid_gap_rel": 0.0} for f in (150, 160, 155)]
    claim = cl.claim_gan_less_stable(table({"gan": gan, "vae": vae}))
    assert claim.verdict == HOLDS and claim.reason.startswith("2 hold, 0 fail, 1 inconclusive")
    assert "variance ratio 64" in claim.evidence and "diverged 0/3 gan, 0/3 vae" in claim.evidence
    claim = cl.claim_gan_less_stable(table({"gan": gan, "vae": vae}, {"gan": ["ok", "ok", "diverged"]}))  # fmt: skip
    assert "diverged 1/3 gan" in claim.evidence
    # the other way round: VAE spreads and drifts, GAN is flat
    flipped = cl.claim_gan_less_stable(table({"gan": vae, "vae": gan}))
    assert flipped.verdict == FAILS


def test_claim_5_single_seed_says_spread_needs_two():
    per_run = table({"gan": [{"final_fid": 100, "fid_gap_rel": 0.3}], "vae": [{"final_fid": 150, "fid_gap_rel": 0.0}]})  # fmt: skip
    claim = cl.claim_gan_less_stable(per_run)
    assert claim.verdict == INCONCLUSIVE and "needs >= 2 ok seeds" in claim.reason


def test_claim_6():
    per_run = table({"ae": seeds("interp_cv", [0.5, 0.52, 0.51]), "vae": seeds("interp_cv", [0.3, 0.31, 0.32])})  # fmt: skip
    assert cl.claim_vae_interpolates_smoother(per_run).verdict == HOLDS
    claim = cl.claim_vae_interpolates_smoother(table({"ae": seeds("fid", [1]), "vae": seeds("fid", [1])}))  # fmt: skip
    assert claim.verdict == INCONCLUSIVE and claim.reason == "metric interp_cv not recorded"


SEED_SIGMA = "vae:decoder_sigma=0.0097204"  # models/dogvae.py equivalent_sigma at 128 px


def test_claim_7_seed_kl_weight_against_the_calibrated_sigma_vae():
    def runs(fixed_kl, fixed_fid, extra=None):
        groups = {
            SEED_SIGMA: [{"kl_nats": fixed_kl, "fid": fixed_fid, "active_dims": 256}],
            "vae": [{"kl_nats": 60.0, "fid": 200.0, "active_dims": 40}],
            # not the seed's σ, not β = 1, not calibrated: none of them is picked
            "vae:decoder_sigma=1": [{"kl_nats": 1.0, "fid": 400.0}],
            "vae:beta=4,decoder_sigma=0.0097204": [{"kl_nats": 2.0, "fid": 401.0}],
            "vae:decoder_sigma=learned": [{"kl_nats": 3.0, "fid": 402.0}],
            "vae:beta=4": [{"kl_nats": 20.0, "fid": 230.0}],
        }
        return table(groups | (extra or {})).assign(image_size=128)

    claim = cl.claim_seed_kl_weight(runs(900.0, 260.0))
    assert claim.verdict == HOLDS, claim.reason
    assert "kl_nats vae:decoder_sigma=0.0097204 900 (n=1) vs vae 60 (n=1)" in claim.evidence
    # shown, not voted on:
    assert "active_dims vae:decoder_sigma=0.0097204 256 (n=1) vs vae 40" in claim.evidence
    assert cl.claim_seed_kl_weight(runs(900.0, 150.0)).verdict == FAILS  # fixed σ samples better
    assert cl.claim_seed_kl_weight(runs(900.0, 203.0)).verdict == INCONCLUSIVE  # within 5%
    # The seed's σ depends on the image size: at 64 px it is half of 128 px's.
    at_64 = cl.claim_seed_kl_weight(runs(900.0, 260.0).assign(image_size=64))
    assert at_64.verdict == INCONCLUSIVE and "no vae at the seed's fixed σ" in at_64.reason
    # The recorded (resolved) decoder_sigma is what counts, not a default guessed here.
    learned = runs(900.0, 260.0).assign(decoder_sigma=lambda t: t["model"].map({"vae": "learned"}))
    assert "no σ-VAE (decoder_sigma=optimal) runs" in cl.claim_seed_kl_weight(learned).reason
    two = runs(900.0, 260.0, {"vae:beta=1.0,decoder_sigma=0.00972": [{"kl_nats": 1.0, "fid": 1.0}]})
    assert "ambiguous" in cl.claim_seed_kl_weight(two).reason


def test_claim_8_seed_noise_bug():
    def runs(uniform_fid, gaussian="dogvae", uniform="dogvae:noise=uniform"):
        return table({
            uniform: [{"fid": uniform_fid, "kl_nats": 3000.0, "active_dims": 250}],
            gaussian: [{"fid": 200.0, "kl_nats": 2500.0, "active_dims": 256}],
        })  # fmt: skip

    claim = cl.claim_seed_noise_bug(runs(260.0))
    assert claim.verdict == HOLDS, claim.reason
    assert "kl_nats dogvae:noise=uniform 3000 (n=1) vs dogvae 2500" in claim.evidence
    assert "active_dims" in claim.evidence
    assert cl.claim_seed_noise_bug(runs(150.0)).verdict == FAILS
    assert cl.claim_seed_noise_bug(runs(260.0, "dogvae:noise=gaussian")).verdict == HOLDS
    pair = runs(260.0, "dogvae:latent_dim=256", "dogvae:latent_dim=256,noise=uniform")
    assert cl.claim_seed_noise_bug(pair).verdict == HOLDS
    # a pair that differs in more than the noise compares nothing
    confounded = cl.claim_seed_noise_bug(runs(260.0, "dogvae:latent_dim=256"))
    assert (
        confounded.verdict == INCONCLUSIVE
        and "otherwise as dogvae:noise=uniform" in confounded.reason
    )
    missing = cl.claim_seed_noise_bug(table({"dogvae": seeds("fid", [1.0])}))
    assert missing.verdict == INCONCLUSIVE and missing.reason == "no dogvae with uniform noise runs"
    assert missing.evidence == "—"


def test_mixed_settings_make_every_claim_inconclusive():
    per_run = table({"ae": seeds("fid", [300, 310]), "vae": seeds("fid", [150, 160])})
    per_run["label"] = per_run["model"] + [" dataset=a", " dataset=b"] * 2
    claims = cl.evaluate_claims(per_run)
    assert [c.id for c in claims] == list(cl.CLAIMS)
    assert all(c.verdict == INCONCLUSIVE and "one sweep" in c.reason for c in claims)


# ---------------------------------------------------------------- results folder, command


def write_run(root: Path, model: str, seed: int, final: dict, status: str = "ok", images=()):
    run_id = f"{model.replace(':', '_')}-seed{seed}"
    d = root / run_id
    d.mkdir(parents=True)
    name, _, params = model.partition(":")
    beta = {"beta": float(params.split("=")[1]) if params else 1.0} if name == "vae" else {}
    config = {"run": run_id, "model": model, "model_name": name, "seed": seed}
    config |= {"model_params": {"latent_dim": 16} | beta, "data": {"dataset": "synthetic"}}
    (d / "config.json").write_text(json.dumps(config))
    (d / "status.json").write_text(json.dumps({"status": status, "epoch": 2, "step": 20}))
    rows = [(2, m, v) for m, v in final.items()] + [(2, "final_fid", final.get("fid"))]
    rows += [(1, "fid", final.get("fid", 0) + 5), (2, "best_fid", final.get("fid"))]
    df = pd.DataFrame(rows, columns=["epoch", "metric", "value"])
    df = df.assign(run=run_id, model=model, seed=seed, step=df["epoch"] * 10, n=100)
    df[["run", "model", "seed", "epoch", "step", "metric", "value", "n"]].to_csv(
        d / "metrics.csv", index=False
    )
    for i, image in enumerate(images):
        Image.new("RGB", (24, 24 if image != "interpolation.png" else 8), (40 * i, 90, 160)).save(
            d / image
        )


def make_results(root: Path, vae_mse: float = 0.02) -> Path:
    for seed in range(2):
        j = seed * 0.001
        write_run(
            root, "ae", seed,
            {"fid": 300 + 10 * seed, "fid@gmm": 180 + 5 * seed, "recon_mse": 0.01 + j, "interp_cv": 0.5 + j},
            images=["samples.png", "samples@gmm.png", "interpolation.png"],
        )  # fmt: skip
        write_run(
            root, "vae", seed,
            {"fid": 150 + 10 * seed, "recon_mse": vae_mse + j, "kl_nats": 30 + seed, "interp_cv": 0.3 + j},
            images=["samples.png", "interpolation.png"],
        )  # fmt: skip
        write_run(
            root,
            "vae:beta=4",
            seed,
            {"fid": 170 + seed, "recon_mse": 0.03 + j, "kl_nats": 10 + seed},
        )
    return root


def test_claims_command_passes_and_writes_markdown(tmp_path):
    results = make_results(tmp_path / "results")
    md = tmp_path / "summary.md"
    out = CliRunner().invoke(cl.claims_command, [str(results), "--require", "1,3a,3b", "--markdown", str(md)])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "[1] ✅ holds" in out.output and "[5] ❔ inconclusive" in out.output
    assert out.output.rstrip().endswith("claims: PASSED (required: 1, 3a, 3b)")
    assert "| 3a | A VAE reconstructs worse" in md.read_text()
    assert "**claims: PASSED (required: 1, 3a, 3b)**" in md.read_text()


def test_claims_command_fails_with_the_numbers(tmp_path):
    results = make_results(tmp_path / "results", vae_mse=0.005)  # VAE reconstructs better
    out = CliRunner().invoke(cl.claims_command, [str(results), "--require", "1,3a"])
    assert out.exit_code == 1
    *_, detail, last = out.output.strip().splitlines()
    assert last == "claims: FAILED: required 3a fails"
    assert detail.startswith("required claim 3a fails: recon_mse vae > ae: 95% CI of Δ")
    assert "recon_mse vae 0.0055" in detail and "ae 0.0105" in detail
    # an inconclusive required claim does not pass either
    out = CliRunner().invoke(cl.claims_command, [str(results), "--require", "5,1"])
    assert out.exit_code == 1 and "required claim 5 inconclusive: no gan runs" in out.output
    assert out.output.strip().endswith("claims: FAILED: required 5 inconclusive")


@pytest.mark.parametrize("args", [["--require", "99"], []])
def test_claims_command_bad_input_exits_2(tmp_path, args):
    path = make_results(tmp_path / "results") if args else tmp_path / "nothing"
    out = CliRunner().invoke(cl.claims_command, [str(path), *args])
    assert out.exit_code == 2 and out.output.startswith("Error: ")


def test_report_has_claims_section_and_figures(tmp_path):
    results = make_results(tmp_path / "results")
    out = CliRunner().invoke(rp.report_command, [str(results)])
    assert out.exit_code == 0, out.output
    md = (results / "REPORT.md").read_text()
    claims = md.split("## Claims")[1].split("\n## ")[0]
    assert md.index("## Claims") < md.index("## Final metrics")
    assert "| 1 | An AE decoding N(0, I) latents" in claims and "✅ holds" in claims
    for name in ("rate_distortion.png", "samples_by_sampler.png", "interpolations.png"):
        assert f"]({name})" in claims
        assert Image.open(results / name).size[0] > 300


def test_report_without_sampler_or_interpolation_images(tmp_path):
    root = tmp_path / "results"
    write_run(root, "ae", 0, {"fid": 300, "recon_mse": 0.01}, images=["samples.png"])
    out = CliRunner().invoke(rp.report_command, [str(root)])
    assert out.exit_code == 0, out.output
    md = (root / "REPORT.md").read_text()
    assert "## Claims" in md and "no VAE run with both kl_nats and recon_mse" in md
    for name in ("rate_distortion.png", "samples_by_sampler.png", "interpolations.png"):
        assert not (root / name).exists() and f"]({name})" not in md


def test_claims_7_and_8_read_recorded_params_and_image_size_from_a_results_folder(tmp_path):
    from helpers import write_run as write_folder

    runs = {
        ("dogvae", "gaussian", None): 200.0,
        ("dogvae:noise=uniform", "uniform", None): 260.0,
        (SEED_SIGMA, None, "0.0097204"): 300.0,
        ("vae", None, "optimal"): 180.0,
    }
    for (label, noise, sigma), fid in runs.items():
        write_folder(
            tmp_path, label, 0, {"fid": fid, "kl_nats": 50.0 if sigma == "optimal" else 900.0}
        )
        config_path = tmp_path / f"{label.replace(':', '_')}-seed0" / "config.json"
        config = json.loads(config_path.read_text())
        params = {"noise": noise} if noise else {"decoder_sigma": sigma, "beta": 1.0}
        config["model_params"] = params
        config["data"]["image_size"] = 128
        config_path.write_text(json.dumps(config))
    per_run = cl.load_claim_inputs(tmp_path)
    assert set(per_run["image_size"]) == {128}
    claims = by_id(cl.evaluate_claims(per_run))
    assert claims["7"].verdict == HOLDS, claims["7"].reason
    assert claims["8"].verdict == HOLDS, claims["8"].reason
