"""The `aims` command line. Commands call services; each topic's module is imported only when
that topic runs (aims_core/cli/topics.py), so `aims --help` imports no service, and no command
imports Prefect, pandas or the Slack SDK before it needs them."""

from __future__ import annotations

from typing import Any

import click
import typer

from aims_core.cli._base import AimsGroup
from aims_core.cli.topics import TOPICS


class AimsRoot(AimsGroup):
    """The root group: its topics are loaded on first use; the listing needs none of them."""

    listing = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*super().list_commands(ctx), *(n for n in TOPICS if n not in self.commands)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        topic = TOPICS.get(cmd_name)
        if command is not None or topic is None:
            return command
        if self.listing:  # `aims --help`: the name and its help, nothing imported
            return click.Command(cmd_name, help=topic.help)
        command = topic.load(cmd_name)
        self.commands[cmd_name] = command
        return command

    def format_help(self, ctx: click.Context, formatter: Any) -> None:
        self.listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self.listing = False


app = typer.Typer(
    cls=AimsRoot,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="AIMS Flow: an ISO/IEC 42001 AI Management System run as Prefect flows.",
)


@app.callback()
def root() -> None:
    """AIMS Flow: an ISO/IEC 42001 AI Management System run as Prefect flows."""


def main() -> None:
    from aims_core.cli.engine import adopt_running_engine

    adopt_running_engine()
    app()
