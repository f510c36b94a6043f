"""`zeronode version` and `zeronode run`: this machine only, no node and no signing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

import rhai
import zeronode
from zeronode.cli.common import fail, out, parse_env, styled

app = typer.Typer()


@app.command()
def version() -> None:
    """Print the versions of zeronode and its Rhai binding."""
    out.print(f"zeronode {zeronode.__version__} (rhai-py {rhai.__version__})", highlight=False)


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
            on_print=lambda line: out.print(styled("│ ", "dim", line)),
            on_debug=lambda line, pos: out.print(styled(f"│ debug (line {pos}): ", "dim", line)),
        )
    except rhai.RhaiError as exc:
        fail(str(exc))
    out.print_json(json.dumps(result, default=lambda b: b.hex() if isinstance(b, bytes) else repr(b)))
