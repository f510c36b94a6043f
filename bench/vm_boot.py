"""From `deploy` to a real guest's first serial line: zeronode's tiny Linux guest on QEMU, through the whole system.

    .venv/bin/python bench/vm_boot.py [--rounds 3] [--together 4]

A local cluster of one node (zeronode.dev.cluster, as `zeronode up` starts it:
redis-server, the ledger, coord, the node's identity manager, supervisor and a
runner pool of 2 on a loop-mounted btrfs, hypervisor auto: cloud-hypervisor when
installed, else QEMU). The clock starts when the client submits a signed
deployment to coord, and stops for each VM when its serial console's first line
is on disk (VM_DIR/NAME/serial.log, polled every 10 ms): the guest's kernel wrote
it, so the whole path ran (coord, supervisor, queue, runner, Rhai, the VM
manager, the btrfs clone of the root disk, the VMM's start, firmware and kernel).
The script also waits for its guests' "ZN-READY" (userspace up), reported
beside it.

  one VM    a deployment that creates and starts one VM, `--rounds` times
  N at once one deployment that creates and starts `--together` VMs, each on its own
            (the runner starts them one after another; the guests boot side by side)

Needs root (the loop mount) and the guest's packages (apt-get download, once).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT), *(entry for entry in sys.path if Path(entry or ".").resolve() != ROOT / "bench")]

from zeronode.client.coord import CoordClient  # noqa: E402
from zeronode.dev.cluster import LocalCluster  # noqa: E402
from zeronode.protocol.envelope import new_envelope  # noqa: E402

console = Console()

SCRIPT = """
let names = env.NAMES.split(",");
for name in names { vm_create(#{ name: name, image: "tiny", vcpus: 1, memory_mb: 128 }); }
let hypervisor = "";
for name in names { hypervisor = vm_start(name).hypervisor; }
hypervisor
"""


def first_line_at(serial: Path) -> float | None:
    try:
        data = serial.read_bytes()
    except FileNotFoundError:
        return None
    return time.monotonic() if b"\n" in data else None


def deploy_and_time(cluster: LocalCluster, names: list[str], timeout: float = 180) -> tuple[str, list[float], list[float]]:
    """Seconds from submit to each VM's first console line, and to its guest's ZN-READY."""
    node = cluster.local_nodes[0]
    vms = cluster.state_dir / f"node{node.index}" / "vms"
    envelope = new_envelope(SCRIPT, [node.node_id], cluster.admin_key, env={"NAMES": ",".join(names)}, timeout=120)
    first: dict[str, float] = {}
    ready: dict[str, float] = {}
    with CoordClient(cluster.coord_url, key=cluster.admin_key) as coord:
        started = time.monotonic()
        coord.submit(envelope)
        while len(ready) < len(names):
            if time.monotonic() - started > timeout:
                raise SystemExit(f"guests not up within {timeout:.0f} s: first lines {first}, ready {ready}")
            for name in names:
                serial = vms / name / "serial.log"
                if name not in first and (at := first_line_at(serial)):
                    first[name] = at - started
                if name not in ready and serial.exists() and b"ZN-READY" in serial.read_bytes():
                    ready[name] = time.monotonic() - started
            time.sleep(0.01)
        final = coord.deployment(envelope.id)
    hypervisor = str(final["tasks"][0].get("result"))
    return hypervisor, [first[name] for name in names], [ready[name] for name in names]


def clean(cluster: LocalCluster) -> None:
    envelope = new_envelope('for vm in vm_list() { if vm.image == "tiny" { vm_delete(vm.name); } }',
                            [cluster.local_nodes[0].node_id], cluster.admin_key, timeout=120)
    with CoordClient(cluster.coord_url, key=cluster.admin_key) as coord:
        coord.submit(envelope)
        *_, final = coord.follow(envelope.id, timeout=180)
    if final["status"] != "succeeded":
        raise SystemExit(f"cleaning up failed: {final}")


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="one-VM deployments")
    parser.add_argument("--together", type=int, default=4, help="VMs in the all-at-once deployment")
    parser.add_argument("--guest-cache", type=Path, help="where the tiny guest is built (default: ~/.cache/zeronode/guest)")
    args = parser.parse_args()
    cluster = LocalCluster(nodes=1, guest_cache=args.guest_cache,
                           on_progress=lambda line: console.print(f"[dim]{line}[/]", highlight=False))
    with cluster:
        if not cluster.storage_root:
            raise SystemExit("no storage for VMs: run as root (the loop-mounted btrfs)")
        cluster.prepare_images()
        console.print(f"VMs run on: {cluster.hypervisors()[1]}", highlight=False)
        singles_first, singles_ready = [], []
        for round_ in range(args.rounds):
            hypervisor, first, ready = deploy_and_time(cluster, [f"one{round_}"])
            singles_first += first
            singles_ready += ready
            clean(cluster)
        names = [f"many{index}" for index in range(args.together)]
        _, together_first, together_ready = deploy_and_time(cluster, names)
        clean(cluster)
    table = Table(title=f"deploy → guest, {hypervisor}", title_justify="left")
    for column in ("case", "first serial line", "guest userspace ready (ZN-READY)"):
        table.add_column(column)
    table.add_row(f"one VM ({args.rounds} rounds)", spread(singles_first), spread(singles_ready))
    table.add_row(f"{args.together} VMs at once (each VM)", spread(together_first), spread(together_ready))
    table.add_row(f"{args.together} VMs at once (the last)", f"{max(together_first):.2f} s", f"{max(together_ready):.2f} s")
    console.print(table)


if __name__ == "__main__":
    main()
