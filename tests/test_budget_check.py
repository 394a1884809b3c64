"""`bench report --longer`: the same runs at a larger budget, final FID compared."""

from pathlib import Path

from click.testing import CliRunner
from helpers import write_run

from bench.analysis import budget_check as bc
from bench.cli import cli
from bench.results import table as rt


def _sweeps(tmp_path: Path, longer_fid_n: int = 1000) -> tuple[Path, Path]:
    short, longer = tmp_path / "standard", tmp_path / "standard-2x"
    for seed in (0, 1):
        write_run(short, "gan", seed, {"fid": 100.0 + seed})
        write_run(short, "vae", seed, {"fid": 50.0 + seed})
    write_run(longer, "gan", 0, {"fid": 80.0}, epochs=4, fid_n=longer_fid_n)  # -20%
    write_run(longer, "vae", 0, {"fid": 52.0}, epochs=4, fid_n=longer_fid_n)  # +4%
    return short, longer


def _table(short, longer):
    runs, metrics = rt.load_runs(short)
    return bc.longer_budget_table(rt.per_run_table(runs, metrics), longer).set_index("label")


def test_longer_budget_pairs_model_and_seed_and_flags_a_change_over_ten_percent(tmp_path):
    short, longer = _sweeps(tmp_path)
    table = _table(short, longer)
    assert list(table.index) == ["gan", "vae"]  # seed 1 has no longer run: not paired
    assert table.loc["gan", "fid"] == 100.0 and table.loc["gan", "fid_longer"] == 80.0
    assert abs(table.loc["gan", "change_rel"] + 0.20) < 1e-12
    assert table.loc["gan", "budget_ratio"] == 2.0  # epochs: these runs have no counters
    assert table.loc["gan", "verdict"] == rt.IMPROVING
    assert table.loc["vae", "verdict"] == rt.CONVERGED
    # A parent of both: the longer runs are not paired with themselves.
    parent = _table(tmp_path, longer)
    assert sorted(parent.fid) == [50.0, 100.0] and sorted(parent.fid_longer) == [52.0, 80.0]


def test_longer_budget_ratio_comes_from_the_training_flops_the_runs_record(tmp_path):
    short, longer = tmp_path / "standard", tmp_path / "standard-2x"
    write_run(short, "gan", 1, {"fid": 65.0}, epochs=2, cost={"cum_train_flops": 1.26e14})
    write_run(longer, "gan", 1, {"fid": 54.0}, epochs=4, cost={"cum_train_flops": 3.15e14})
    table = _table(short, longer)
    assert table.loc["gan", "budget_ratio"] == 2.5  # FLOPs 3.15e14 / 1.26e14, not epochs 4 / 2
    assert table.loc["gan", "verdict"] == rt.IMPROVING


def test_report_longer_section_names_the_models_that_had_not_converged(tmp_path):
    short, longer = _sweeps(tmp_path)
    result = CliRunner().invoke(cli, ["report", str(short), "--longer", str(longer)])
    assert result.exit_code == 0, result.output
    text = (short / "REPORT.md").read_text()
    section = text.split("## Longer budget: convergence check")[1].split("\n## ")[0]
    assert "| gan | 0 | 2.00× | 100 | 80 | -20.0% |" in section
    assert "| vae | 0 | 2.00× | 50 | 52 | +4.0% |" in section
    assert "| vae | 0 | 2.00× | 50 | 52 | +4.0% | — | — | converged |" in section
    assert "Not converged at this budget: gan (still improving)." in section
    result = CliRunner().invoke(cli, ["report", str(longer), "--longer", str(short)])
    assert result.exit_code == 2 and "trained no longer than" in result.output


def test_report_longer_refuses_other_settings_or_no_shared_run_in_one_line(tmp_path):
    short, longer = _sweeps(tmp_path, longer_fid_n=500)
    result = CliRunner().invoke(cli, ["report", str(short), "--longer", str(longer)])
    assert result.exit_code == 2
    assert "differs from" in result.output and "eval.fid_samples=1000 vs 500" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (short / "REPORT.md").exists()  # nothing written
    other = tmp_path / "other"
    write_run(other, "ae", 0, {"fid": 10.0})
    result = CliRunner().invoke(cli, ["report", str(short), "--longer", str(other)])
    assert result.exit_code == 2 and "no finished (model, seed) also in" in result.output
    result = CliRunner().invoke(cli, ["report", str(short), "--longer", str(tmp_path / "none")])
    assert result.exit_code == 2 and "is not a folder" in result.output


def test_claims_on_fid_name_a_run_the_longer_check_found_not_converged(tmp_path):
    # Claim 1 compares the AE's FID with the VAE's: the AE's repeat at 2x got 30% worse, the
    # VAE's moved 2%. Without --longer the claims say nothing about convergence (no tracked
    # points); with it, claim 1 (on FID) names the AE and claim 6 (interp_cv) does not.
    short, longer = tmp_path / "standard", tmp_path / "standard-2x"
    for seed in (0, 1):
        write_run(short, "ae", seed, {"fid": 300.0 + seed, "interp_cv": 0.2})
        write_run(short, "vae", seed, {"fid": 100.0 + seed, "interp_cv": 0.1})
    write_run(longer, "ae", 1, {"fid": 391.3}, epochs=4)  # +30%
    write_run(longer, "vae", 1, {"fid": 103.0}, epochs=4)  # +2%
    plain = CliRunner().invoke(cli, ["claims", str(short)])
    assert plain.exit_code == 0, plain.output
    assert "budget" not in plain.output
    checked = CliRunner().invoke(cli, ["claims", str(short), "--longer", str(longer)])
    assert checked.exit_code == 0, checked.output
    note = "(longer-budget check of final FID: ae seed 1 degrading at 2× budget (+30.0%))"
    claim_1 = checked.output.split("[1]")[1].split("[2]")[0]
    claim_6 = checked.output.split("[6]")[1].split("[7]")[0]
    assert note in claim_1 and "vae seed 1" not in claim_1  # converged: not named
    assert "budget" not in claim_6
    assert "fid ae 300.5" in claim_1  # the claim's own numbers are the short runs'
    # The report's Claims section says the same.
    result = CliRunner().invoke(cli, ["report", str(short), "--longer", str(longer)])
    assert result.exit_code == 0, result.output
    claims = (short / "REPORT.md").read_text().split("## Claims")[1].split("\n## ")[0]
    assert note in claims


def test_claims_take_the_longest_check_of_a_run_and_skip_one_without_fid(tmp_path):
    short = tmp_path / "standard"
    for seed in (0, 1):
        write_run(short, "ae", seed, {"fid": 300.0 + seed})
        write_run(short, "vae", seed, {"fid": 100.0 + seed})
    # The AE's seed 1 repeated at 2x (+30%) and at 4x (+50%): one run, counted once, at 4x.
    write_run(tmp_path / "longer" / "2x", "ae", 1, {"fid": 391.3}, epochs=4)
    write_run(tmp_path / "longer" / "4x", "ae", 1, {"fid": 451.5}, epochs=8)
    # The VAE's repeat has no final FID: no verdict, so no note.
    write_run(tmp_path / "longer" / "4x", "vae", 1, {"kl_nats": 30.0}, epochs=8)
    result = CliRunner().invoke(cli, ["claims", str(short), "--longer", str(tmp_path / "longer")])
    assert result.exit_code == 0, result.output
    claim_1 = result.output.split("[1]")[1].split("[2]")[0]
    assert "(n=2)" in claim_1 and "(n=3)" not in claim_1
    assert (
        "(longer-budget check of final FID: ae seed 1 degrading at 4× budget (+50.0%))" in claim_1
    )
    assert "vae seed 1" not in claim_1 and "—" not in claim_1.split("why:")[1]
