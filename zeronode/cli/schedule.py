"""`zeronode node cordon | uncordon | drain NODE`: whether coord may place new deployments on a node.

A cordoned node keeps running what it has and gets nothing new by a selector
(named targets still reach it). Draining is cordoning, and coord moves the
node's shares of service deployments to other nodes (coord.failover;
docs/operators.md, "Placement and capacity"). Each change is signed by a ledger admin and carries a sequence,
as users and policies do (zeronode.cli.common.change_ledger).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zeronode.cli.common import DEFAULT_LEDGER_URL, LedgerOption, change_ledger

app = typer.Typer(help="A node's place in scheduling: cordon, uncordon, drain.", no_args_is_help=True)

NodeArgument = Annotated[str, typer.Argument(metavar="NODE", help="The node's id")]
AdminKeyOption = Annotated[Path, typer.Option("--key", help="Private key file of an admin of the ledger")]


def reschedule(node: str, schedule: str, key: Path, ledger_url: str) -> None:
    from zeronode.api.ledger import ScheduleChange

    change_ledger(ledger_url, key, ScheduleChange, {"schedule": schedule}, lambda client, change: client.set_schedule(node, change))


@app.command()
def cordon(node: NodeArgument, key: AdminKeyOption, ledger_url: LedgerOption = DEFAULT_LEDGER_URL) -> None:
    """No new placements on NODE; what runs there stays."""
    reschedule(node, "cordoned", key, ledger_url)


@app.command()
def uncordon(node: NodeArgument, key: AdminKeyOption, ledger_url: LedgerOption = DEFAULT_LEDGER_URL) -> None:
    """Make NODE a placement candidate again."""
    reschedule(node, "active", key, ledger_url)


@app.command()
def drain(node: NodeArgument, key: AdminKeyOption, ledger_url: LedgerOption = DEFAULT_LEDGER_URL) -> None:
    """Cordon NODE and move its services' shares to other nodes."""
    reschedule(node, "draining", key, ledger_url)
