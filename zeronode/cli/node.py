"""A node's services: `zeronode supervisor`, `zeronode runner`, `zeronode identity`, `zeronode vm-keeper`."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from zeronode.cli.common import ConfigOption, fail, node_settings, out, start_logs
from zeronode.protocol.errors import KeyFileError

app = typer.Typer()


@app.command()
def supervisor(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on")] = None,
) -> None:
    """Run this node's supervisor: accepts signed jobs and queues them."""
    import redis
    import uvicorn

    from supervisor.app import check_queue_at_start, create_app
    from supervisor.service import Supervisor
    from zeronode.node.authorizer import node_authorizer
    from zeronode.node.identity import node_identity
    from zeronode.node.queue.durability import VolatileQueue

    settings = node_settings(config, host=host, port=port)
    start_logs()
    try:
        identity = node_identity(settings)
    except (KeyFileError, OSError) as exc:
        fail(f"cannot load the node key: {exc}")
    connection = redis.Redis.from_url(settings.redis_url)
    service = Supervisor(settings, connection, identity, node_authorizer(settings, identity))
    try:  # a Redis that is not append-only would lose accepted jobs in a crash: refuse it (unreachable: start)
        check_queue_at_start(service)
    except VolatileQueue as exc:
        fail(str(exc))
    logging.getLogger("zeronode.supervisor").info(
        "supervisor starting", extra={"node": identity.node_id, "host": settings.host, "port": settings.port}
    )
    uvicorn.run(create_app(service), host=settings.host, port=settings.port, log_config=None, access_log=False)


@app.command()
def runner(
    config: ConfigOption = None,
    pool: Annotated[int, typer.Option(help="Number of runner processes", min=1)] = 1,
    burst: Annotated[bool, typer.Option(help="Run one runner in this process until the queue is empty")] = False,
) -> None:
    """Run this node's runners: they execute queued jobs."""
    from runner.pool import Pool, run_runner
    from sal.errors import SalError
    from sal.registry import NodeSals

    settings = node_settings(config)
    start_logs()
    try:  # here, once, rather than in every runner process the pool would start again and again
        NodeSals.from_settings(settings)
    except SalError as exc:
        fail(f"cannot set up this node's drivers: {exc}")
    if burst:
        count = run_runner(settings, burst=True)
        out.print(f"ran {count} jobs", highlight=False)
        return
    Pool(settings, pool).run()


@app.command()
def identity(
    config: ConfigOption = None,
    ledger_url: Annotated[str | None, typer.Option("--ledger", help="The ledger's URL (default: ledger_url in the settings)")] = None,
    once: Annotated[bool, typer.Option("--once", help="Register and report once, then exit (0: the ledger took both)")] = False,
) -> None:
    """Run this node's identity manager: register it in the ledger, report its uptime, update the node (at boot, for good)."""
    from zeronode.identity_manager import manager as identity_manager
    from zeronode.identity_manager.lock import AlreadyRunning

    settings = node_settings(config, ledger_url=ledger_url)
    if not settings.ledger_url:
        fail("no ledger to report to: set ledger_url in the settings (or ZERONODE_LEDGER_URL, or --ledger)")
    start_logs()
    try:
        if not identity_manager.run(settings, config=config, once=once):
            fail("the ledger did not take this node's registration and report (see the log lines above)")
    except AlreadyRunning as exc:
        fail(str(exc))
    except (KeyFileError, OSError) as exc:
        fail(f"cannot load the node key: {exc}")


@app.command("vm-keeper")
def vm_keeper(
    config: ConfigOption = None,
    interval: Annotated[float, typer.Option(help="Seconds between looks at the VMs", min=0.1)] = 2.0,
) -> None:
    """Keep this node's VMs as they should be: start again, by their restart policies, those that should run
    (after a crash, or at boot). Never deletes a VM."""
    import signal
    import threading

    from sal.errors import SalError
    from sal.hypervisor.keeper import VmKeeper
    from sal.registry import NodeSals

    settings = node_settings(config)
    start_logs()
    try:
        sals = NodeSals.from_settings(settings)
    except SalError as exc:
        fail(f"cannot set up this node's drivers: {exc}")
    if sals.vms is None:
        fail("this node has no VMs to keep: set storage_root (VM disks live there)")
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    VmKeeper(sals.vms).run(interval, stop)
