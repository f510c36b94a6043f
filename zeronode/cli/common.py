"""What every command group shares: the consoles, the one-line failure, reading files and keys, options.

Every command reports failure as one line on stderr and a non-zero exit code,
never as a traceback: `fail(message)`.

What did not come from zeronode itself (a script's output and errors, a
service's message, a node's answer, a path) is printed as text, never as
Rich markup: `[b]` stays `[b]`, `a:running:b` stays itself, and a message
with `[/tmp/x]` in it cannot crash a command. Our own styling goes through
`Text.assemble` or `styled`; the consoles make no emoji and highlight nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text

from zeronode.protocol import keys
from zeronode.protocol.errors import KeyFileError

out = Console(soft_wrap=True, emoji=False, highlight=False)
err = Console(stderr=True, soft_wrap=True, emoji=False, highlight=False)


def styled(prefix: str, style: str, text: str) -> Text:
    """`prefix` in `style`, then `text` as it is (never markup)."""
    return Text.assemble((prefix, style), str(text))


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(styled("error: ", "bold red", message))
    raise typer.Exit(code)


def start_logs() -> None:
    """A service's JSON logs on stderr, at ZERONODE_LOG_LEVEL (zeronode.logs); a bad level is one line."""
    from zeronode import logs

    try:
        logs.setup()
    except ValueError as exc:
        fail(str(exc))


def parse_env(pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"--env takes KEY=VALUE, got {pair!r}")
        env[key] = value
    return env


def read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {what} {path}: {exc}")


def load_key(path: Path):
    try:
        return keys.load_private_key(path)
    except KeyFileError as exc:
        fail(str(exc))


def emit(text: str, out_path: Path | None) -> None:
    """Print `text`, or write it to `out_path`."""
    if out_path is None:
        print(text)
        return
    try:
        out_path.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {out_path}: {exc.strerror}")


ConfigOption = Annotated[Path | None, typer.Option("--config", help="Node settings file (TOML)")]


def node_settings(config: Path | None, **overrides):
    from zeronode.node.settings import NodeSettings
    from zeronode.settings import SettingsError

    try:
        return NodeSettings.load(config, **{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:
        fail(str(exc))


def change_ledger(ledger_url: str, key: Path, model, fields: dict, send) -> None:
    """Send one change of users or policies to the ledger, signed by `key`, and print what the ledger saved.

    The change carries a sequence, the signing time in milliseconds: the ledger
    refuses one older than the last it applied, so a captured change replayed
    later changes nothing."""
    import time

    from pydantic import ValidationError

    from zeronode.api.errors import ServiceError, problems
    from zeronode.client.ledger import LedgerClient

    try:
        change = model.model_validate({**fields, "sequence": time.time_ns() // 1_000_000})
    except ValidationError as exc:
        fail(problems(exc.errors()))
    with LedgerClient(ledger_url, load_key(key)) as client:
        try:
            saved = send(client, change)
        except ServiceError as exc:
            fail(str(exc))
    print(saved.model_dump_json(indent=2))


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table (shapes: docs/cli.md)")]


def print_json(data: Any) -> None:
    """A read's answer as JSON on stdout, for scripts: plain text, never through Rich."""
    import json

    print(json.dumps(data, indent=2, ensure_ascii=False))


DEFAULT_LEDGER_URL = "http://127.0.0.1:8400"  # where `zeronode ledger` and `zeronode up` serve by default
DEFAULT_COORD_URL = "http://127.0.0.1:8200"
LedgerOption = Annotated[str, typer.Option("--ledger", envvar="ZERONODE_LEDGER_URL", help="The ledger's URL")]
CoordOption = Annotated[str, typer.Option("--coord", envvar="ZERONODE_COORD_URL", help="The coordinator's URL")]


def ask_supervisor(node: str, ledger_url: str, key: Path, path: str, params: dict | None = None):
    """GET `path` from the supervisor of `node` (its URL from the ledger), signed by `key` and addressed to that
    node; the answer's JSON body, or one line and exit on any failure."""
    import httpx

    from zeronode.api.errors import ServiceError, from_response
    from zeronode.client.ledger import LedgerClient
    from zeronode.protocol.signed_requests import SignedRequestAuth

    with LedgerClient(ledger_url) as ledger:
        try:
            record = ledger.node(node)
        except ServiceError as exc:
            fail(str(exc))
    if not record.supervisor_url:
        fail(f"node {node} registered no supervisor URL")
    auth = SignedRequestAuth(load_key(key), node)  # addressed to that node: no other node accepts it
    try:
        response = httpx.get(f"{record.supervisor_url}{path}", params=params or {}, timeout=10, auth=auth)
    except httpx.HTTPError as exc:
        fail(f"supervisor of {node} at {record.supervisor_url}: {exc}")
    if response.status_code >= 400:
        fail(str(from_response(response, f"the supervisor of {node}")))
    try:
        return response.json()
    except ValueError:
        fail(f"the supervisor of {node} at {record.supervisor_url} did not answer JSON")
