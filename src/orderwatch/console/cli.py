"""``orderwatch console`` (serve) and ``orderwatch console add-user``."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import signal
import sys
from typing import Annotated

import typer

console_app = typer.Typer(
    help="The web console for the people who handle exceptions (see docs/console.md).",
    invoke_without_command=True,
)


@console_app.callback()
def serve(ctx: typer.Context) -> None:
    """Serve the console (settings from ORDERWATCH_* variables; binds 127.0.0.1:8480)."""
    if ctx.invoked_subcommand is not None:
        return
    from orderwatch.console.app import serve as run
    from orderwatch.console.settings import ConsoleSettings
    from orderwatch.logs import configure

    settings = ConsoleSettings()
    configure(settings.log_format, settings.log_level)

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await run(settings)

    asyncio.run(main())


@console_app.command("add-user")
def add_user(
    name: Annotated[str, typer.Argument(help="user name (shown as the actor of commands)")],
    role: Annotated[str, typer.Option(help="viewer, operator or approver")] = "viewer",
    team: Annotated[
        list[str] | None, typer.Option(help="limit an operator to this team (repeatable)")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from standard input")
    ] = False,
) -> None:
    """Create or replace a local account in the users file (argon2id hash)."""
    from orderwatch.console.auth import ROLES, add_account
    from orderwatch.console.settings import ConsoleSettings

    if role not in ROLES:
        raise typer.BadParameter(f"role must be one of {', '.join(ROLES)}")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("password: ")
        if password != getpass.getpass("again: "):
            typer.echo("orderwatch: the passwords differ", err=True)
            raise typer.Exit(1)
    if len(password) < 8:
        typer.echo("orderwatch: a password needs at least 8 characters", err=True)
        raise typer.Exit(1)
    path = ConsoleSettings().users_path
    add_account(path, name, password, ROLES[ROLES.index(role)], tuple(team or ()))
    typer.echo(f"{name} ({role}) written to {path}")
