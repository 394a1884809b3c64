"""One error type for bad user input: printed as one line, exit status 2."""

import sys

import click


class BenchError(click.ClickException):
    """Bad input from the user (unknown model, bad config, missing data...).

    click prints ``Error: <message>`` on one line and exits with status 2;
    no traceback is shown.
    """

    exit_code = 2


def run_script(main) -> None:
    """Run a benchmark script's ``main()`` so that bad input ends it as a command does: a
    BenchError (too few images in a folder, a run without a checkpoint...) is one line on
    stderr and exit status 2, without a traceback."""
    try:
        main()
    except BenchError as e:
        print(f"error: {e.message}", file=sys.stderr)
        sys.exit(e.exit_code)
