"""Asking the fleet: `zeronode nodes` (the ledger), `jobs` (a node's supervisor).

Reads of jobs are signed (`--key`): a node shows a job to its signer and to
its admins only. Both take `--json` (shapes: docs/cli.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from zeronode.cli.common import DEFAULT_LEDGER_URL, JsonOption, LedgerOption, ask_supervisor, fail, out, print_json

app = typer.Typer()


@app.command()
def nodes(
    ledger_url: LedgerOption = DEFAULT_LEDGER_URL,
    status: Annotated[str | None, typer.Option(help="online, degraded or offline")] = None,
    farm: Annotated[str | None, typer.Option(help="Only this farm's nodes")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many nodes (a page, in id order)")] = 1000,
    after: Annotated[str | None, typer.Option(help="The nodes after this id: the next page")] = None,
    as_json: JsonOption = False,
) -> None:
    """List the nodes the ledger knows: id, status, version and last update, schedule, uptime, capacity (free of total), drivers.
    A page at a time: when there may be more, it says which --after shows the next."""
    from pydantic import ValidationError

    from zeronode.api.errors import ServiceError, problems
    from zeronode.client.ledger import LedgerClient

    with LedgerClient(ledger_url) as ledger:
        try:
            found = ledger.nodes(status=status, farm=farm, limit=limit, after=after)
        except ValidationError as exc:  # --status or --farm not what a node can have
            fail(problems(exc.errors()))
        except ServiceError as exc:
            fail(str(exc))
    if as_json:
        print_json([node.model_dump(mode="json") for node in found])
        return
    table = Table()
    table.add_column("node", no_wrap=True, min_width=26)  # whole, at any width: it is pasted into --target
    for column in ("status", "version", "last update", "schedule", "uptime", "restarts", "vcpus", "memory", "disk",
                   "drivers", "farm", "supervisor"):
        table.add_column(column)
    for node in found:
        uptime = "" if node.last_uptime is None else f"{node.last_uptime // 3600}h{node.last_uptime % 3600 // 60:02d}m"
        free, total = node.free, node.capacity
        table.add_row(
            Text(node.node_id), Text(node.status, style=STATUS_STYLE.get(node.status, "")), Text(node.version),
            Text(f"{node.update.version} {node.update.result}" if node.update else ""), Text(node.schedule), uptime,
            str(node.restarts),
            of(free and free.vcpus, total.vcpus, 1, ""), of(free and free.memory, total.memory, 1 << 20, " MiB"),
            of(free and free.disk, total.disk, 1 << 30, " GiB"),
            Text(drivers(node.capabilities)), Text(node.farm), Text(node.supervisor_url or ""),
        )
    out.print(table)
    if len(found) == limit:  # a full page: there may be more
        out.print(f"{limit} nodes shown; the next ones: --after {found[-1].node_id}")


STATUS_STYLE = {"online": "green", "degraded": "yellow", "offline": "red"}


def of(free: int | None, total: int, unit: int, suffix: str) -> str:
    """'512 of 1024 MiB' free, or the total alone when the node has not reported what is free."""
    return f"{total // unit}{suffix}" if free is None else f"{free // unit} of {total // unit}{suffix}"


def drivers(capabilities) -> str:
    """'hypervisor: cloud-hypervisor (simulated), storage: btrfs': what runs each SAL the node has."""
    return ", ".join(
        f"{sal}: {driver.driver}{' (simulated)' if driver.simulated else ''}"
        for sal, driver in capabilities
        if driver is not None
    )


@app.command()
def jobs(
    node: Annotated[str, typer.Option("--node", help="The node's id")],
    key: Annotated[Path, typer.Option("--key", help="Private key file: you see your own jobs, a node admin all")],
    ledger_url: LedgerOption = DEFAULT_LEDGER_URL,
    status: Annotated[str | None, typer.Option(help="queued, started, finished, failed, canceled")] = None,
    as_json: JsonOption = False,
) -> None:
    """List a node's recent jobs, from its supervisor (found through the ledger)."""
    from pydantic import TypeAdapter, ValidationError

    from zeronode.api.jobs import JobView, Status

    if status is not None and status not in {member.value for member in Status}:
        fail(f"--status {status!r}: one of {', '.join(member.value for member in Status)}")
    answer = ask_supervisor(node, ledger_url, key, "/v1/jobs", {"status": status} if status else {})
    try:  # the URL is the node's own claim: what answers there is read as data, never trusted to be well-formed
        found = TypeAdapter(list[JobView]).validate_python(answer)
    except ValidationError as exc:
        fail(f"the supervisor of {node} answered something that is not a job list ({exc.error_count()} problems)")
    if as_json:
        print_json([job.model_dump(mode="json") for job in found])
        return
    table = Table(title=Text(f"jobs on {node}"), title_justify="left")
    table.add_column("job", no_wrap=True, min_width=36)  # whole, at any width
    for column in ("status", "signer", "attempts", "ended", "result / error"):
        table.add_column(column)
    for job in found:
        outcome = f"{job.error.type}: {job.error.message}" if job.error else json.dumps(job.result, separators=(",", ":"))
        ended = job.ended_at.isoformat() if job.ended_at else ""
        # Text, not markup: a script's error message is the script's words.
        table.add_row(Text(job.id), Text(job.status), Text(job.signer or ""), str(job.attempts), ended, Text(outcome))
    out.print(table)
