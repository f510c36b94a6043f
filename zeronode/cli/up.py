"""`zeronode up`: a whole zeronode system on this machine, and the example scripts deployed through it."""

from __future__ import annotations

import logging
import re
import signal
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from zeronode.cli.common import DEFAULT_COORD_URL, DEFAULT_LEDGER_URL, err, fail, out, styled
from zeronode.cli.views import deployment_table

EXAMPLES = Path(__file__).resolve().parents[2] / "scripts" / "examples"
SKIP_HINT = ("storage: run as root or give --storage-root on a btrfs; image_server: a real hypervisor (QEMU or "
             "cloud-hypervisor); vm_network: run as root")

DEFAULT_URLS = (DEFAULT_LEDGER_URL, DEFAULT_COORD_URL)

app = typer.Typer()


def example_needs(script: str) -> set[str]:
    """What an example says it needs, in its first line: `// needs: storage, network` (or `nothing`)."""
    first = script.split("\n", 1)[0]
    match = re.fullmatch(r"//\s*needs:\s*(.*)", first.strip())
    return {need.strip() for need in match.group(1).split(",")} - {"nothing", ""} if match else set()


@app.command()
def up(
    nodes_count: Annotated[int, typer.Option("--nodes", min=1, max=16, help="How many local nodes")] = 1,
    once: Annotated[bool, typer.Option("--once", help="Deploy the examples, then stop everything and exit")] = False,
    state_dir: Annotated[Path | None, typer.Option(
        help="Keep state and logs here, to start the same cluster again later: its keys, nodes, queues, "
             "deployments, volumes and VMs (default: a temporary dir, deleted at the end)")] = None,
    storage_root: Annotated[Path | None, typer.Option(help="A btrfs directory: nodes get storage and VMs there "
                                                       "(default: a btrfs image loop-mounted in the state dir, as root)")] = None,
    loop_storage: Annotated[bool, typer.Option(help="Without --storage-root, loop-mount a btrfs image for the nodes")] = True,
    hypervisor: Annotated[str, typer.Option(help="The nodes' hypervisor driver: auto (cloud-hypervisor, else qemu, "
                                                 "else the simulator), cloud-hypervisor, qemu, simulated")] = "auto",
    examples: Annotated[Path, typer.Option(help="Deploy the scripts in this directory")] = EXAMPLES,
    free_ports: Annotated[bool, typer.Option(
        "--free-ports", help="Serve the ledger and coord on free ports, not the clients' defaults (8400, 8200)")] = False,
) -> None:
    """Run a whole zeronode system on this machine and deploy the example scripts through it."""
    from zeronode.dev.cluster import ClusterError, LocalCluster
    from zeronode.dev.guest import GuestBuildError

    logging.disable(logging.CRITICAL)
    cluster = LocalCluster(nodes=nodes_count, state_dir=state_dir, storage_root=storage_root, hypervisor=hypervisor,
                           loop_storage=loop_storage, default_ports=not free_ports,
                           on_progress=lambda line: out.print(styled("up: ", "dim", line)))
    signal.signal(signal.SIGTERM, interrupt)  # stop as cleanly on `kill` as on Ctrl-C
    try:
        with out.status("starting redis, the ledger, coord and the nodes..."):
            cluster.start()
        tell_exports(cluster)
        if cluster.storage_root:
            for index, kind in cluster.hypervisors().items():
                out.print(styled("up: ", "dim", f"node {index}: VMs run on {kind}"))
            with out.status("preparing the nodes' image..."):
                cluster.prepare_images()
        all_succeeded = deploy_examples(cluster, examples)
        if once:
            raise typer.Exit(0 if all_succeeded else 1)
        out.print(styled("up: ", "dim", f"fleet dashboard {cluster.coord_url}/dashboard/: sign in with the read token "
                                        f"in {cluster.dashboard_token}"))
        out.print(styled("\nzeronode is up.", "bold", f" coord {cluster.coord_url}, ledger {cluster.ledger_url}; "
                         f"admin key {cluster.admin_key_path}; release keys (2 of 3 sign a release) in "
                         f"{cluster.state_dir / 'release-keys'}. Ctrl-C stops everything."))
        tell_exports(cluster)
        while True:
            time.sleep(0.5)
            for service in cluster.restart_exited():
                err.print(Text(f"{service.name} exited; restarted it (restart {service.restarts}):\n{service.tail(3)}"))
    except (ClusterError, GuestBuildError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        pass
    finally:
        with out.status("stopping..."):
            cluster.stop()
        out.print("stopped.", highlight=False)


def tell_exports(cluster) -> None:
    """Where the client commands find this cluster: their defaults, or what to export for them."""
    if (cluster.ledger_url, cluster.coord_url) == DEFAULT_URLS:
        out.print(styled("up: ", "dim", "the client commands find it at their defaults (--ledger, --coord)"))
        return
    out.print(styled("up: ", "dim", "not at the client commands' defaults (8400, 8200); for them, in another shell:"))
    for line in cluster.exports():
        out.print(Text(f"  {line}"))


def interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


def deploy_examples(cluster, examples: Path) -> bool:
    from zeronode.api.errors import ServiceError
    from zeronode.client.coord import CoordClient
    from zeronode.protocol.envelope import new_envelope

    have = {"network"} | ({"storage", "image"} if cluster.storage_root else set())
    have |= ({"image_server"} if cluster.image_url else set()) | ({"vm_network"} if cluster.vm_network else set())
    targets = [node.node_id for node in cluster.local_nodes]
    scripts = sorted(examples.glob("*.rhai")) if examples.is_dir() else []
    if not scripts:
        err.print(Text(f"no example scripts in {examples}"))
        return False
    all_succeeded = True
    with CoordClient(cluster.coord_url, key=cluster.admin_key) as client:
        for path in scripts:
            script = path.read_text()
            if missing := example_needs(script) - have:
                out.print(styled("skipped ", "yellow", f"{path.name}: needs {', '.join(sorted(missing))} ({SKIP_HINT})"))
                continue
            envelope = new_envelope(script, targets, cluster.admin_key, env=cluster.example_env())
            try:
                client.submit(envelope)
                *_, final = client.follow(envelope.id, timeout=120)
            except ServiceError as exc:
                fail(f"{path.name}: {exc}")
            out.print(Text(path.name, style="bold"))
            out.print(deployment_table(final))
            all_succeeded &= final["status"] == "succeeded"
    return all_succeeded
