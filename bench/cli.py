"""The ``bench`` command line."""

from __future__ import annotations

import os
from pathlib import Path

import click

from bench.core import paths
from bench.core.config import load_sweep_config, parse_set_option

RUN_FLAGS = {  # flag -> dotted config key
    "dataset": "data.dataset",
    "image_size": "data.image_size",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "device": "train.device",
    "fid_samples": "eval.fid_samples",
}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dogbench")
def cli():
    """dogbench: AE vs VAE vs GAN on pictures of dogs, under one harness."""


@cli.command()
@click.option("--models", help="Comma list, e.g. ae,vae,gan or vae:beta=1,vae:beta=4.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="YAML config file.")
@click.option("--dataset", help="auto | cifar10-dog | petimages-dog | synthetic | folder:PATH")
@click.option("--image-size", type=int, help="32, 64 or 128 (models.backbone.SUPPORTED_SIZES).")
@click.option("--epochs", type=int)
@click.option("--batch-size", type=int)
@click.option("--seeds", help="A count (5 = seeds 0..4) or a list (0,1,2).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]))
@click.option("--fid-samples", type=int, help="Generated (and real) images per FID; 0 = no FID.")
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Any config value, e.g. --set eval.every=2 (repeatable).",
)
@click.option("--out", type=click.Path(file_okay=False), help="Results folder.")
@click.option(
    "--data-root",
    type=click.Path(file_okay=False),
    help="Where datasets live (default: $DOGBENCH_DATA, else the user cache).",
)
@click.option("--overwrite", is_flag=True, help="Replace results made with another config.")
@click.option(
    "--jobs",
    type=int,
    help="Runs trained at once (local processes sharing the CPUs; default 1). "
    "With --executor ray: the most runs in flight (default: as many as the cluster takes).",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="ray: one Ray task per run (pip install dogbench[ray]).",
)
@click.option(
    "--ray-address", help="Join this Ray cluster (e.g. auto); default: start Ray on this machine."
)
@click.option(
    "--continue-from",
    type=click.Path(file_okay=False, path_type=Path),
    help="Start each run from the finished run of the same model and seed in this folder, "
    "made with the same settings but a smaller budget (the longer-budget check).",
)
def run(
    models,
    config_path,
    seeds,
    sets,
    out,
    data_root,
    overwrite,
    jobs,
    executor,
    ray_address,
    continue_from,
    **flags,
):
    """Train and evaluate models; one results folder per run."""
    from bench.harness.sweep import parse_seeds, run_sweep, split_model_list

    overrides = {RUN_FLAGS[k]: v for k, v in flags.items() if v is not None}
    overrides.update(parse_set_option(sets))
    if models:
        overrides["models"] = split_model_list(models)
    if seeds:
        overrides["seeds"] = parse_seeds(seeds)
    cfg = load_sweep_config(config_path, overrides)
    out_dir = Path(out) if out else Path("results") / cfg.name
    summary = run_sweep(
        cfg,
        out_dir,
        paths.data_root(data_root),
        overwrite=overwrite,
        say=click.echo,
        jobs=jobs,
        executor=executor,
        ray_address=ray_address,
        continue_from=continue_from,
    )
    click.echo("\n" + summary.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    click.echo(f"\nresults: {out_dir}{os.sep}   report: bench report {out_dir}")


def _register_commands() -> None:
    """Commands live in their own modules; registering one is one line."""
    from bench.analysis.check import baseline_command, check_command
    from bench.analysis.claims import claims_command
    from bench.analysis.report import report_command
    from bench.tools.fid_cli import fid_command
    from bench.tools.sample_cli import interpolate_command, sample_command, traverse_command

    cli.add_command(fid_command, "fid")
    cli.add_command(check_command, "check")
    cli.add_command(baseline_command, "baseline")
    cli.add_command(report_command, "report")
    cli.add_command(claims_command, "claims")
    cli.add_command(sample_command, "sample")
    cli.add_command(interpolate_command, "interpolate")
    cli.add_command(traverse_command, "traverse")


_register_commands()


def main():
    cli()
