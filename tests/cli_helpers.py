"""Shared by the command-line tests: run `vidstyle` in-process and check the one-line
error contract."""

from __future__ import annotations

from click.testing import CliRunner, Result

from vidstyle.cli import cli

#: Options of a quick optimization run (32 px, one iteration).
OPTIM = ["--method", "optim", "--size", "32", "--iters", "1", "--multiscale", "1", "-q"]


def invoke(*args: object) -> Result:
    """`vidstyle ARGS...` (paths and numbers are turned into text)."""
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def one_line_error(result: Result, code: int) -> str:
    """The message of a command that must fail with exit ``code``, one line on stderr and
    no traceback."""
    assert result.exit_code == code, (result.exit_code, result.output, result.stderr)
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in result.output + result.stderr
    return err
