"""One error type for bad user input: printed as one line, exit status 2."""

import click


class BenchError(click.ClickException):
    """Bad input from the user (unknown model, bad config, missing data...).

    click prints ``Error: <message>`` on one line and exits with status 2;
    no traceback is shown.
    """

    exit_code = 2
