"""Asking the fleet: `zeronode deploy`, `submit`, `status` (coord), `nodes` (the ledger), `jobs` (a node's supervisor).

Reads of deployments and jobs are signed (`--key`): coord and the nodes show
a deployment or a job to its signer and to admins only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from zeronode.cli.common import CoordOption, LedgerOption, ask_supervisor, fail, load_key, out, parse_env, read_text
from zeronode.cli.views import deployment_table, follow

app = typer.Typer()


@app.command()
def deploy(
    script: Annotated[Path, typer.Argument(help="Rhai script to run on the targets")],
    key: Annotated[Path, typer.Option("--key", help="Your private key file (signs the deployment)")],
    target: Annotated[list[str], typer.Option("--target", help="A node id to run on (repeatable)")] = [],  # noqa: B006
    count: Annotated[int | None, typer.Option(
        "--count", help="Let coord choose this many nodes besides the targets (by free capacity; the options below)",
        rich_help_panel="Placement")] = None,
    farm: Annotated[list[str], typer.Option("--farm", help="Only nodes of this farm (repeatable)", rich_help_panel="Placement")] = [],  # noqa: B006
    label: Annotated[list[str], typer.Option("--label", help="Only nodes with this KEY=VALUE label (repeatable)", rich_help_panel="Placement")] = [],  # noqa: B006
    min_vcpus: Annotated[int, typer.Option(help="Free vCPUs a chosen node must have", rich_help_panel="Placement")] = 0,
    min_memory: Annotated[int, typer.Option(help="Free memory a chosen node must have, MiB", rich_help_panel="Placement")] = 0,
    min_disk: Annotated[int, typer.Option(help="Free disk a chosen node must have, GiB", rich_help_panel="Placement")] = 0,
    max_per_farm: Annotated[int | None, typer.Option(help="At most this many chosen nodes a farm", rich_help_panel="Placement")] = None,
    strategy: Annotated[str, typer.Option(help="binpack (fill nodes up) or spread", rich_help_panel="Placement")] = "binpack",
    service: Annotated[bool, typer.Option(
        "--service", help="Keep it running: coord moves a chosen node's share elsewhere when the node is gone or drained",
        rich_help_panel="Placement")] = False,
    coord_url: CoordOption = "http://127.0.0.1:8200",
    wait: Annotated[bool, typer.Option("--wait", help="Show live progress; exit 0 only when every node succeeded")] = False,
    env: Annotated[list[str], typer.Option("--env", help="KEY=VALUE made visible to the script as env.KEY")] = [],  # noqa: B006
    timeout: Annotated[int, typer.Option(help="Seconds the script may run on a node")] = 60,
    ttl: Annotated[int, typer.Option(help="Seconds the deployment stays valid")] = 3600,
    retries: Annotated[int, typer.Option(help="Times a node retries a failed script")] = 0,
) -> None:
    """Sign SCRIPT and deploy it through the coordinator: to the --target nodes, and --count more that coord chooses."""
    from pydantic import ValidationError

    from zeronode.api.errors import problems
    from zeronode.protocol.envelope import Selector, new_envelope
    from zeronode.protocol.errors import VerificationError

    signing_key = load_key(key)
    selector = None
    if count is not None:
        try:
            selector = Selector(
                count=count, farms=sorted(set(farm)), labels=sorted(set(label)), min_vcpus=min_vcpus, min_memory_mib=min_memory,
                min_disk_gib=min_disk, max_per_farm=max_per_farm, strategy=strategy, kind="service" if service else "job",
            )
        except ValidationError as exc:
            fail(f"placement: {problems(exc.errors())}")
    elif farm or label or min_vcpus or min_memory or min_disk or max_per_farm or service:
        fail("--farm, --label, --min-*, --max-per-farm and --service are about the nodes coord chooses: give --count too")
    if not target and selector is None:
        fail("name the nodes to run on (--target NODE) or let coord choose some (--count N)")
    try:
        envelope = new_envelope(
            read_text(script, "script"), target, signing_key, timeout=timeout, ttl=ttl, retries=retries, env=parse_env(env),
            selector=selector,
        )
    except VerificationError as exc:
        fail(str(exc))
    except ValidationError as exc:  # a target that is no node id, a timeout out of range: the envelope's own rules
        fail(problems(exc.errors()))
    submit_and_follow(envelope, coord_url, signing_key, wait)


@app.command()
def submit(
    envelope_path: Annotated[Path, typer.Argument(metavar="ENVELOPE", help="A signed envelope (zeronode sign, cosign)")],
    key: Annotated[Path, typer.Option("--key", help="Private key file that signs the reads: the envelope's signer's")],
    coord_url: CoordOption = "http://127.0.0.1:8200",
    wait: Annotated[bool, typer.Option("--wait", help="Show live progress; exit 0 only when every node succeeded")] = False,
) -> None:
    """Deploy an envelope signed beforehand (by several keys, for a multi-signature policy)."""
    from zeronode.protocol.envelope import Envelope
    from zeronode.protocol.errors import VerificationError

    try:
        envelope = Envelope.from_json(read_text(envelope_path, "envelope"))
    except VerificationError as exc:
        fail(f"{envelope_path} is not an envelope: {exc}")
    submit_and_follow(envelope, coord_url, load_key(key), wait)


def submit_and_follow(envelope, coord_url: str, key, wait: bool) -> None:
    from zeronode.api.errors import ServiceError
    from zeronode.client.coord import CoordClient

    with CoordClient(coord_url, key=key) as client:
        try:
            accepted = client.submit(envelope)
        except ServiceError as exc:
            fail(str(exc))
    targets, placed = accepted["targets"], accepted.get("placed") or []
    chosen = f" ({len(placed)} chosen by coord: {', '.join(placed)})" if placed else ""
    out.print(f"deployment {envelope.id} submitted to {len(targets)} node(s){chosen}", highlight=False, markup=False)
    if wait:
        final = follow(coord_url, envelope.id, len(targets), key)
        raise typer.Exit(0 if final["status"] == "succeeded" else 1)


@app.command()
def status(
    deployment: Annotated[str, typer.Argument(help="The deployment's id")],
    key: Annotated[Path, typer.Option("--key", help="Private key file: the deployment's signer's or a coord admin's")],
    coord_url: CoordOption = "http://127.0.0.1:8200",
    wait: Annotated[bool, typer.Option("--wait", help="Follow it until it ends")] = False,
) -> None:
    """Show a deployment's per-node progress and results."""
    from zeronode.api.errors import ServiceError
    from zeronode.client.coord import CoordClient

    signing_key = load_key(key)
    if wait:
        final = follow(coord_url, deployment, 0, signing_key)
        raise typer.Exit(0 if final["status"] == "succeeded" else 1)
    with CoordClient(coord_url, key=signing_key) as client:
        try:
            out.print(deployment_table(client.deployment(deployment)))
        except ServiceError as exc:
            fail(str(exc))


@app.command()
def nodes(
    ledger_url: LedgerOption = "http://127.0.0.1:8400",
    status: Annotated[str | None, typer.Option(help="online, degraded or offline")] = None,
    farm: Annotated[str | None, typer.Option(help="Only this farm's nodes")] = None,
) -> None:
    """List the nodes the ledger knows: id, status, version and last update, schedule, uptime, capacity (free of total), drivers."""
    from pydantic import ValidationError

    from zeronode.api.errors import ServiceError, problems
    from zeronode.client.ledger import LedgerClient

    with LedgerClient(ledger_url) as ledger:
        try:
            found = ledger.nodes(status=status, farm=farm, limit=1000)
        except ValidationError as exc:  # --status or --farm not what a node can have
            fail(problems(exc.errors()))
        except ServiceError as exc:
            fail(str(exc))
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
    ledger_url: LedgerOption = "http://127.0.0.1:8400",
    status: Annotated[str | None, typer.Option(help="queued, started, finished, failed, canceled")] = None,
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
