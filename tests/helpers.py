"""Assertions and fixtures' building blocks shared by the test files."""

import contextlib


def one_line_error(result, *fragments):
    """A bad input ends with exit status 2 and one 'Error:' line (no traceback) naming it."""
    assert result.exit_code == 2, result.output
    last = [line for line in result.output.splitlines() if line.strip()][-1]
    assert last.startswith("Error:") and "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in last, last


def snapshot(folder):
    """Every file under ``folder`` with its bytes: equal before and after = nothing changed."""
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def bench(*args):
    """`bench ARGS` in this process; exceptions propagate (a traceback fails the test)."""
    from click.testing import CliRunner

    from bench.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@contextlib.contextmanager
def finished_sweep(tmp_path_factory, session_cache, name, *run_args):
    """Yields the folder of one `bench run RUN_ARGS` made once (for a module-scoped fixture),
    with the session cache; restores torch's thread count, which train.threads sets."""
    import pytest
    import torch

    threads = torch.get_num_threads()
    out = tmp_path_factory.mktemp(name) / "r"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DOGBENCH_CACHE", str(session_cache))
        result = bench("run", *run_args, "--out", out)
    assert result.exit_code == 0, result.output
    try:
        yield out
    finally:
        torch.set_num_threads(threads)
