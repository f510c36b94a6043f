"""The `zeronode` command line.

Every command reports failure as one line on stderr and a non-zero exit code,
never as a traceback.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

import rhai
import zeronode
from zeronode import keys
from zeronode.envelope import Envelope, new_envelope, verify as verify_envelope
from zeronode.errors import KeyFileError, VerificationError

app = typer.Typer(
    name="zeronode",
    help="Signed Rhai deployments for fleets of edge nodes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@app.command()
def version() -> None:
    """Print the versions of zeronode and its Rhai binding."""
    out.print(f"zeronode {zeronode.__version__} (rhai-py {rhai.__version__})", highlight=False)


def parse_env(pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"--env takes KEY=VALUE, got {pair!r}")
        env[key] = value
    return env


@app.command()
def run(
    script: Annotated[Path, typer.Argument(help="Rhai script to evaluate on this machine")],
    timeout: Annotated[float, typer.Option(help="Seconds the script may run")] = 30.0,
    env: Annotated[list[str], typer.Option("--env", help="KEY=VALUE made visible to the script as env.KEY")] = [],  # noqa: B006
) -> None:
    """Evaluate a script locally (no signing, no node) and print its output and result."""
    try:
        source = script.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {script}: {exc}")
    engine = rhai.Engine(timeout=timeout)
    try:
        result = engine.eval(
            engine.compile(source, name=script.name),
            {"env": parse_env(env)},
            on_print=lambda line: out.print(f"[dim]│[/] {line}", highlight=False),
            on_debug=lambda line, pos: out.print(f"[dim]│ debug (line {pos}):[/] {line}", highlight=False),
        )
    except rhai.RhaiError as exc:
        fail(str(exc))
    out.print_json(json.dumps(result, default=lambda b: b.hex() if isinstance(b, bytes) else repr(b)))


def read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {what} {path}: {exc}")


def load_key(path: Path):
    try:
        return keys.load_private_key(path)
    except KeyFileError as exc:
        fail(str(exc))


def emit(text: str, out_path: Path | None) -> None:
    """Print `text`, or write it to `out_path`."""
    if out_path is None:
        print(text)
        return
    try:
        out_path.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {out_path}: {exc.strerror}")


@app.command()
def keygen(
    out: Annotated[Path, typer.Option("--out", help="Where to write the private key (mode 0600)")],
    force: Annotated[bool, typer.Option(help="Overwrite an existing key file")] = False,
) -> None:
    """Create an Ed25519 key; print its public key."""
    key = keys.generate()
    try:
        keys.save_private_key(key, out, force=force)
    except (KeyFileError, OSError) as exc:
        fail(str(exc))
    print(keys.public_key_text(key))


@app.command()
def sign(
    script: Annotated[Path, typer.Argument(help="Rhai script to sign")],
    key: Annotated[Path, typer.Option("--key", help="Private key file of the signer")],
    target: Annotated[list[str], typer.Option("--target", help="Node id to run on (repeatable)")],
    timeout: Annotated[int, typer.Option(help="Seconds the script may run")] = 60,
    ttl: Annotated[int, typer.Option(help="Seconds the envelope stays valid")] = 3600,
    retries: Annotated[int, typer.Option(help="Times a node may retry a failed run")] = 0,
    env: Annotated[list[str], typer.Option("--env", help="KEY=VALUE made visible to the script as env.KEY")] = [],  # noqa: B006
    out_path: Annotated[Path | None, typer.Option("--out", help="Write the envelope here instead of stdout")] = None,
) -> None:
    """Sign a script for the target nodes; print the envelope as JSON."""
    source = read_text(script, "script")
    signing_key = load_key(key)
    try:
        envelope = new_envelope(
            source, target, signing_key, timeout=timeout, ttl=ttl, retries=retries, env=parse_env(env)
        )
    except VerificationError as exc:
        fail(str(exc))
    emit(envelope.to_json(indent=2), out_path)


@app.command()
def cosign(
    envelope_path: Annotated[Path, typer.Argument(metavar="ENVELOPE", help="Signed envelope (JSON)")],
    key: Annotated[Path, typer.Option("--key", help="Private key file of the co-signer")],
    out_path: Annotated[Path | None, typer.Option("--out", help="Write the envelope here instead of stdout")] = None,
) -> None:
    """Add a signature to an envelope (for multi-signature policies)."""
    try:
        envelope = Envelope.from_json(read_text(envelope_path, "envelope"))
        cosigned = envelope.signed_by(load_key(key))
    except (VerificationError, ValueError) as exc:
        fail(str(exc))
    emit(cosigned.to_json(indent=2), out_path)


@app.command()
def verify(
    envelope_path: Annotated[Path, typer.Argument(metavar="ENVELOPE", help="Signed envelope (JSON)")],
) -> None:
    """Check an envelope's signatures and validity; exit 0 if valid, 1 if not."""
    try:
        verified = verify_envelope(read_text(envelope_path, "envelope"))
    except VerificationError as exc:
        fail(f"invalid ({exc.reason}): {exc}")
    envelope = verified.envelope
    print(f"valid: envelope {envelope.id} for {', '.join(envelope.targets)}")
    for signer in sorted(verified.signers):
        print(f"signed by {signer}{' (signer)' if signer == envelope.signer else ''}")


ConfigOption = Annotated[Path | None, typer.Option("--config", help="Node settings file (TOML)")]


def node_settings(config: Path | None, **overrides):
    from zeronode.settings import NodeSettings, SettingsError

    try:
        return NodeSettings.load(config, **{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:
        fail(str(exc))


@app.command()
def supervisor(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on")] = None,
) -> None:
    """Run this node's supervisor: accepts signed jobs and queues them."""
    import redis
    import uvicorn

    from supervisor.allowlist import Allowlist
    from supervisor.app import create_app
    from supervisor.service import Supervisor
    from zeronode import logs
    from zeronode.node import node_identity

    settings = node_settings(config, host=host, port=port)
    logs.setup()
    try:
        identity = node_identity(settings)
    except (KeyFileError, OSError) as exc:
        fail(f"cannot load the node key: {exc}")
    connection = redis.Redis.from_url(settings.redis_url)
    service = Supervisor(settings, connection, identity, Allowlist(settings.authorized_keys_path))
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
    from zeronode import logs

    settings = node_settings(config)
    logs.setup()
    if burst:
        count = run_runner(settings, burst=True)
        out.print(f"ran {count} jobs", highlight=False)
        return
    Pool(settings, pool).run()


@app.command()
def ledger(
    config: Annotated[Path | None, typer.Option("--config", help="Ledger settings file (TOML)")] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on")] = None,
) -> None:
    """Run the ledger: nodes, their uptime, users and their rights (HTTP, default 127.0.0.1:8400)."""
    import sqlalchemy
    import uvicorn

    from ledger.app import create_app
    from ledger.database import Database
    from ledger.schema import SchemaTooNew
    from ledger.settings import LedgerSettings
    from zeronode import logs
    from zeronode.settings import SettingsError

    try:
        settings = LedgerSettings.load(config, **{k: v for k, v in {"host": host, "port": port}.items() if v is not None})
    except SettingsError as exc:
        fail(str(exc))
    logs.setup()
    database = sqlalchemy.make_url(settings.database).render_as_string(hide_password=True)
    try:
        db = Database(settings.database)
        version = db.migrate()
    except SchemaTooNew as exc:
        fail(str(exc))
    except (sqlalchemy.exc.SQLAlchemyError, OSError) as exc:
        fail(f"cannot open the ledger database {database}: {str(getattr(exc, 'orig', None) or exc).splitlines()[0]}")
    logging.getLogger("zeronode.ledger").info(
        "ledger starting", extra={"database": database, "schema": version, "host": settings.host, "port": settings.port}
    )
    uvicorn.run(create_app(settings, db), host=settings.host, port=settings.port, log_config=None, access_log=False)


@app.command()
def identity(
    config: ConfigOption = None,
    ledger_url: Annotated[str | None, typer.Option("--ledger", help="The ledger's URL (default: ledger_url in the settings)")] = None,
) -> None:
    """Run this node's identity manager: register it in the ledger, then report its uptime (at boot, for good)."""
    from zeronode import identity as identity_manager, logs

    settings = node_settings(config, ledger_url=ledger_url)
    if not settings.ledger_url:
        fail("no ledger to report to: set ledger_url in the settings (or ZERONODE_LEDGER_URL, or --ledger)")
    logs.setup()
    try:
        identity_manager.run(settings)
    except identity_manager.AlreadyRunning as exc:
        fail(str(exc))
    except (KeyFileError, OSError) as exc:
        fail(f"cannot load the node key: {exc}")


users_app = typer.Typer(help="Users of a ledger and their rights.", no_args_is_help=True)
app.add_typer(users_app, name="users")
LedgerOption = Annotated[str, typer.Option("--ledger", envvar="ZERONODE_LEDGER_URL", help="The ledger's URL")]
# An option, not an argument: a base64url key may begin with "-", which an argument would take for an option.
UserKeyOption = Annotated[str, typer.Option("--public-key", help="The user's public key")]


@users_app.command("add")
def users_add(
    public_key: UserKeyOption,
    name: Annotated[str, typer.Option(help="Who the user is")],
    key: Annotated[Path, typer.Option("--key", help="Private key file of an admin of the ledger")],
    ledger_url: LedgerOption,
    role: Annotated[list[str], typer.Option("--role", help="admin or deployer (repeatable)")] = [],  # noqa: B006
    node: Annotated[list[str], typer.Option("--node", help="A node id the user may deploy on (repeatable)")] = [],  # noqa: B006
    farm: Annotated[list[str], typer.Option("--farm", help="A farm the user may deploy on (repeatable)")] = [],  # noqa: B006
) -> None:
    """Create a user in the ledger, or replace their name and rights; print the user."""
    from pydantic import ValidationError

    from ledger.models import NewUser
    from ledger.refusals import problems
    from zeronode.ledger_client import LedgerClient, LedgerError

    try:
        user = NewUser.model_validate({"public_key": public_key, "name": name, "roles": role, "nodes": node, "farms": farm})
    except ValidationError as exc:
        fail(problems(exc.errors()))
    with LedgerClient(ledger_url, load_key(key)) as client:
        try:
            saved = client.create_user(user)
        except LedgerError as exc:
            fail(str(exc))
    print(saved.model_dump_json(indent=2))


@users_app.command("show")
def users_show(
    public_key: UserKeyOption,
    ledger_url: LedgerOption,
    node: Annotated[str | None, typer.Option(help="Also say whether the user may deploy on this node")] = None,
    token: Annotated[str | None, typer.Option(envvar="ZERONODE_LEDGER_TOKEN", help="The ledger's read token")] = None,
) -> None:
    """Print a user's roles and rights as the ledger has them."""
    from zeronode.ledger_client import LedgerClient, LedgerError

    with LedgerClient(ledger_url, token=token) as client:
        try:
            user = client.user(public_key, node)
        except LedgerError as exc:
            fail(str(exc))
    print(user.model_dump_json(indent=2))


from zeronode import cli_cluster  # noqa: E402,F401  (its commands register on `app`)

if __name__ == "__main__":
    app()
