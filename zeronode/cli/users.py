"""`zeronode users add | revoke | show`: a ledger's users and their rights.

Each change carries a sequence (zeronode.cli.common.change_ledger): a grant
captured and replayed after a revocation changes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zeronode.cli.common import DEFAULT_LEDGER_URL, LedgerOption, change_ledger, fail

app = typer.Typer(help="Users of a ledger and their rights.", no_args_is_help=True)

# An option, not an argument: a base64url key may begin with "-", which an argument would take for an option.
UserKeyOption = Annotated[str, typer.Option("--public-key", help="The user's public key")]


@app.command("add")
def users_add(
    public_key: UserKeyOption,
    name: Annotated[str, typer.Option(help="Who the user is")],
    key: Annotated[Path, typer.Option("--key", help="Private key file of an admin of the ledger")],
    ledger_url: LedgerOption = DEFAULT_LEDGER_URL,
    role: Annotated[list[str], typer.Option("--role", help="admin, operator, deployer or observer (repeatable)")] = [],  # noqa: B006
    node: Annotated[list[str], typer.Option("--node", help="A node id the roles apply on (repeatable)")] = [],  # noqa: B006
    farm: Annotated[list[str], typer.Option("--farm", help="A farm the roles apply on (repeatable)")] = [],  # noqa: B006
) -> None:
    """Create a user in the ledger, or replace their name and rights; print the user."""
    save(ledger_url, key, {"public_key": public_key, "name": name, "roles": role, "nodes": node, "farms": farm})


@app.command("revoke")
def users_revoke(
    public_key: UserKeyOption,
    key: Annotated[Path, typer.Option("--key", help="Private key file of an admin of the ledger")],
    ledger_url: LedgerOption = DEFAULT_LEDGER_URL,
    token: Annotated[str | None, typer.Option(envvar="ZERONODE_LEDGER_TOKEN", help="The ledger's read token")] = None,
) -> None:
    """Take every role from a user (nodes stop honouring them within their rights_refresh); print the user."""
    from zeronode.api.errors import ServiceError
    from zeronode.client.ledger import LedgerClient

    with LedgerClient(ledger_url, token=token) as client:
        try:
            name = client.user(public_key).name
        except ServiceError as exc:
            fail(str(exc))
    save(ledger_url, key, {"public_key": public_key, "name": name, "roles": [], "nodes": [], "farms": []})


def save(ledger_url: str, key: Path, fields: dict) -> None:
    from zeronode.api.ledger import NewUser

    change_ledger(ledger_url, key, NewUser, fields, lambda client, user: client.create_user(user))


@app.command("show")
def users_show(
    public_key: UserKeyOption,
    ledger_url: LedgerOption = DEFAULT_LEDGER_URL,
    node: Annotated[str | None, typer.Option(help="Also say whether the user may deploy on this node")] = None,
    token: Annotated[str | None, typer.Option(envvar="ZERONODE_LEDGER_TOKEN", help="The ledger's read token")] = None,
) -> None:
    """Print a user's roles and rights as the ledger has them."""
    from zeronode.api.errors import ServiceError
    from zeronode.client.ledger import LedgerClient

    with LedgerClient(ledger_url, token=token) as client:
        try:
            user = client.user(public_key, node)
        except ServiceError as exc:
            fail(str(exc))
    print(user.model_dump_json(indent=2))
