"""A deployment's life, asked of coord: `deploy`, `submit`, `status`, `deployments`, `logs`, `cancel`.

Reads and cancels are signed (`--key`): coord shows a deployment to its signer
and to admins only. Every read takes `--json` (shapes: docs/cli.md). `--wait`
follows a deployment until it ends and exits 0 only when every node succeeded,
1 when one failed or it was canceled, 124 when `--wait-timeout` came first
(the deployment goes on: `zeronode status ID --wait` follows it again).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from zeronode.cli.common import DEFAULT_COORD_URL, CoordOption, JsonOption, fail, load_key, out, parse_env, print_json, read_text
from zeronode.cli.views import STATE_STYLE, deployment_table, follow

app = typer.Typer()

KeyOption = Annotated[Path, typer.Option("--key", help="Private key file: the deployment's signer's or a coord admin's")]
WaitTimeoutOption = Annotated[float | None, typer.Option(
    "--wait-timeout", min=1, help="With --wait: stop waiting after this many seconds (exit 124; the deployment goes on)")]
TIMED_OUT = 124  # what `timeout` exits with when its time is up


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
    coord_url: CoordOption = DEFAULT_COORD_URL,
    wait: Annotated[bool, typer.Option("--wait", help="Show live progress; exit 0 only when every node succeeded")] = False,
    wait_timeout: WaitTimeoutOption = None,
    as_json: JsonOption = False,
    env: Annotated[list[str], typer.Option("--env", help="KEY=VALUE made visible to the script as env.KEY")] = [],  # noqa: B006
    timeout: Annotated[int, typer.Option(help="Seconds the script may run on a node")] = 60,
    ttl: Annotated[int, typer.Option(help="Seconds the deployment stays valid")] = 3600,
    retries: Annotated[int, typer.Option(help="Times a node retries a failed script")] = 0,
) -> None:
    """Sign SCRIPT and deploy it through the coordinator: to the --target nodes, and --count more that coord chooses.

    The script is compiled here first: a syntax error is told once, with the file's name, before anything is signed."""
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
    source = read_text(script, "script")
    compile_here(source, script.name)
    try:
        envelope = new_envelope(
            source, target, signing_key, timeout=timeout, ttl=ttl, retries=retries, env=parse_env(env), selector=selector,
        )
    except VerificationError as exc:
        fail(str(exc))
    except ValidationError as exc:  # a target that is no node id, a timeout out of range: the envelope's own rules
        fail(problems(exc.errors()))
    submit_and_follow(envelope, coord_url, signing_key, wait, wait_timeout, as_json, source_name=script.name)


def compile_here(source: str, name: str) -> None:
    """Compile the script as a node's supervisor does (its default limits), so a mistake is told once, here,
    as `deploy.rhai:3:9: Unexpected ';'`, not once a node after signing. A node with stricter limits may still refuse it."""
    import rhai

    from zeronode.node.settings import ScriptLimits

    try:
        rhai.Engine(**ScriptLimits().engine_kwargs()).compile(source, name=name)
    except rhai.RhaiError as exc:
        fail(f"{exc} (nothing was signed or sent)")


@app.command()
def submit(
    envelope_path: Annotated[Path, typer.Argument(metavar="ENVELOPE", help="A signed envelope (zeronode sign, cosign)")],
    key: Annotated[Path, typer.Option("--key", help="Private key file that signs the reads: the envelope's signer's")],
    coord_url: CoordOption = DEFAULT_COORD_URL,
    wait: Annotated[bool, typer.Option("--wait", help="Show live progress; exit 0 only when every node succeeded")] = False,
    wait_timeout: WaitTimeoutOption = None,
    as_json: JsonOption = False,
) -> None:
    """Deploy an envelope signed beforehand (by several keys, for a multi-signature policy)."""
    from zeronode.protocol.envelope import Envelope
    from zeronode.protocol.errors import VerificationError

    try:
        envelope = Envelope.from_json(read_text(envelope_path, "envelope"))
    except VerificationError as exc:
        fail(f"{envelope_path} is not an envelope: {exc}")
    submit_and_follow(envelope, coord_url, load_key(key), wait, wait_timeout, as_json)


def submit_and_follow(envelope, coord_url: str, key, wait: bool, wait_timeout: float | None, as_json: bool,
                      source_name: str | None = None) -> None:
    from zeronode.api.errors import ServiceError
    from zeronode.client.coord import CoordClient

    with CoordClient(coord_url, key=key) as client:
        try:
            accepted = client.submit(envelope)
        except ServiceError as exc:
            fail(str(exc))
    if not as_json:
        targets, placed = accepted["targets"], accepted.get("placed") or []
        chosen = f" ({len(placed)} chosen by coord: {', '.join(placed)})" if placed else ""
        out.print(Text(f"deployment {envelope.id} submitted to {len(targets)} node(s){chosen}"))
    if not wait:
        if as_json:
            print_json(accepted)
        return
    wait_for_end(coord_url, envelope.id, len(accepted["targets"]), key, wait_timeout, as_json, source_name)


def wait_for_end(coord_url: str, deployment_id: str, targets: int, key, wait_timeout: float | None, as_json: bool,
                 source_name: str | None = None) -> None:
    """Follow the deployment to its end (live, or quietly for --json), then exit with its outcome."""
    final = follow(coord_url, deployment_id, targets, key, timeout=wait_timeout, live=not as_json, source_name=source_name)
    if final is None:
        fail(f"deployment {deployment_id} has not ended after {wait_timeout:g} s; it goes on "
             f"(zeronode status {deployment_id} --wait follows it again)", code=TIMED_OUT)
    if as_json:
        print_json(final)
    raise typer.Exit(0 if final["status"] == "succeeded" else 1)


def read_deployment(coord_url: str, key, deployment_id: str) -> dict[str, Any]:
    from zeronode.api.errors import ServiceError
    from zeronode.client.coord import CoordClient

    with CoordClient(coord_url, key=key) as client:
        try:
            return client.deployment(deployment_id)
        except ServiceError as exc:
            fail(str(exc))


@app.command()
def status(
    deployment: Annotated[str, typer.Argument(help="The deployment's id")],
    key: KeyOption,
    coord_url: CoordOption = DEFAULT_COORD_URL,
    wait: Annotated[bool, typer.Option("--wait", help="Follow it until it ends")] = False,
    wait_timeout: WaitTimeoutOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a deployment's per-node progress and results."""
    signing_key = load_key(key)
    if wait:
        wait_for_end(coord_url, deployment, 0, signing_key, wait_timeout, as_json)
    view = read_deployment(coord_url, signing_key, deployment)
    if as_json:
        print_json(view)
    else:
        out.print(deployment_table(view))


@app.command("deployments")
def deployments_list(
    key: Annotated[Path, typer.Option("--key", help="Private key file: you see your own deployments, a coord admin everyone's")],
    coord_url: CoordOption = DEFAULT_COORD_URL,
    status: Annotated[str | None, typer.Option(help="pending, running, succeeded, failed or canceled")] = None,
    signer: Annotated[str | None, typer.Option(help="One signer's (an admin's filter)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many, newest first")] = 50,
    as_json: JsonOption = False,
) -> None:
    """List deployments, newest first: your own, or (for an admin) everyone's or one signer's."""
    from zeronode.api.errors import ServiceError
    from zeronode.client.coord import CoordClient

    statuses = ("pending", "running", "succeeded", "failed", "canceled")
    if status is not None and status not in statuses:
        fail(f"--status {status!r}: one of {', '.join(statuses)}")
    with CoordClient(coord_url, key=load_key(key)) as client:
        try:
            found = client.deployments(status=status, signer=signer, limit=limit)
        except ServiceError as exc:
            fail(str(exc))
    if as_json:
        print_json(found)
        return
    signers = {view["signer"] for view in found}  # a column only when there is more than one (an admin's list)
    table = Table()
    table.add_column("deployment", no_wrap=True, min_width=36)  # whole, at any width: it is pasted into status
    table.add_column("status", no_wrap=True)
    table.add_column("nodes")
    table.add_column("created", no_wrap=True)
    if len(signers) > 1:
        table.add_column("signer", no_wrap=True)
    for view in found:
        counts = {state: n for state, n in view["counts"].items() if n}
        total = sum(counts.values())  # and how they stand, when not all alike: "3 (1 failed, 2 succeeded)"
        nodes = f"{total}" if len(counts) <= 1 else f"{total} ({', '.join(f'{n} {state}' for state, n in sorted(counts.items()))})"
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(view["created"]))
        row = [Text(view["id"]), Text(view["status"], style=STATE_STYLE.get(view["status"], "")), Text(nodes), created]
        table.add_row(*row, *([Text(view["signer"])] if len(signers) > 1 else []))
    out.print(table)


@app.command()
def logs(
    deployment: Annotated[str, typer.Argument(help="The deployment's id")],
    key: KeyOption,
    node: Annotated[str | None, typer.Option("--node", help="Only this node's output")] = None,
    follow_it: Annotated[bool, typer.Option(
        "--follow", "-f", help="Print each node's output as its job ends, until the deployment ends")] = False,
    coord_url: CoordOption = DEFAULT_COORD_URL,
    as_json: JsonOption = False,
) -> None:
    """Print what the script printed on each node (its `print` lines), node by node.

    A node's output reaches coord when its job ends: --follow prints each node's as it comes
    (with --json, one JSON object a line)."""
    signing_key = load_key(key)
    if not follow_it:
        view = read_deployment(coord_url, signing_key, deployment)
        tasks = [task for task in view.get("tasks") or [] if node is None or task["node"] == node]
        if node is not None and not tasks:
            fail(f"deployment {deployment} has no node {node}")
        if as_json:
            print_json([node_output(task) for task in tasks])
        else:
            for task in tasks:
                print_output(task)
        return

    from zeronode.api.errors import ServiceError
    from zeronode.client.coord import CoordClient

    printed: set[str] = set()
    with CoordClient(coord_url, key=signing_key) as client:
        try:
            for view in client.follow(deployment):
                for task in view.get("tasks") or []:
                    if task["node"] in printed or task["state"] not in ENDED or node not in (None, task["node"]):
                        continue
                    printed.add(task["node"])
                    if as_json:
                        print(json.dumps(node_output(task)), flush=True)
                    else:
                        print_output(task)
        except ServiceError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            raise typer.Exit(130) from None


ENDED = ("succeeded", "failed", "canceled", "moved")


def node_output(task: dict[str, Any]) -> dict[str, Any]:
    """`logs --json`'s shape: {node, state, output: [line, ...]}."""
    return {"node": task["node"], "state": task["state"], "output": task.get("output") or []}


def print_output(task: dict[str, Any]) -> None:
    out.print(Text(f"── {task['node']} ({task['state']})", style="bold"))
    for line in task.get("output") or []:
        out.print(Text(line))  # the script's words: text, never markup


@app.command()
def cancel(
    deployment: Annotated[str, typer.Argument(help="The deployment's id")],
    key: Annotated[Path, typer.Option("--key", help="Private key file: the deployment's signer's or a coord admin's")],
    coord_url: CoordOption = DEFAULT_COORD_URL,
    as_json: JsonOption = False,
) -> None:
    """Cancel a deployment: jobs not started do not run, running ones are stopped; what ended stays as it ended."""
    from zeronode.api.errors import ServiceError
    from zeronode.client.coord import CoordClient

    with CoordClient(coord_url, key=load_key(key)) as client:
        try:
            view = client.cancel(deployment)
        except ServiceError as exc:
            fail(str(exc))
    if as_json:
        print_json(view)
        return
    if view["status"] in ("pending", "running"):  # the nodes are told now; their jobs end as canceled soon after
        out.print(Text(f"cancel sent: the nodes stop its jobs (zeronode status {deployment} --wait follows it)"))
    out.print(deployment_table(view))
