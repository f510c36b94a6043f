"""The `zeronode` command line.

Every command reports failure as one line on stderr and a non-zero exit code,
never as a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

import rhai
import zeronode

app = typer.Typer(
    name="zeronode",
    help="Signed Rhai deployments for fleets of edge nodes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@app.command()
def version() -> None:
    """Print the versions of zeronode and its Rhai binding."""
    out.print(f"zeronode {zeronode.__version__} (rhai-py {rhai.__version__})", highlight=False)


def parse_env(pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"--env takes KEY=VALUE, got {pair!r}")
        env[key] = value
    return env


@app.command()
def run(
    script: Annotated[Path, typer.Argument(help="Rhai script to evaluate on this machine")],
    timeout: Annotated[float, typer.Option(help="Seconds the script may run")] = 30.0,
    env: Annotated[list[str], typer.Option("--env", help="KEY=VALUE made visible to the script as env.KEY")] = [],  # noqa: B006
) -> None:
    """Evaluate a script locally (no signing, no node) and print its output and result."""
    try:
        source = script.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {script}: {exc}")
    engine = rhai.Engine(timeout=timeout)
    try:
        result = engine.eval(
            engine.compile(source, name=script.name),
            {"env": parse_env(env)},
            on_print=lambda line: out.print(f"[dim]│[/] {line}", highlight=False),
            on_debug=lambda line, pos: out.print(f"[dim]│ debug (line {pos}):[/] {line}", highlight=False),
        )
    except rhai.RhaiError as exc:
        fail(str(exc))
    out.print_json(json.dumps(result, default=lambda b: b.hex() if isinstance(b, bytes) else repr(b)))


if __name__ == "__main__":
    app()
