"""`zeronode` commands of the control plane: coord, deploy, status, nodes, jobs, and up (a local cluster).

Registered on the app of zeronode.cli, which imports this module last.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from zeronode.cli import LedgerOption, app, err, fail, load_key, out, parse_env, read_text

CoordOption = Annotated[str, typer.Option("--coord", envvar="ZERONODE_COORD_URL", help="The coordinator's URL")]
EXAMPLES = Path(__file__).resolve().parents[1] / "scripts" / "examples"
MAX_ROWS = 50  # more nodes than this: live progress shows counts, the final table every node
STATE_STYLE = {"succeeded": "green", "failed": "red", "canceled": "yellow", "running": "cyan", "dispatched": "cyan"}


# -- the coordinator service ------------------------------------------------------------


@app.command()
def coord(
    config: Annotated[Path | None, typer.Option("--config", help="Coordinator settings file (TOML)")] = None,
    ledger_url: Annotated[str | None, typer.Option("--ledger", help="The ledger's URL")] = None,
    redis_url: Annotated[str | None, typer.Option("--redis-url", help="The Redis every coord replica shares")] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on")] = None,
) -> None:
    """Run a coordinator replica: takes signed deployments, dispatches them to nodes, tracks them (default :8200)."""
    import uvicorn

    from coord.app import create_app
    from coord.settings import CoordSettings
    from coord.store import connect
    from zeronode import logs
    from zeronode.node import load_or_create_key
    from zeronode.errors import KeyFileError
    from zeronode.settings import SettingsError

    overrides = {"ledger_url": ledger_url, "redis_url": redis_url, "host": host, "port": port}
    try:
        settings = CoordSettings.load(config, **{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:
        fail(str(exc))
    logs.setup()
    try:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        key = load_or_create_key(settings.key_path)
    except (KeyFileError, OSError) as exc:
        fail(f"cannot load the coordinator key: {exc}")
    app_ = create_app(settings, connect(settings.redis_url), key)
    uvicorn.run(app_, host=settings.host, port=settings.port, log_config=None, access_log=False)


# -- clients ------------------------------------------------------------------------------


def deployment_table(view: dict[str, Any]) -> Table:
    counts = ", ".join(f"{n} {state}" for state, n in sorted(view["counts"].items()))
    table = Table(title=f"deployment {view['id']}: {view['status']} ({counts})", title_justify="left")
    table.add_column("node", no_wrap=True)
    for column in ("state", "result / error", "attempts"):
        table.add_column(column)
    for task in view.get("tasks") or []:
        style = STATE_STYLE.get(task["state"], "")
        if task.get("error"):
            line = f" (line {task['error']['line']})" if task["error"].get("line") else ""
            outcome = f"{task['error']['reason']}: {task['error']['message']}{line}"
        else:
            outcome = "" if task.get("result") is None else json.dumps(task["result"], separators=(",", ":"))
        table.add_row(task["node"], f"[{style}]{task['state']}[/]" if style else task["state"], outcome, str(task["attempts"]))
    return table


def follow(coord_url: str, deployment_id: str, targets: int) -> dict[str, Any]:
    """Live progress until the deployment ends (per node when there are few); its final view."""
    from zeronode.coord_client import CoordClient, CoordError

    with CoordClient(coord_url) as client, Live(console=out, refresh_per_second=8, transient=False) as live:
        try:
            for view in client.follow(deployment_id, tasks=targets <= MAX_ROWS):
                live.update(deployment_table(view))
        except CoordError as exc:
            fail(str(exc))
    return view


@app.command()
def deploy(
    script: Annotated[Path, typer.Argument(help="Rhai script to run on the targets")],
    key: Annotated[Path, typer.Option("--key", help="Your private key file (signs the deployment)")],
    target: Annotated[list[str], typer.Option("--target", help="A node id to run on (repeatable)")],
    coord_url: CoordOption = "http://127.0.0.1:8200",
    wait: Annotated[bool, typer.Option("--wait", help="Show live progress; exit 0 only when every node succeeded")] = False,
    env: Annotated[list[str], typer.Option("--env", help="KEY=VALUE made visible to the script as env.KEY")] = [],  # noqa: B006
    timeout: Annotated[int, typer.Option(help="Seconds the script may run on a node")] = 60,
    ttl: Annotated[int, typer.Option(help="Seconds the deployment stays valid")] = 3600,
    retries: Annotated[int, typer.Option(help="Times a node retries a failed script")] = 0,
) -> None:
    """Sign SCRIPT and deploy it to the target nodes through the coordinator."""
    from zeronode.coord_client import CoordClient, CoordError
    from zeronode.envelope import new_envelope

    envelope = new_envelope(
        read_text(script, "script"), target, load_key(key), timeout=timeout, ttl=ttl, retries=retries, env=parse_env(env)
    )
    with CoordClient(coord_url) as client:
        try:
            client.submit(envelope)
        except CoordError as exc:
            fail(str(exc))
    out.print(f"deployment {envelope.id} submitted to {len(target)} node(s)", highlight=False)
    if wait:
        final = follow(coord_url, envelope.id, len(target))
        raise typer.Exit(0 if final["status"] == "succeeded" else 1)


@app.command()
def status(
    deployment: Annotated[str, typer.Argument(help="The deployment's id")],
    coord_url: CoordOption = "http://127.0.0.1:8200",
    wait: Annotated[bool, typer.Option("--wait", help="Follow it until it ends")] = False,
) -> None:
    """Show a deployment's per-node progress and results."""
    from zeronode.coord_client import CoordClient, CoordError

    if wait:
        final = follow(coord_url, deployment, targets=0)
        raise typer.Exit(0 if final["status"] == "succeeded" else 1)
    with CoordClient(coord_url) as client:
        try:
            out.print(deployment_table(client.deployment(deployment)))
        except CoordError as exc:
            fail(str(exc))


@app.command()
def nodes(
    ledger_url: LedgerOption = "http://127.0.0.1:8400",
    status: Annotated[str | None, typer.Option(help="online or offline")] = None,
    farm: Annotated[str | None, typer.Option(help="Only this farm's nodes")] = None,
) -> None:
    """List the nodes the ledger knows: id, status, uptime, capacity."""
    from zeronode.ledger_client import LedgerClient, LedgerError

    with LedgerClient(ledger_url) as ledger:
        try:
            found = ledger.nodes(status=status, farm=farm, limit=1000)
        except LedgerError as exc:
            fail(str(exc))
    table = Table()
    for column in ("node", "status", "uptime", "restarts", "vcpus", "memory", "disk", "farm", "supervisor"):
        table.add_column(column)
    for node in found:
        uptime = "" if node.last_uptime is None else f"{node.last_uptime // 3600}h{node.last_uptime % 3600 // 60:02d}m"
        table.add_row(
            node.node_id, f"[{'green' if node.status == 'online' else 'red'}]{node.status}[/]", uptime, str(node.restarts),
            str(node.capacity.vcpus), f"{node.capacity.memory >> 30} GiB", f"{node.capacity.disk >> 30} GiB", node.farm,
            node.supervisor_url or "",
        )
    out.print(table)


@app.command()
def jobs(
    node: Annotated[str, typer.Option("--node", help="The node's id")],
    ledger_url: LedgerOption = "http://127.0.0.1:8400",
    status: Annotated[str | None, typer.Option(help="queued, started, finished, failed, canceled")] = None,
) -> None:
    """List a node's recent jobs, from its supervisor (found through the ledger)."""
    import httpx

    from zeronode.ledger_client import LedgerClient, LedgerError

    with LedgerClient(ledger_url) as ledger:
        try:
            record = ledger.node(node)
        except LedgerError as exc:
            fail(str(exc))
    if not record.supervisor_url:
        fail(f"node {node} registered no supervisor URL")
    try:
        response = httpx.get(f"{record.supervisor_url}/v1/jobs", params={"status": status} if status else {}, timeout=10)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        fail(f"supervisor of {node} at {record.supervisor_url}: {exc}")
    table = Table(title=f"jobs on {node}", title_justify="left")
    for column in ("job", "status", "signer", "attempts", "ended", "result / error"):
        table.add_column(column)
    for job in response.json():
        outcome = f"{job['error']['type']}: {job['error']['message']}" if job.get("error") else repr(job.get("result"))
        table.add_row(job["id"], job["status"], (job.get("signer") or "")[:12], str(job["attempts"]),
                      job.get("ended_at") or "", outcome)
    out.print(table)


# -- a local cluster ------------------------------------------------------------------------


def example_needs(script: str) -> set[str]:
    """What an example says it needs, in its first line: `// needs: storage, network` (or `nothing`)."""
    first = script.split("\n", 1)[0]
    match = re.fullmatch(r"//\s*needs:\s*(.*)", first.strip())
    return {need.strip() for need in match.group(1).split(",")} - {"nothing", ""} if match else set()


@app.command()
def up(
    nodes_count: Annotated[int, typer.Option("--nodes", min=1, max=16, help="How many local nodes")] = 1,
    once: Annotated[bool, typer.Option("--once", help="Deploy the examples, then stop everything and exit")] = False,
    state_dir: Annotated[Path | None, typer.Option(help="Keep state and logs here (default: a temporary dir)")] = None,
    storage_root: Annotated[Path | None, typer.Option(help="A btrfs directory: nodes get storage and VMs there")] = None,
    examples: Annotated[Path, typer.Option(help="Deploy the scripts in this directory")] = EXAMPLES,
) -> None:
    """Run a whole zeronode system on this machine and deploy the example scripts through it."""
    from zeronode.cluster import ClusterError, LocalCluster

    logging.disable(logging.CRITICAL)
    cluster = LocalCluster(nodes=nodes_count, state_dir=state_dir, storage_root=storage_root,
                           on_progress=lambda line: out.print(f"[dim]up:[/] {line}", highlight=False))
    signal.signal(signal.SIGTERM, interrupt)  # stop as cleanly on `kill` as on Ctrl-C
    try:
        with out.status("starting redis, the ledger, coord and the nodes..."):
            cluster.start()
        if storage_root:
            cluster.prepare_images()
        all_succeeded = deploy_examples(cluster, examples)
        if once:
            raise typer.Exit(0 if all_succeeded else 1)
        out.print(f"\n[bold]zeronode is up.[/] coord {cluster.coord_url}, ledger {cluster.ledger_url}; "
                  f"admin key {cluster.admin_key_path}. Ctrl-C stops everything.", highlight=False)
        while True:
            time.sleep(0.5)
            for service in cluster.restart_exited():
                err.print(f"{service.name} exited; restarted it (restart {service.restarts}):\n{service.tail(3)}",
                          highlight=False)
    except ClusterError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        pass
    finally:
        with out.status("stopping..."):
            cluster.stop()
        out.print("stopped.", highlight=False)


def interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


def deploy_examples(cluster, examples: Path) -> bool:
    from zeronode.coord_client import CoordClient, CoordError
    from zeronode.envelope import new_envelope

    have = {"network"} | ({"storage", "image"} if cluster.storage_root else set())
    targets = [node.node_id for node in cluster.local_nodes]
    scripts = sorted(examples.glob("*.rhai")) if examples.is_dir() else []
    if not scripts:
        err.print(f"no example scripts in {examples}", highlight=False)
        return False
    all_succeeded = True
    with CoordClient(cluster.coord_url) as client:
        for path in scripts:
            script = path.read_text()
            if missing := example_needs(script) - have:
                out.print(f"[yellow]skipped[/] {path.name}: needs {', '.join(sorted(missing))} (give --storage-root on a btrfs)")
                continue
            envelope = new_envelope(script, targets, cluster.admin_key, env={"APP": "demo", "NAME": "demo-vm"})
            try:
                client.submit(envelope)
                *_, final = client.follow(envelope.id, timeout=120)
            except CoordError as exc:
                fail(f"{path.name}: {exc}")
            out.print(f"[bold]{path.name}[/]")
            out.print(deployment_table(final))
            all_succeeded &= final["status"] == "succeeded"
    return all_succeeded
