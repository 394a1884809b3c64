"""Where the runs of a sweep train: in this process, in N local processes, or as Ray tasks.

Every executor calls the same picklable ``run_one(task)``, which trains one run into its
folder (resuming from its checkpoint) and returns "ok", "diverged" or "crashed"; a crash
(an exception) is caught there, its traceback kept in ``<run>/error.txt``, and the other runs
go on. The parent loads the images once and hands them over (a file for local processes,
Ray's object store for Ray tasks): a worker needs neither the data root nor the image cache.

- in-process: the default, ``--jobs 1``; the parent's evaluator and environment are reused.
- processes (``--jobs N``): one fresh 'spawn' process per run (a segfault or the OOM killer
  loses only that run; peak memory is the run's own), N at a time, each with
  cpus // N torch threads so the cores are shared, not oversubscribed.
- Ray (``--executor ray``): one task per run. A worker that sees the driver's results folder
  (the same machine or a shared filesystem; checked with a token file) writes into it as
  above, checkpoint by checkpoint. Otherwise it trains in a temporary folder, resuming from
  the files the driver sent, and returns the run's files as bytes for the driver to write.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import secrets
import sys
import tempfile
import threading
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, replace
from multiprocessing.connection import wait
from pathlib import Path

import torch

from bench.core import io
from bench.core.config import SweepConfig
from bench.core.env import environment, resolve_device
from bench.core.errors import BenchError
from bench.core.layout import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    ENV_FILE,
    ERROR_FILE,
    METRICS_FILE,
    STATUS_FILE,
    Status,
)
from bench.data.images import ImageSet
from bench.harness.train import RunPlan, train_run
from bench.metrics.evaluate import Evaluator

TOKEN_FILE = ".ray-driver-token"  # a Ray worker that can read this sees the results folder
RESUME_FILES = (CHECKPOINT_FILE, METRICS_FILE, STATUS_FILE)  # what a resumed run reads
# A worker process's status as exit code.
EXIT_CODES = {Status.OK: 0, Status.DIVERGED: 3, Status.CRASHED: 4}
STATUS_OF_EXIT = {code: status for status, code in EXIT_CODES.items()}
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass
class RunTask:
    """Everything one run needs, picklable: a worker process or a Ray node gets just this."""

    plan: RunPlan
    config_json: dict  # written to <run>/config.json
    data: tuple[ImageSet, ImageSet] | None  # (train, held-out); None while sent separately
    threads: int = 0  # torch threads for this run; 0 = leave the process's setting


@dataclass
class RunContext:
    """What the runs of one process share: evaluator (cached real statistics) and env.json."""

    evaluator: Evaluator
    device: torch.device
    env: dict


def run_context(cfg: SweepConfig, train: ImageSet, heldout: ImageSet, device) -> RunContext:
    from bench.metrics import fid

    fid_real = train if cfg.eval.fid_split == "train" else heldout
    evaluator = Evaluator(cfg.eval, fid_real, heldout, device, train_images=train.images)
    env = {
        **fid.provenance(device, evaluator.numerics),
        **environment(device),
        "data_source": train.source,
        "unreadable_images_skipped": train.skipped,
    }
    return RunContext(evaluator, device, env)


def run_one(task: RunTask, say=print, context: RunContext | None = None) -> str:
    """Train (or resume) one run in ``task.plan.dir``: 'ok', 'diverged' or 'crashed'."""
    plan = task.plan
    try:
        if task.threads:
            torch.set_num_threads(task.threads)
        train, heldout = task.data
        if context is None:
            device = resolve_device(plan.config.train.device)
            context = run_context(plan.config, train, heldout, device)
        (plan.dir / ERROR_FILE).unlink(missing_ok=True)  # a retry: the last crash is history
        io.write_json(plan.dir / CONFIG_FILE, task.config_json)
        io.write_json(plan.dir / ENV_FILE, context.env)
        return train_run(plan, train, context.evaluator, context.device, say)
    except Exception as e:
        io.write_text(plan.dir / ERROR_FILE, traceback.format_exc())
        first = (str(e).splitlines() or [""])[0]
        say(f"[{plan.run_id}] crashed: {type(e).__name__}: {first} (see {plan.dir / ERROR_FILE})")
        return Status.CRASHED


def run_in_process(tasks: list[RunTask], context: RunContext, say=print) -> dict[str, str]:
    return {t.plan.run_id: run_one(t, say, context) for t in tasks}


# ------------------------------------------------------------------ local worker processes


def usable_cpus() -> int:
    """CPUs this process may run on (a container or `taskset` can allow fewer than exist)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def threads_per_process(threads: int, jobs: int, runs: int) -> int:
    """``train.threads`` when set; else the usable CPUs split between the runs at once
    (oversubscribed cores make torch several times slower)."""
    return threads or max(1, usable_cpus() // min(jobs, runs))


class _Prefixed:
    """A worker's stdout/stderr: whole lines, each starting with '[run_id] ' once."""

    def __init__(self, stream, run_id: str):
        self.stream, self.prefix, self.pending = stream, f"[{run_id}] ", ""

    def write(self, text: str) -> int:
        *lines, self.pending = (self.pending + text).split("\n")
        for line in lines:
            self.stream.write((line if line.startswith(self.prefix) else self.prefix + line) + "\n")
        if lines:
            self.stream.flush()
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def close_line(self) -> None:
        if self.pending:
            self.write("\n")

    def isatty(self) -> bool:
        return False  # no progress bars: N processes' bars would overwrite each other

    def __getattr__(self, name):
        return getattr(self.stream, name)


def _prefix_output(run_id: str) -> None:
    sys.stdout = _Prefixed(sys.stdout, run_id)
    sys.stderr = _Prefixed(sys.stderr, run_id)


def _exit_with_parent() -> None:
    """Stop this worker when its parent dies: an orphan would go on writing into the run
    folder that a re-run of the sweep is resuming (two writers, one checkpoint)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])  # readable once the parent has exited
        os._exit(EXIT_CODES[Status.CRASHED])

    threading.Thread(target=watch, daemon=True).start()


def _unpack(data: tuple[ImageSet, ImageSet]) -> tuple[ImageSet, ImageSet]:
    return tuple(replace(s, images=torch.from_numpy(s.images.copy())) for s in data)


def _pack(data: tuple[ImageSet, ImageSet]) -> tuple[ImageSet, ImageSet]:
    # numpy arrays pickle by value; torch tensors would go through /dev/shm (64 MB in Docker).
    return tuple(replace(s, images=s.images.numpy()) for s in data)


def _process_main(task: RunTask, data_file: str) -> None:
    _exit_with_parent()
    _prefix_output(task.plan.run_id)
    with open(data_file, "rb") as f:
        data = _unpack(pickle.load(f))
    status = run_one(replace(task, data=data))
    sys.stdout.close_line()
    sys.stderr.close_line()
    sys.exit(EXIT_CODES[status])


@contextmanager
def _thread_variables(threads: int):
    """OMP/MKL thread counts for processes started inside: read before the child's torch
    import, which may come before any code of ours runs (spawn re-imports __main__)."""
    saved = {k: os.environ.get(k) for k in THREAD_VARIABLES}
    os.environ.update({k: str(threads) for k in THREAD_VARIABLES})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_in_processes(tasks: list[RunTask], jobs: int, say=print) -> dict[str, str]:
    """At most ``jobs`` runs at once, one spawned process per run."""
    spawn = multiprocessing.get_context("spawn")  # fork would copy torch's threads and CUDA
    statuses: dict[str, str] = {}
    running: dict = {}  # process sentinel -> (process, task)
    with tempfile.TemporaryDirectory(prefix="dogbench-data-") as tmp:
        # The images go to the workers through one file, not as Process arguments: those are
        # piped to a child only after it has imported __main__, and start() would wait.
        data_file = os.path.join(tmp, "data.pkl")
        with open(data_file, "wb") as f:
            pickle.dump(_pack(tasks[0].data), f, protocol=pickle.HIGHEST_PROTOCOL)
        queue = [replace(t, data=None) for t in tasks]
        try:
            while queue or running:
                while queue and len(running) < jobs:
                    task = queue.pop(0)
                    with _thread_variables(task.threads):
                        proc = spawn.Process(
                            target=_process_main, args=(task, data_file), name=task.plan.run_id
                        )
                        proc.start()
                    running[proc.sentinel] = (proc, task)
                    say(f"[{task.plan.run_id}] started: process {proc.pid}, {task.threads} threads")
                for sentinel in wait(list(running)):
                    proc, task = running.pop(sentinel)
                    proc.join()
                    statuses[task.plan.run_id] = STATUS_OF_EXIT.get(proc.exitcode, Status.CRASHED)
                    if proc.exitcode not in STATUS_OF_EXIT:
                        say(
                            f"[{task.plan.run_id}] crashed: its process exited with {proc.exitcode}"
                        )
        finally:
            for proc, _ in running.values():  # interrupted: take the workers along
                proc.terminate()
                proc.join()
    return statuses


# ------------------------------------------------------------------------------------ Ray


def import_ray():
    # Ray folds similar lines from different workers into one ("repeated 3x across cluster"):
    # that would hide runs' epoch lines. RAY_DEDUP_LOGS=1 turns it back on.
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    try:
        import ray
    except ImportError:
        raise BenchError(
            "--executor ray needs `pip install dogbench[ray]`; without Ray, --jobs N trains "
            "N runs at once on this machine"
        ) from None
    return ray


def run_shipped(task: RunTask, files: dict[str, bytes]) -> tuple[str, dict[str, bytes]]:
    """Train in a temporary folder, resuming from ``files``; return the run's files as bytes.
    For a worker that cannot see the driver's results folder."""
    with tempfile.TemporaryDirectory(prefix="dogbench-run-") as tmp:
        run_dir = Path(tmp) / task.plan.run_id
        run_dir.mkdir()
        for name, blob in files.items():
            (run_dir / name).write_bytes(blob)
        status = run_one(replace(task, plan=replace(task.plan, dir=run_dir)))
        out = {
            p.name: p.read_bytes()
            for p in sorted(run_dir.iterdir())
            if p.is_file() and not p.name.startswith(".")
        }
    return status, out


def write_shipped(run_dir: Path, files: dict[str, bytes]) -> None:
    """The driver's side of ``run_shipped``: status.json last, so 'ok' means all is there."""
    for name in sorted(files, key=lambda n: n == STATUS_FILE):
        io.atomic_write(run_dir / name, lambda tmp, b=files[name]: Path(tmp).write_bytes(b))
    if ERROR_FILE not in files:
        (run_dir / ERROR_FILE).unlink(missing_ok=True)


def _ray_main(task: RunTask, data, token: str | None, files: dict[str, bytes]):
    _prefix_output(task.plan.run_id)
    task = replace(task, data=_unpack(data))
    try:
        sees_folder = token is not None and (task.plan.dir.parent / TOKEN_FILE).read_text() == token
    except OSError:
        sees_folder = False
    if sees_folder:
        return run_one(task), None
    return run_shipped(task, files)


def _ray_gpus(ray, device: str) -> int:
    """GPUs per run: Ray hides every GPU from a task that asks for none."""
    if device == "cuda" or (device == "auto" and ray.cluster_resources().get("GPU", 0) > 0):
        return 1
    return 0


def run_on_ray(
    tasks: list[RunTask], address: str | None, jobs: int | None, say=print, shared_check=True
) -> dict[str, str]:
    """One Ray task per run (at most ``jobs`` in flight); a local Ray instance without address."""
    ray = import_ray()
    # Absolute paths: a worker's working directory is not the driver's; on a shared filesystem
    # mounted at the same path everywhere the folder is then found from every node.
    tasks = [replace(t, plan=replace(t.plan, dir=t.plan.dir.absolute())) for t in tasks]
    started = not ray.is_initialized()
    if started and address:
        ray.init(address=address, include_dashboard=False)
    elif started:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False)
    out = tasks[0].plan.dir.parent
    token = secrets.token_hex(16) if shared_check else None
    if token:
        io.write_text(out / TOKEN_FILE, token)
    statuses: dict[str, str] = {}
    try:
        data = ray.put(_pack(tasks[0].data))  # once into the object store, for every task
        remote = ray.remote(max_calls=1)(_ray_main)  # a fresh worker process per run
        gpus = _ray_gpus(ray, tasks[0].plan.config.train.device)
        queue, running = list(tasks), {}
        while queue or running:
            while queue and len(running) < (jobs or len(tasks)):
                t = queue.pop(0)
                found = [t.plan.dir / n for n in RESUME_FILES if (t.plan.dir / n).is_file()]
                files = {p.name: p.read_bytes() for p in found}
                options = {"num_cpus": t.threads, "num_gpus": gpus, "name": t.plan.run_id}
                ref = remote.options(**options).remote(replace(t, data=None), data, token, files)
                running[ref] = t
            (ref,), _ = ray.wait(list(running), num_returns=1)
            t = running.pop(ref)
            try:
                status, files = ray.get(ref)
            except Exception as e:  # the worker died (node lost, OOM...): this run only
                status, files = Status.CRASHED, None
                say(f"[{t.plan.run_id}] crashed: Ray task failed: {type(e).__name__}")
            if files is not None:
                write_shipped(t.plan.dir, files)
            statuses[t.plan.run_id] = status
    finally:
        if token:
            (out / TOKEN_FILE).unlink(missing_ok=True)
        if started:
            ray.shutdown()
    return statuses


# ------------------------------------------------------------------------------ dispatch

EXECUTORS = ("local", "ray")


def check_executor(executor: str, jobs: int | None, ray_address: str | None) -> None:
    """Refuse bad executor options before anything is loaded or written."""
    if executor not in EXECUTORS:
        raise BenchError(f"unknown executor {executor!r}; accepted: {', '.join(EXECUTORS)}")
    if jobs is not None and jobs < 1:
        raise BenchError(f"--jobs {jobs}: expected how many runs train at once, 1 or more")
    if ray_address and executor != "ray":
        raise BenchError("--ray-address joins a Ray cluster; it needs --executor ray")
    if executor == "ray":
        import_ray()


def execute(
    tasks: list[RunTask],
    context: RunContext,
    executor: str = "local",
    jobs: int | None = None,
    ray_address: str | None = None,
    say=print,
) -> dict[str, str]:
    """Train every task; run_id -> status. ``train.threads``, when set, is each run's thread
    count; otherwise a Ray run takes 1 CPU and local processes split the usable CPUs."""
    if not tasks:
        return {}
    threads = tasks[0].plan.config.train.threads
    if executor == "ray":
        ray_tasks = [replace(t, threads=threads or 1) for t in tasks]
        return run_on_ray(ray_tasks, ray_address, jobs, say)
    if jobs and jobs > 1:
        per_run = threads_per_process(threads, jobs, len(tasks))
        return run_in_processes([replace(t, threads=per_run) for t in tasks], jobs, say)
    return run_in_process(tasks, context, say)
