"""Entry point of the ``nats-heartbeat`` console script."""

from __future__ import annotations

import sys

import click

from cli.agent import agent, beat
from cli.history import history
from cli.monitor import monitor
from cli.notify_test import notify_test, routes
from cli.retire import retire
from cli.run import run
from cli.silence import pause, resume, silence
from cli.status import status


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="nats-heartbeat")
def cli() -> None:
    """Liveness monitoring over NATS JetStream.

    Agents publish heartbeats; monitors alert once when one stops, repeat while it
    stays missing, and say when it is back. Every flag has an environment mirror
    (shown in each command's --help).
    """


cli.add_command(agent)
cli.add_command(beat)
cli.add_command(history)
cli.add_command(monitor)
cli.add_command(notify_test)
cli.add_command(pause)
cli.add_command(resume)
cli.add_command(retire)
cli.add_command(routes)
cli.add_command(run)
cli.add_command(silence)
cli.add_command(status)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; usage errors print one line and exit 2."""
    try:
        rv = cli.main(args=argv, prog_name="nats-heartbeat", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("nats-heartbeat: aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        click.echo(f"nats-heartbeat: {_one_line(e)}", err=True)
        sys.exit(e.exit_code)
    if isinstance(rv, int):
        sys.exit(rv)


def _one_line(e: click.ClickException) -> str:
    text = e.format_message()
    if isinstance(e, click.UsageError) and e.ctx is not None:
        return f"{e.ctx.command_path.removeprefix('nats-heartbeat ')}: {text}"
    return text


if __name__ == "__main__":
    main()
