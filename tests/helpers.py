"""Assertions shared by the test files."""


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
