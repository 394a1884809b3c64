"""Claims from the AE / VAE / GAN literature, checked against a results folder.

`bench claims RESULTS [--require 1,3a] [--markdown FILE]` prints one row per claim (claim,
evidence, verdict) and exits 1 if a required claim does not hold; `bench report` puts the
same table at the top of REPORT.md. Every verdict is computed from the numbers.

Decision rule (the same for every comparison; CONFIDENCE 95%, MARGIN 5%):
- Only runs with status ok count: a diverged run has no final metrics and a running one
  none yet (claim 5's divergence rate counts ok + diverged runs).
- >= 2 seeds on both sides: the 95% Welch t interval of mean(a) - mean(b) (Welch 1947;
  scipy.stats.ttest_ind(equal_var=False)). holds if it excludes 0 on the claimed side,
  fails if it excludes 0 on the other side, inconclusive if it contains 0. A mean against a
  constant (sharpness < 1 = real) or differences paired within runs use the one-sample t
  interval of the mean instead.
- 1 seed on a side: the difference of the point values; holds / fails only when |Δ| exceeds
  MARGIN of a stated scale (the larger |mean| unless said otherwise), else inconclusive.
  The evidence then says "single seed".
- A missing run or metric: inconclusive, with the reason ("metric fid@gmm not recorded").
- A claim with several parts holds if all parts hold, fails if any part fails, else is
  inconclusive; claim 5 (three stability measures) goes by the majority of its measures.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import pandas as pd
from scipy import stats

from bench.analysis import budget_check as bc
from bench.analysis.markdown import md_table
from bench.analysis.stats import (
    CONFIDENCE,
    mean_interval,
    rate_difference_interval,
    variance_ratio_interval,
    welch_interval,
)
from bench.core.errors import BenchError
from bench.core.io import write_text
from bench.core.layout import FINAL_FID, FINISHED, Status
from bench.results import table as rt
from models.dogvae import GAUSSIAN_NOISE, UNIFORM_NOISE, DogVAEConfig, equivalent_sigma
from models.vae import CALIBRATED_SIGMA, VAEConfig

HOLDS, FAILS, INCONCLUSIVE = "holds", "fails", "inconclusive"
VERDICT_MARK = {HOLDS: "✅", FAILS: "❌", INCONCLUSIVE: "❔"}
MARGIN = 0.05  # single seed: a difference below 5% of the scale is not called either way
# models/vae.py VAEConfig.beta default (β = 1: the true ELBO). bench run records the resolved
# β in config.json model_params; this only serves results without it.
PLAIN_VAE_BETA = 1.0
# Samplers fitted to the AE's training latents, preferred first (written as fid@<sampler>).
FITTED_SAMPLERS = ("gmm", "gaussian")

CLAIM_TEXT = {
    "1": "An AE decoding N(0, I) latents gives worse samples (higher FID) than a VAE",
    "2": "Fitting a density to the AE's latents (GMM, else Gaussian) lowers its FID and "
    "closes >= 50% of the AE-VAE FID gap",
    "3a": "A VAE reconstructs worse (higher recon MSE) than an AE with the same backbone",
    "3b": "Raising β lowers the KL and raises the reconstruction error, monotonically over "
    "the β grid",
    "4": "VAE samples and reconstructions are blurrier than real images and than GAN samples "
    "(sharpness: Laplacian variance relative to real, 1 = as sharp as real)",
    "5": "GAN training is less stable than VAE training (final-FID spread over seeds, "
    "best-vs-final FID gap, divergence rate; majority of the three)",
    "6": "VAE latent interpolations are smoother than AE interpolations (lower interp_cv)",
    "7": "The seed's KL weight (DogVAE's loss, MSE on 0-255 pixels + kl_weight × KL, as the "
    "fixed decoder σ it equals on the shared backbone) keeps more KL nats and gives worse "
    "N(0, I) samples (higher FID) than the calibrated σ-VAE",
    "8": "The seed's uniform reparameterisation noise (rand_like, U[0, 1) instead of N(0, I)) "
    "gives DogVAE worse N(0, I) samples (higher FID) than Gaussian noise",
}


@dataclass(frozen=True)
class Claim:
    id: str
    claim: str
    evidence: str  # the numbers: means, 95% CIs, seeds
    verdict: str  # holds | fails | inconclusive
    reason: str


@dataclass(frozen=True)
class Part:
    """One comparison inside a claim."""

    verdict: str
    evidence: str
    reason: str


class Missing(Exception):
    """A run or metric that a comparison needs is not in the results."""


# ---------------------------------------------------------------- statistics


def decide(low: float, high: float, sign: int, at: float = 0.0) -> str:
    """holds if [low, high] lies on the claimed side of `at` (sign +1: above), fails if it
    lies on the other side, inconclusive if it contains `at` (or is NaN)."""
    if sign * (low - at) > 0 and sign * (high - at) > 0:
        return HOLDS
    if sign * (low - at) < 0 and sign * (high - at) < 0:
        return FAILS
    return INCONCLUSIVE


def _interval_reason(verdict: str) -> str:
    return {
        HOLDS: "95% CI of Δ excludes 0 on the claimed side",
        FAILS: "95% CI of Δ excludes 0 on the opposite side",
        INCONCLUSIVE: "95% CI of Δ includes 0 (too few seeds or too noisy)",
    }[verdict]


def _single_seed(diff: float, scale: float, sign: int) -> tuple[str, str]:
    rel = abs(diff) / abs(scale) if scale else (0.0 if diff == 0 else math.inf)
    size = f"single seed, |Δ| = {rel:.1%} of {_num(scale)}"
    if not rel > MARGIN:
        return INCONCLUSIVE, f"{size}, within the {MARGIN:.0%} margin"
    return (HOLDS if sign * diff > 0 else FAILS), f"{size} > {MARGIN:.0%} margin"


def compare_groups(a, b, sign: int, scale: float | None = None) -> tuple[str, str, str]:
    """(verdict, Δ text, reason) for the claim sign(mean(a) - mean(b)) == sign."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = float(np.mean(a) - np.mean(b))
    if min(len(a), len(b)) < 2:
        scale = scale if scale is not None else max(abs(np.mean(a)), abs(np.mean(b)))
        verdict, reason = _single_seed(diff, scale, sign)
        return verdict, f"Δ {_signed(diff)} (single seed)", reason
    _, low, high = welch_interval(a, b, CONFIDENCE)
    verdict = decide(low, high, sign)
    return (
        verdict,
        f"Δ {_signed(diff)} [{_signed(low)}, {_signed(high)}]",
        _interval_reason(verdict),
    )


def compare_to(x, value: float, sign: int, scale: float | None = None) -> tuple[str, str, str]:
    """(verdict, Δ text, reason) for the claim sign(mean(x) - value) == sign."""
    x = np.asarray(x, dtype=float)
    diff = float(np.mean(x) - value)
    if len(x) < 2:
        scale = scale if scale is not None else max(abs(np.mean(x)), abs(value))
        verdict, reason = _single_seed(diff, scale, sign)
        return verdict, f"Δ {_signed(diff)} (single seed)", reason
    low, high = (v - value for v in mean_interval(x))
    verdict = decide(low, high, sign)
    return (
        verdict,
        f"Δ {_signed(diff)} [{_signed(low)}, {_signed(high)}]",
        _interval_reason(verdict),
    )


# ---------------------------------------------------------------- formatting


def _num(x: float) -> str:
    return f"{x:.4g}"


def _signed(x: float) -> str:
    return f"{x:+.4g}"


def describe(values) -> str:
    """'300 [290, 310] (n=3)': mean, 95% t interval of the mean, seeds; '300 (n=1)'."""
    s = rt.mean_ci(values, CONFIDENCE)
    if s["n"] < 2:
        return f"{_num(s['mean'])} (n={s['n']})"
    return f"{_num(s['mean'])} [{_num(s['ci_low'])}, {_num(s['ci_high'])}] (n={s['n']})"


# ---------------------------------------------------------------- selecting runs


def label_params(label: str) -> dict[str, str]:
    """'vae:beta=4,latent_dim=8' -> {'beta': '4', 'latent_dim': '8'} (models.registry syntax)."""
    rest = str(label).partition(":")[2]
    return dict(p.split("=", 1) for p in rest.split(",") if "=" in p)


def _model_names(per_run: pd.DataFrame) -> pd.Series:
    return per_run["model"].astype(str).str.partition(":")[0]


def _betas(per_run: pd.DataFrame) -> pd.Series:
    """β per run: the config's model_params (column beta) first, else the label's beta=,
    else PLAIN_VAE_BETA for the plain 'vae' label."""
    from_label = pd.to_numeric(
        per_run["model"].map(lambda m: label_params(m).get("beta")), errors="coerce"
    )
    from_label = from_label.mask((per_run["model"] == "vae") & from_label.isna(), PLAIN_VAE_BETA)
    if "beta" not in per_run:
        return from_label
    return pd.to_numeric(per_run["beta"], errors="coerce").combine_first(from_label)


def _ok(per_run: pd.DataFrame, label: str) -> pd.DataFrame:
    runs = per_run[per_run["model"] == label]
    if runs.empty:
        raise Missing(f"no {label} runs")
    ok = runs[runs["status"] == Status.OK]
    if ok.empty:
        raise Missing(f"no {label} run finished ok ({', '.join(runs['status'].astype(str))})")
    return ok


def _finite(runs: pd.DataFrame, metric: str, label: str) -> np.ndarray:
    if metric not in runs:
        raise Missing(f"metric {metric} not recorded")
    x = runs[metric].to_numpy(dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        raise Missing(f"metric {metric} not recorded for {label}")
    return x


def values(per_run: pd.DataFrame, label: str, metric: str) -> np.ndarray:
    """Finite values of `metric` over the ok runs (one per seed) of model `label`."""
    if metric not in per_run:
        raise Missing(f"metric {metric} not recorded")
    return _finite(_ok(per_run, label), metric, label)


def reference_label(per_run: pd.DataFrame, name: str) -> str:
    """The plain `name` model ('ae'), or the only variant of it in the results."""
    labels = sorted(set(per_run.loc[_model_names(per_run) == name, "model"]))
    if name in labels:
        return name
    if len(labels) == 1:
        return labels[0]
    if not labels:
        raise Missing(f"no {name} runs")
    raise Missing(f"no plain {name} run and several variants ({', '.join(labels)}): ambiguous")


def beta_grid(per_run: pd.DataFrame) -> pd.DataFrame:
    """VAE runs that differ from the plain VAE in β only ('vae', 'vae:beta=4'), with column
    beta; other VAE variants (e.g. another latent_dim) are not on the grid."""
    is_grid = (_model_names(per_run) == "vae") & per_run["model"].map(
        lambda m: set(label_params(m)) <= {"beta"}
    )
    grid = per_run[is_grid].assign(beta=_betas(per_run)[is_grid])
    return grid[np.isfinite(grid["beta"].astype(float))]


def plain_vae(per_run: pd.DataFrame) -> str:
    """'vae'; else the β-only VAE label with β = 1, else the one closest to it in log β
    (β grids are log-spaced; ties go to the smaller β)."""
    if "vae" in set(per_run["model"]):
        return "vae"
    grid = beta_grid(per_run)
    labels = set(grid["model"])
    if not labels:
        raise Missing("no vae runs")
    betas = grid.drop_duplicates("model").set_index("model")["beta"].astype(float)
    with np.errstate(divide="ignore"):
        distance = np.abs(np.log(betas.where(betas > 0, np.nan))).fillna(np.inf)
    return min(labels, key=lambda m: (distance[m], betas[m]))


# ---------------------------------------------------------------- parts and verdicts


def part(make: Callable[[], Part]) -> Part:
    """make(), or an inconclusive part naming what is missing."""
    try:
        return make()
    except Missing as e:
        return Part(INCONCLUSIVE, "", str(e))


def metric_part(per_run: pd.DataFrame, metric: str, a: str, b: str, sign: int) -> Part:
    """Claim: metric of model a is above (sign +1) / below (-1) that of model b."""
    x, y = values(per_run, a, metric), values(per_run, b, metric)
    verdict, diff, reason = compare_groups(x, y, sign)
    op = ">" if sign > 0 else "<"
    evidence = f"{metric} {a} {describe(x)} vs {b} {describe(y)}, {diff}"
    note = convergence_note(per_run, [a, b], metric)
    return Part(verdict, evidence, f"{metric} {a} {op} {b}: {reason}{note}")


def _ok_runs(per_run: pd.DataFrame, label: str) -> pd.DataFrame:
    return per_run[(per_run["model"] == label) & (per_run["status"] == Status.OK)]


def _tracked(runs: pd.DataFrame) -> pd.Series:
    """Per run: whether it recorded tracked points (rt.tracked_stability)."""
    if "track_points" not in runs:
        return pd.Series(False, index=runs.index)
    return runs["track_points"].notna()


# The longer-budget check compares these (N(0, I) final FID); its notes go on claims about them.
LONGER_CHECKED_METRICS = ("fid", FINAL_FID)


def _longer_notes(ok: pd.DataFrame, label: str) -> list[str]:
    """'ae seed 1 degrading at 2× budget (+16.6%)' for each run whose longer-budget check
    (with_longer_check) found its final FID still improving or degrading, or whose longer
    run diverged; a check without a verdict (no FID to compare) says nothing."""
    if "longer_verdict" not in ok:
        return []
    named = ok[ok["longer_verdict"].isin([rt.IMPROVING, rt.DEGRADING, Status.DIVERGED])]
    return [
        f"{label} seed {r.seed} {r.longer_verdict} at {r.longer_budget_ratio:.3g}× budget"
        + (f" ({r.longer_change_rel:+.1%})" if np.isfinite(r.longer_change_rel) else "")
        for r in named.itertuples(index=False)
    ]


def convergence_note(per_run: pd.DataFrame, labels: list[str], metric: str) -> str:
    """' (vae: 1/3 seeds converged)' for each model whose ok seeds have tracked points but
    not all converged (rt.tracked_verdict): its final values may still move. For a
    claim on LONGER_CHECKED_METRICS also ' (longer-budget check of final FID: ae seed 1
    degrading at 2× budget (+16.6%))' for each run that check did not find converged. ''
    when all converged or nothing is known."""
    tracked, longer = [], []
    for label in dict.fromkeys(labels):
        ok = _ok_runs(per_run, label)
        if ok.empty:
            continue
        k = int((ok["convergence"] == rt.CONVERGED).sum()) if "convergence" in ok else 0
        if _tracked(ok).any() and k < len(ok):
            tracked.append(f"{label}: {k}/{len(ok)} seeds converged")
        if metric in LONGER_CHECKED_METRICS:
            longer += _longer_notes(ok, label)
    notes = tracked + ([f"longer-budget check of final FID: {', '.join(longer)}"] if longer else [])
    return f" ({'; '.join(notes)})" if notes else ""


def constant_part(
    per_run: pd.DataFrame, metric: str, label: str, value: float, what: str, sign: int
) -> Part:
    """Claim: mean of metric of model `label` is above (+1) / below (-1) a constant."""
    x = values(per_run, label, metric)
    verdict, diff, reason = compare_to(x, value, sign)
    op = ">" if sign > 0 else "<"
    evidence = f"{metric} {label} {describe(x)} vs {what} {_num(value)}, {diff}"
    return Part(verdict, evidence, f"{metric} {label} {op} {_num(value)}: {reason}")


def all_of(parts: list[Part]) -> tuple[str, str]:
    """holds if every part holds, fails if any fails, else inconclusive; with the reasons."""
    for verdict in (FAILS, INCONCLUSIVE):
        hit = [p.reason for p in parts if p.verdict == verdict]
        if hit:
            return verdict, "; ".join(dict.fromkeys(hit))  # each reason once, in order
    return HOLDS, "; ".join(p.reason for p in parts)


def majority_of(parts: list[Part]) -> tuple[str, str]:
    """holds / fails when more than half of the parts do; else inconclusive."""
    count = {v: sum(p.verdict == v for p in parts) for v in (HOLDS, FAILS, INCONCLUSIVE)}
    tally = f"{count[HOLDS]} hold, {count[FAILS]} fail, {count[INCONCLUSIVE]} inconclusive"
    verdict = next((v for v in (HOLDS, FAILS) if 2 * count[v] > len(parts)), INCONCLUSIVE)
    return verdict, f"{tally} of {len(parts)}: " + "; ".join(p.reason for p in parts)


def make_claim(claim_id: str, parts: list[Part], combine=all_of, context: str = "") -> Claim:
    """The claim's verdict from its parts; `context`: figures shown but not voted on."""
    verdict, reason = combine(parts)
    evidence = "; ".join(filter(None, [*(p.evidence for p in parts), context])) or "—"
    return Claim(claim_id, CLAIM_TEXT[claim_id], evidence, verdict, reason)


# ---------------------------------------------------------------- the claims


def claim_ae_prior_samples_worse(per_run: pd.DataFrame) -> Claim:
    """1. The AE's latents are not N(0, I), so decoding prior draws gives poor samples,
    while the VAE's KL term pulls its aggregate posterior towards the prior (Kingma &
    Welling 2014)."""
    p = part(
        lambda: metric_part(per_run, "fid", reference_label(per_run, "ae"), plain_vae(per_run), +1)
    )
    return make_claim("1", [p])


def _fitted_sampler(ae_runs: pd.DataFrame) -> str:
    for sampler in FITTED_SAMPLERS:
        metric = f"fid@{sampler}"
        if metric in ae_runs and np.isfinite(ae_runs[metric].astype(float)).any():
            return metric
    names = " / ".join(f"fid@{s}" for s in FITTED_SAMPLERS)
    raise Missing(f"metric {names} not recorded")


def _paired(runs: pd.DataFrame, a: str, b: str, label: str) -> tuple[np.ndarray, np.ndarray]:
    """Metrics a and b of the same runs (those where both are finite)."""
    for metric in (a, b):
        if metric not in runs:
            raise Missing(f"metric {metric} not recorded")
    pair = runs[[a, b]].astype(float)
    pair = pair[np.isfinite(pair).all(axis=1)]
    if pair.empty:
        raise Missing(f"metrics {a} and {b} not recorded together for {label}")
    return pair[a].to_numpy(), pair[b].to_numpy()


def share_closed(prior_fid: float, fitted_fid: float, vae_fid: float) -> float:
    """Fraction of the AE-VAE FID gap that the fitted sampler removes (1 = down to the VAE)."""
    return (prior_fid - fitted_fid) / (prior_fid - vae_fid)


def _gap_closed_parts(per_run: pd.DataFrame) -> list[Part]:
    ae, vae = reference_label(per_run, "ae"), plain_vae(per_run)
    ae_runs = _ok(per_run, ae)
    fitted = _fitted_sampler(ae_runs)
    prior, fit = _paired(ae_runs, "fid", fitted, ae)
    vae_fid = values(per_run, vae, "fid")
    shares = []
    for sampler in (f"fid@{s}" for s in FITTED_SAMPLERS):
        try:
            base, sampled = _paired(ae_runs, "fid", sampler, ae)
        except Missing:  # the other sampler is optional evidence
            continue
        share = share_closed(base.mean(), sampled.mean(), vae_fid.mean())
        shares.append(f"{sampler} closes {share:.0%}")
    evidence = (
        f"fid {ae} with N(0,I) {describe(prior)}, {fitted} {describe(fit)}, fid {vae} "
        f"{describe(vae_fid)}; of the gap: {', '.join(shares)}"
    )
    gap = compare_groups(prior, vae_fid, +1)
    if gap[0] != HOLDS:
        why = f"no established AE-VAE FID gap to close (fid {ae} > {vae}, {gap[1]}: {gap[2]})"
        return [Part(INCONCLUSIVE, evidence, why)]
    # (a) the fitted sampler beats N(0, I) on the same AE runs: paired differences.
    lower = compare_to(fit - prior, 0.0, -1, scale=float(prior.mean()))
    # (b) closing >= 50% of the gap <=> fid_fit(ae) <= (fid(ae) + fid(vae)) / 2: a linear
    # contrast, so the Welch interval applies to (fid_fit - fid/2 per AE run) vs fid(vae)/2.
    midpoint = (prior.mean() + vae_fid.mean()) / 2
    half = compare_groups(fit - prior / 2, vae_fid / 2, -1, scale=float(midpoint))
    return [
        Part(gap[0], evidence, f"gap fid {ae} − {vae} {gap[1]}: {gap[2]}"),
        Part(lower[0], "", f"{fitted} < fid of {ae}, paired {lower[1]}: {lower[2]}"),
        Part(half[0], "", f"{fitted} < midpoint {_num(midpoint)}, {half[1]}: {half[2]}"),
    ]


def claim_latent_density_closes_gap(per_run: pd.DataFrame) -> Claim:
    """2. Ghosh et al. 2020 (RAE): an ex-post density estimate of the AE's latents (a GMM)
    makes a deterministic AE a competitive sampler."""
    try:
        parts = _gap_closed_parts(per_run)
    except Missing as e:
        parts = [Part(INCONCLUSIVE, "", str(e))]
    return make_claim("2", parts)


def claim_vae_reconstructs_worse(per_run: pd.DataFrame) -> Claim:
    """3a. The KL term costs reconstruction quality (the rate–distortion trade-off of the ELBO;
    Alemi et al. 2018)."""
    p = part(
        lambda: metric_part(
            per_run, "recon_mse", plain_vae(per_run), reference_label(per_run, "ae"), +1
        )
    )
    return make_claim("3a", [p])


def _per_beta(grid: pd.DataFrame, metric: str, betas: list[float]) -> dict[float, np.ndarray]:
    return {b: _finite(grid[grid["beta"] == b], metric, f"vae β={_num(b)}") for b in betas}


def _beta_parts(per_run: pd.DataFrame) -> list[Part]:
    grid = beta_grid(per_run)
    grid = grid[grid["status"] == Status.OK]
    betas = sorted(set(grid["beta"].astype(float)))
    if len(betas) < 2:
        found = ", ".join(f"β={_num(b)}" for b in betas) or "none"
        raise Missing(f"needs ok VAE runs at >= 2 distinct β (found: {found})")
    parts = []
    for metric, sign in (("kl_nats", -1), ("recon_mse", +1)):
        by_beta = _per_beta(grid, metric, betas)
        means = [float(np.mean(by_beta[b])) for b in betas]
        rho = stats.spearmanr(betas, means).statistic if len(set(means)) > 1 else math.nan
        listed = ", ".join(f"β={_num(b)}: {describe(by_beta[b])}" for b in betas)
        steps = []
        for lo, hi in zip(betas, betas[1:], strict=False):
            verdict, diff, reason = compare_groups(by_beta[hi], by_beta[lo], sign)
            steps.append(Part(verdict, "", f"{metric} β {_num(lo)}→{_num(hi)} {diff}: {reason}"))
        evidence = f"{metric} {listed}; Spearman ρ(β, mean) {rho:+.2f}"
        parts += [Part(steps[0].verdict, evidence, steps[0].reason), *steps[1:]]
    return parts


def claim_beta_trades_rate_for_distortion(per_run: pd.DataFrame) -> Claim:
    """3b. Higgins et al. 2017 (β-VAE), Alemi et al. 2018: β moves the model along the
    rate (KL) – distortion curve. Every step of the grid must go the claimed way."""
    try:
        parts = _beta_parts(per_run)
    except Missing as e:
        parts = [Part(INCONCLUSIVE, "", str(e))]
    return make_claim("3b", parts)


def claim_vae_blurrier(per_run: pd.DataFrame) -> Claim:
    """4. A factorised Gaussian likelihood averages over modes: blurry VAE outputs (e.g.
    Larsen et al. 2016), while a GAN's discriminator penalises blur."""

    def vae() -> str:
        return plain_vae(per_run)

    parts = [
        part(lambda: constant_part(per_run, "sharpness", vae(), 1.0, "real", -1)),
        part(lambda: constant_part(per_run, "sharpness_recon", vae(), 1.0, "real", -1)),
        part(lambda: metric_part(per_run, "sharpness", vae(), reference_label(per_run, "gan"), -1)),
    ]
    return make_claim("4", parts)


def _spread_part(per_run: pd.DataFrame, gan: str, vae: str) -> Part:
    x, y = values(per_run, gan, FINAL_FID), values(per_run, vae, FINAL_FID)
    if min(len(x), len(y)) < 2:
        raise Missing(f"FID spread needs >= 2 ok seeds per model ({gan}: {len(x)}, {vae}: {len(y)})")  # fmt: skip
    ratio, low, high = variance_ratio_interval(x, y)
    verdict = decide(low, high, +1, at=1.0)
    sd = f"std final_fid {gan} {_num(np.std(x, ddof=1))} vs {vae} {_num(np.std(y, ddof=1))}"
    evidence = f"{sd}, variance ratio {_num(ratio)} [{_num(low)}, {_num(high)}]"
    side = {HOLDS: "excludes 1 above", FAILS: "excludes 1 below", INCONCLUSIVE: "includes 1"}
    note = convergence_note(per_run, [gan, vae], FINAL_FID)
    return Part(verdict, evidence, f"FID spread {gan} > {vae}: 95% F CI {side[verdict]}{note}")


def _gap_part(per_run: pd.DataFrame, gan: str, vae: str) -> Part:
    """Best-vs-final relative FID gap, gan > vae. rt.per_run_stability takes it from the
    tracked points (one N, >= 10 points) where a run has them; the evidence says which."""
    p = metric_part(per_run, "fid_gap_rel", gan, vae, +1)
    sources = []
    for label in (gan, vae):
        ok = _ok_runs(per_run, label)
        tracked = _tracked(ok)
        if tracked.all() and len(ok):
            n = "/".join(str(int(v)) for v in sorted(ok["track_n"].dropna().unique()))
            sources.append(f"{label} from tracked FID (N={n})")
        else:
            sources.append(f"{label} from {'tracked FID and ' if tracked.any() else ''}evaluations")
    if not _tracked(per_run[per_run["model"].isin([gan, vae])]).any():
        return p  # every gap from the evaluations, as before tracked points existed
    return Part(p.verdict, f"{p.evidence} (gap: {', '.join(sources)})", p.reason)


def _divergence_part(per_run: pd.DataFrame, gan: str, vae: str) -> Part:
    counts = {}
    for label in (gan, vae):
        status = per_run.loc[per_run["model"] == label, "status"]
        finished = status[status.isin(FINISHED)]
        if finished.empty:
            raise Missing(f"no finished {label} runs for a divergence rate")
        counts[label] = (int((finished == Status.DIVERGED).sum()), len(finished))
    low, high = rate_difference_interval(*counts[gan], *counts[vae])
    verdict = decide(low, high, +1)
    rate = ", ".join(f"{k}/{n} {label}" for label, (k, n) in counts.items())
    evidence = f"diverged {rate}, difference 95% CI [{_signed(low)}, {_signed(high)}]"
    reason = f"divergence rate {gan} > {vae}: {_interval_reason(verdict)} (Newcombe)"
    return Part(verdict, evidence, reason)


def claim_gan_less_stable(per_run: pd.DataFrame) -> Claim:
    """5. Adversarial training is a saddle-point search that can oscillate or collapse
    (Goodfellow 2016 tutorial; Salimans et al. 2016); a VAE minimises one bound."""
    try:
        gan, vae = reference_label(per_run, "gan"), plain_vae(per_run)
    except Missing as e:
        return make_claim("5", [Part(INCONCLUSIVE, "", str(e))])
    parts = [
        part(lambda: _spread_part(per_run, gan, vae)),
        part(lambda: _gap_part(per_run, gan, vae)),
        part(lambda: _divergence_part(per_run, gan, vae)),
    ]
    return make_claim("5", parts, majority_of)


def claim_vae_interpolates_smoother(per_run: pd.DataFrame) -> Claim:
    """6. The KL term makes the VAE latent space locally continuous, so a straight line
    between codes stays on decodable images (Bowman et al. 2016; Berthelot et al. 2019)."""
    p = part(
        lambda: metric_part(
            per_run, "interp_cv", plain_vae(per_run), reference_label(per_run, "ae"), -1
        )
    )
    return make_claim("6", [p])


def recorded(per_run: pd.DataFrame, label: str, key: str, default):
    """Model parameter `key` of the runs of `label`: as config.json recorded it (resolved,
    a column of claim_inputs), else as the label sets it, else the model's `default`."""
    runs = per_run[per_run["model"] == label]
    if key in runs and runs[key].notna().any():
        return runs[key].dropna().iloc[0]
    return label_params(label).get(key, default)


def variant_label(per_run: pd.DataFrame, name: str, what: str, accept) -> str:
    """The one `name` label that accept(label) admits; `what` names the variant in the reason
    when there is none or more than one."""
    labels = sorted(
        m for m in set(per_run.loc[_model_names(per_run) == name, "model"]) if accept(m)
    )
    if not labels:
        raise Missing(f"no {what} runs")
    if len(labels) > 1:
        raise Missing(f"several {what} runs ({', '.join(labels)}): ambiguous")
    return labels[0]


def _as_float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _plain_sigma_vae(label: str) -> bool:
    """A VAE label that changes at most β (to 1) and the decoder σ."""
    params = label_params(label)
    return set(params) <= {"beta", "decoder_sigma"} and _as_float(params.get("beta", 1)) == 1


def seed_sigma(per_run: pd.DataFrame, label: str) -> float:
    """The fixed decoder σ equivalent to the seed's KL weight at the image size of `label`'s
    runs (models/dogvae.py, equivalent_sigma)."""
    size = _as_float(recorded(per_run, label, "image_size", math.nan))
    return equivalent_sigma(3 * size**2, DogVAEConfig().kl_weight)


def fixed_sigma_vae(per_run: pd.DataFrame) -> str:
    """The β = 1 VAE whose fixed decoder σ is the seed's KL weight (within 1%)."""

    def is_seed_sigma(label: str) -> bool:
        sigma = _as_float(recorded(per_run, label, "decoder_sigma", None))
        return _plain_sigma_vae(label) and abs(sigma / seed_sigma(per_run, label) - 1) < 0.01

    what = "vae at the seed's fixed σ (vae:decoder_sigma=σ, models/dogvae.py equivalent_sigma)"
    return variant_label(per_run, "vae", what, is_seed_sigma)


def calibrated_vae(per_run: pd.DataFrame) -> str:
    """The β = 1 σ-VAE: decoder σ calibrated to the batch MSE, no other change."""

    def is_calibrated(label: str) -> bool:
        sigma = recorded(per_run, label, "decoder_sigma", VAEConfig().decoder_sigma)
        return _plain_sigma_vae(label) and sigma == CALIBRATED_SIGMA

    return variant_label(per_run, "vae", f"σ-VAE (decoder_sigma={CALIBRATED_SIGMA})", is_calibrated)


def dogvae_noise_pair(per_run: pd.DataFrame) -> tuple[str, str]:
    """(uniform, gaussian): the dogvae labels with the seed's uniform noise and with Gaussian
    noise, equal in every other parameter the labels set."""

    def noise(label: str) -> str:
        return recorded(per_run, label, "noise", DogVAEConfig().noise)

    def rest(label: str) -> dict:
        return {k: v for k, v in label_params(label).items() if k != "noise"}

    uniform = variant_label(
        per_run, "dogvae", "dogvae with uniform noise", lambda m: noise(m) == UNIFORM_NOISE
    )
    gaussian = variant_label(
        per_run,
        "dogvae",
        f"dogvae with Gaussian noise and otherwise as {uniform}",
        lambda m: noise(m) == GAUSSIAN_NOISE and rest(m) == rest(uniform),
    )
    return uniform, gaussian


def context_evidence(per_run: pd.DataFrame, metrics: list[str], labels) -> str:
    """'active_dims a 12 vs b 30' per metric, for the models labels() names: figures shown
    next to a claim's verdict, not voted on; '' where a model or metric is missing."""
    try:
        chosen = list(labels())
    except Missing:
        return ""
    shown = []
    for metric in metrics:
        try:
            figures = [f"{m} {describe(values(per_run, m, metric))}" for m in chosen]
        except Missing:
            continue
        shown.append(f"{metric} " + " vs ".join(figures))
    return "; ".join(shown)


def claim_seed_kl_weight(per_run: pd.DataFrame) -> Claim:
    """7. A fixed, very small decoder σ makes the likelihood so sharp that the KL weighs
    little: the posterior spreads away from N(0, I) and prior samples land off the data;
    calibrating σ to the data fixes the balance (Rybkin et al. 2021, σ-VAE). The seed's
    weight is that σ (models/dogvae.py, equivalent_sigma)."""

    def labels() -> tuple[str, str]:
        return fixed_sigma_vae(per_run), calibrated_vae(per_run)

    parts = [
        part(lambda: metric_part(per_run, "kl_nats", *labels(), +1)),
        part(lambda: metric_part(per_run, "fid", *labels(), +1)),
    ]
    return make_claim("7", parts, context=context_evidence(per_run, ["active_dims"], labels))


def claim_seed_noise_bug(per_run: pd.DataFrame) -> Claim:
    """8. With ε ~ U[0, 1) the decoder is trained on codes shifted by σ/2 and with a twelfth
    of the variance the KL term assumes, so N(0, I) draws at sampling time are not what it
    learned to decode (Kingma & Welling 2014 derive the estimator for ε ~ N(0, I))."""

    def labels() -> tuple[str, str]:
        return dogvae_noise_pair(per_run)

    p = part(lambda: metric_part(per_run, "fid", *labels(), +1))
    context = context_evidence(per_run, ["kl_nats", "active_dims"], labels)
    return make_claim("8", [p], context=context)


CLAIMS: dict[str, Callable[[pd.DataFrame], Claim]] = {
    "1": claim_ae_prior_samples_worse,
    "2": claim_latent_density_closes_gap,
    "3a": claim_vae_reconstructs_worse,
    "3b": claim_beta_trades_rate_for_distortion,
    "4": claim_vae_blurrier,
    "5": claim_gan_less_stable,
    "6": claim_vae_interpolates_smoother,
    "7": claim_seed_kl_weight,
    "8": claim_seed_noise_bug,
}


def mixed_settings(per_run: pd.DataFrame) -> str | None:
    """Why the runs cannot be compared as one sweep, or None. rt.load_runs adds the dataset /
    image size / epochs (or the folder) to the label when those differ between runs."""
    if "label" not in per_run:
        return None
    mixed = sorted(set(per_run.loc[per_run["label"] != per_run["model"], "label"]))
    if not mixed:
        return None
    return (
        f"runs differ in dataset / image size / epochs or repeat seeds across sweeps "
        f"({', '.join(mixed[:3])}{', ...' if len(mixed) > 3 else ''}); run on one sweep folder"
    )


def evaluate_claims(per_run: pd.DataFrame) -> list[Claim]:
    """Every claim, in CLAIMS order, from a per-run table (claim_inputs)."""
    why = mixed_settings(per_run)
    if why:
        return [Claim(i, CLAIM_TEXT[i], "—", INCONCLUSIVE, why) for i in CLAIMS]
    return [check(per_run) for check in CLAIMS.values()]


# Run facts and model parameters (config.json, resolved) that claims read besides β.
CLAIM_RUN_FACTS = ("image_size", "decoder_sigma", "noise")


def claim_inputs(runs_df: pd.DataFrame, per_run_df: pd.DataFrame) -> pd.DataFrame:
    """rt.per_run_table rows plus each run's β (config model_params, else the label) and
    CLAIM_RUN_FACTS where recorded."""
    by_run = runs_df.set_index("run")
    keys = [k for k in ("beta", *CLAIM_RUN_FACTS) if k in by_run]
    out = per_run_df.drop(columns=keys, errors="ignore")
    out = out.assign(**{k: out["run"].map(by_run[k]) for k in keys})
    if "beta" not in out:
        out = out.assign(beta=np.nan)
    return out.assign(beta=_betas(out))


# Columns with_longer_check adds, from bc.longer_budget_table's (verdict, change_rel,
# budget_ratio).
LONGER_CHECK_COLUMNS = {
    "verdict": "longer_verdict",
    "change_rel": "longer_change_rel",
    "budget_ratio": "longer_budget_ratio",
}


def with_longer_check(inputs: pd.DataFrame, longer: pd.DataFrame | None) -> pd.DataFrame:
    """claim_inputs plus, per run that a longer-budget check repeated (bench report /
    bench claims --longer: bc.longer_budget_table, keyed by label and seed; the largest
    budget where there are several), its verdict, relative change of final FID and budget
    ratio (LONGER_CHECK_COLUMNS); NaN elsewhere."""
    if longer is None:
        return inputs
    # A run repeated at several larger budgets (2x and 4x): the longest check speaks for it.
    longest = longer.sort_values("budget_ratio").drop_duplicates(["label", "seed"], keep="last")
    checked = longest[["label", "seed", *LONGER_CHECK_COLUMNS]].rename(columns=LONGER_CHECK_COLUMNS)
    return inputs.drop(columns=list(LONGER_CHECK_COLUMNS.values()), errors="ignore").merge(
        checked, on=["label", "seed"], how="left"
    )


def checked_claim_inputs(
    runs: pd.DataFrame, per_run: pd.DataFrame, longer: Path | None
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(claim_inputs with the longer-budget check of the runs under ``longer`` merged in,
    that check's table: bc.longer_budget_table, None without ``longer``)."""
    check = None if longer is None else bc.longer_budget_table(per_run, longer)
    return with_longer_check(claim_inputs(runs, per_run), check), check


def load_claim_inputs(results_dir: str | Path, longer: Path | None = None) -> pd.DataFrame:
    """claim_inputs of the runs under results_dir, with the longer-budget check of the runs
    under ``longer`` (bench.analysis.budget_check) when given."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise BenchError(
            f"results path {results_dir} is not a folder; expected a folder written by bench run --out"
        )
    runs, metrics = rt.load_runs(results_dir)
    return checked_claim_inputs(runs, rt.per_run_table(runs, metrics), longer)[0]


# ---------------------------------------------------------------- output


DECISION_RULE = (
    "Verdicts are computed from the final metrics of the runs that finished ok. With >= 2 "
    "seeds on both sides: 95% Welch t interval of the difference of means (one-sample t "
    "interval against a constant, paired within runs for claim 2); ✅ holds if it excludes 0 "
    "on the claimed side, ❌ fails if it excludes 0 on the other side, ❔ inconclusive if it "
    f"includes 0. With one seed on a side: point values, called only when the difference "
    f'exceeds {MARGIN:.0%} ("single seed"). A missing run or metric is inconclusive. '
    "Evidence: mean [95% CI of the mean] (n seeds), Δ = difference [95% CI]. Multi-part "
    "claims hold only if every part holds (claim 5: majority of its three measures)."
)


def verdict_text(verdict: str) -> str:
    return f"{VERDICT_MARK[verdict]} {verdict}"


def format_markdown(claims: list[Claim]) -> str:
    rows = [[c.id, c.claim, c.evidence, verdict_text(c.verdict), c.reason] for c in claims]
    return md_table(["#", "claim", "evidence", "verdict", "why"], rows)


def format_text(claims: list[Claim]) -> str:
    """For a person reading a CI log: one block per claim."""
    out = []
    for c in claims:
        out += [
            f"[{c.id}] {verdict_text(c.verdict):<16} {c.claim}",
            f"     evidence: {c.evidence}",
            f"     why: {c.reason}",
        ]
    return "\n".join(out)


def parse_require(text: str | None) -> list[str]:
    ids = [t.strip() for t in (text or "").split(",") if t.strip()]
    for i in ids:
        if i not in CLAIMS:
            raise BenchError(f"--require: unknown claim id {i!r}; accepted: {', '.join(CLAIMS)}")
    return ids


def not_holding(claims: list[Claim], required: list[str]) -> list[Claim]:
    by_id = {c.id: c for c in claims}
    return [by_id[i] for i in dict.fromkeys(required) if by_id[i].verdict != HOLDS]


def summary_line(claims: list[Claim], required: list[str]) -> str:
    bad = not_holding(claims, required)
    if not bad:
        return f"claims: PASSED (required: {', '.join(required) or 'none'})"
    return "claims: FAILED: required " + ", ".join(f"{c.id} {c.verdict}" for c in bad)


def failure_details(claims: list[Claim], required: list[str]) -> list[str]:
    """One line per required claim that does not hold, with its numbers."""
    return [
        f"required claim {c.id} {c.verdict}: {c.reason} [evidence: {c.evidence}]"
        for c in not_holding(claims, required)
    ]


@click.command("claims")
@click.argument("results", type=click.Path(path_type=Path))
@click.option(
    "--require",
    default="",
    help=f"Comma list of claim ids that must hold, e.g. 1,3a (ids: {', '.join(CLAIMS)}).",
)
@click.option(
    "--markdown",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the table as markdown (e.g. $GITHUB_STEP_SUMMARY; overwritten).",
)
@bc.longer_option
@click.pass_context
def claims_command(
    ctx: click.Context, results: Path, require: str, markdown: Path | None, longer: Path | None
) -> None:
    """Check the AE/VAE/GAN claims against the runs under RESULTS and print the verdicts.

    Exit 1 if a --require'd claim does not hold (fails or is inconclusive), 0 otherwise,
    2 for bad input. Verdicts use 95% Welch intervals over seeds (a 5% margin for single
    seeds); see bench/analysis/claims.py. With --longer, a claim on final FID also names
    each of its models' runs whose final FID the longer-budget check found still moving.
    """
    required = parse_require(require)
    inputs = load_claim_inputs(results, longer)
    claims = evaluate_claims(inputs)
    summary, details = summary_line(claims, required), failure_details(claims, required)
    notes = [f"note: {n}" for n in [rt.unfinished_note(inputs)] if n]
    head = [f"claims for {results}", *notes, ""]
    click.echo("\n".join([*head, format_text(claims), "", *details, summary]))
    if markdown is not None:
        bullets = "".join(f"- {d}\n" for d in notes + details)
        body = f"{format_markdown(claims)}\n\n{DECISION_RULE}\n\n{bullets}\n**{summary}**\n"
        write_text(markdown, "### bench claims\n\n" + body)
    ctx.exit(1 if details else 0)
