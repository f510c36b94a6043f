"""The `zeronode` command line: one module per command group, merged into one app here.

    local.py     version, run                  this machine only
    signing.py   keygen, sign, cosign, verify, sign-image   keys, envelopes, image signatures, offline
    node.py      supervisor, runner, identity, vm-keeper   a node's services
    services.py  ledger, coord                 the control plane's services
    deployments.py  deploy, submit, status, deployments, logs, cancel   a deployment's life, asked of coord
    fleet.py     nodes, jobs                   asking the ledger, a node
    users.py     users add | revoke | show     a ledger's users and rights
    policies.py  policies set | remove | list  a ledger's signature policies
    schedule.py  node cordon | uncordon | drain   whether coord places new work on a node
    vm.py        vm logs | events              a node's VMs, from its supervisor
    release.py   release build | sign | publish | list | status | promote | pause | resume | rollback | follow
    dashboard.py dashboard token               a read token for coord's fleet dashboard
    up.py        up                            a local cluster (zeronode.dev)

Each group is a Typer app of its own that imports only common.py (and views.py),
never this package, so no module imports its caller. Every command reports
failure as one line on stderr and a non-zero exit code, never as a traceback.
"""

from __future__ import annotations

from typing import Annotated

import typer

from zeronode.cli import dashboard, deployments, fleet, local, node, policies, release, schedule, services, signing, up, users, vm

app = typer.Typer(
    name="zeronode",
    help="Signed Rhai deployments for fleets of edge nodes.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion, --show-completion (bash, zsh, fish)
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(asked: bool) -> None:
    if asked:
        local.version()
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the versions of zeronode and its Rhai binding, and exit")] = False,
) -> None:
    """Signed Rhai deployments for fleets of edge nodes."""


for group in (local, signing, node, services, deployments, fleet, up):
    app.add_typer(group.app)
app.add_typer(users.app, name="users")
app.add_typer(policies.app, name="policies")
app.add_typer(vm.app, name="vm")
app.add_typer(release.app, name="release")
app.add_typer(schedule.app, name="node")
app.add_typer(dashboard.app, name="dashboard")
