"""`zeronode policies set | remove | list`: a ledger's signature policies ("2 of these 3 keys").

A policy covers the envelopes run on one node or on every node of a farm:
all of them (`--action deploy`), or those whose signer acts as a node admin
(`--action admin`). Envelopes are co-signed with `zeronode cosign` and sent
with `zeronode submit`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zeronode.cli.common import DEFAULT_LEDGER_URL, JsonOption, LedgerOption, change_ledger, fail, out, print_json

app = typer.Typer(help="Signature policies of a ledger.", no_args_is_help=True)

ScopeOption = Annotated[str, typer.Option("--scope", help="node or farm")]
TargetOption = Annotated[str, typer.Option("--target", help="The node id or farm name")]
ActionOption = Annotated[str, typer.Option("--action", help="deploy (every envelope) or admin (a node admin's)")]
AdminKeyOption = Annotated[Path, typer.Option("--key", help="Private key file of an admin of the ledger")]


@app.command("set")
def policies_set(
    scope: ScopeOption,
    target: TargetOption,
    threshold: Annotated[int, typer.Option(help="How many of the keys must have signed", min=1)],
    signer: Annotated[list[str], typer.Option("--signer", help="A public key that counts towards the threshold (repeatable)")],
    key: AdminKeyOption,
    ledger_url: LedgerOption = DEFAULT_LEDGER_URL,
    action: ActionOption = "deploy",
) -> None:
    """Create or replace a policy; print it."""
    change(ledger_url, key, {"scope": scope, "target": target, "action": action, "threshold": threshold, "keys": signer})


@app.command("remove")
def policies_remove(scope: ScopeOption, target: TargetOption, key: AdminKeyOption, ledger_url: LedgerOption = DEFAULT_LEDGER_URL,
                    action: ActionOption = "deploy") -> None:
    """Remove a policy."""
    change(ledger_url, key, {"scope": scope, "target": target, "action": action, "threshold": 0, "keys": []})


@app.command("list")
def policies_list(
    ledger_url: LedgerOption = DEFAULT_LEDGER_URL,
    scope: Annotated[str | None, typer.Option("--scope", help="node or farm")] = None,
    target: Annotated[str | None, typer.Option("--target", help="The node id or farm name")] = None,
    token: Annotated[str | None, typer.Option(envvar="ZERONODE_LEDGER_TOKEN", help="The ledger's read token")] = None,
    as_json: JsonOption = False,
) -> None:
    """List the ledger's policies."""
    from pydantic import ValidationError
    from rich.table import Table

    from zeronode.api.errors import ServiceError, problems
    from zeronode.client.ledger import LedgerClient

    with LedgerClient(ledger_url, token=token) as client:
        try:
            found = client.policies(scope=scope, target=target)
        except ValidationError as exc:  # --scope or --target not what a policy can have
            fail(problems(exc.errors()))
        except ServiceError as exc:
            fail(str(exc))
    if as_json:
        print_json([policy.model_dump(mode="json") for policy in found])
        return
    table = Table()
    for column in ("scope", "target", "action", "threshold", "keys"):
        table.add_column(column)
    for policy in found:
        table.add_row(policy.scope, policy.target, policy.action, f"{policy.threshold} of {len(policy.keys)}",
                      "\n".join(sorted(policy.keys)))
    out.print(table)



def change(ledger_url: str, key: Path, fields: dict) -> None:
    from zeronode.api.rights import PolicyChange

    change_ledger(ledger_url, key, PolicyChange, fields, lambda client, policy: client.set_policy(policy))
