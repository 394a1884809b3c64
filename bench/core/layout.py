"""The layout of a results folder: the one place its file names, statuses and row names live.

`bench run` writes one folder per run, named ``run_id(label, seed)``:
    config.json   the run's resolved config (written first)
    env.json      versions, commit, device, data source
    metrics.csv   long format, one row per (epoch, metric); flushed after every epoch
    checkpoint.pt model + optimizers + RNG at the last finished epoch (resume reads it)
    status.json   Status and progress; written last, so "ok" means everything else is there
    error.txt     traceback of the last attempt, when it crashed
and ``sweep.json`` (the shared settings) next to the run folders.
"""

from __future__ import annotations

from enum import StrEnum

CONFIG_FILE = "config.json"
ENV_FILE = "env.json"
METRICS_FILE = "metrics.csv"
CHECKPOINT_FILE = "checkpoint.pt"
STATUS_FILE = "status.json"
ERROR_FILE = "error.txt"
SWEEP_FILE = "sweep.json"


class Status(StrEnum):
    """A run's status. str-valued, so status.json and every table keep the plain strings."""

    OK = "ok"
    DIVERGED = "diverged"
    RUNNING = "running"
    CRASHED = "crashed"
    UNKNOWN = "unknown"  # a run folder without a readable status (status.json not written yet)
    MISSING = "missing"  # a planned run with no folder at all (sweep summary only)


# Finished runs have final values (a diverged one has none worth comparing, but it counts
# towards divergence rates). Every other status is "unfinished" for every command alike.
FINISHED = (Status.OK, Status.DIVERGED)

TRAIN_PREFIX = "train/"  # per-epoch training loss terms (train/loss, train/d_loss, ...)
COST_PREFIX = "cost/"  # run time / memory rows: machine-dependent, never a quality metric
# Per epoch (bench.harness.train): training seconds, CPU-seconds and rate; the seconds of
# the epoch's evaluation (when one ran); the epoch's whole wall time (training, evaluation,
# pictures).
TRAIN_SECONDS = "cost/train_seconds"
TRAIN_CPU_SECONDS = "cost/train_cpu_seconds"
TRAIN_IMAGES_PER_S = "cost/train_images_per_s"
EVAL_SECONDS = "cost/eval_seconds"
EPOCH_WALL_SECONDS = "cost/epoch_wall_seconds"
# Derived per run by bench.results.table.run_costs, never recorded: the run's wall time, and
# the share of it spent evaluating (every evaluation and tracked point), the figure issue 14
# sets targets on (default run <= 30%, standard protocol <= 40%).
RUN_SECONDS = "cost/run_seconds"
EVAL_SHARE = "cost/eval_share"
# Training used so far, at every epoch end and tracked point (bench.harness.train): the x axes
# of "quality at equal compute". Images and FLOPs are exact; seconds are measured.
CUMULATIVE_PREFIX = "cost/cum_"
CUM_IMAGES = "cost/cum_images"
CUM_TRAIN_FLOPS = "cost/cum_train_flops"
CUM_TRAIN_SECONDS = "cost/cum_train_seconds"
TRACK_SECONDS = "cost/track_seconds"  # evaluation time of one tracked point
# Cheap metrics at the run's tracked points (eval.track_points): FID and KID at n =
# eval.track_n, the held-out recon MSE on that many held-out images (all of them if fewer).
TRACK_PREFIX = "track/"
TRACK_FID, TRACK_KID, TRACK_RECON = "track/fid", "track/kid_mean", "track/recon_mse"
# config.json key saying whether the run's budget is reproducible: False when a seconds
# budget (train.budget_seconds, measured time) can stop it.
BUDGET_REPRODUCIBLE = "budget_reproducible"

# Written once per run after its last evaluation (bench.results.write.add_summary).
BEST_FID, BEST_FID_EPOCH, FINAL_FID = "best_fid", "best_fid_epoch", "final_fid"
SUMMARY_METRICS = (BEST_FID, BEST_FID_EPOCH, FINAL_FID)
PEAK_RSS = "cost/peak_rss_mib"  # also written once, at the end of the run
# Rows a resumed run drops and writes again at its new end.
END_OF_RUN_METRICS = (*SUMMARY_METRICS, PEAK_RSS)


def run_id(label: str, seed: int) -> str:
    """Folder name of a run: 'vae:beta=4,latent_dim=8', 0 -> 'vae_beta=4_latent_dim=8-seed0'."""
    return f"{label.replace(':', '_').replace(',', '_')}-seed{seed}"


def is_cost(metric: str) -> bool:
    return str(metric).startswith(COST_PREFIX)
