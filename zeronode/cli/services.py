"""The control plane's services: `zeronode ledger` and `zeronode coord`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from zeronode.cli.common import fail, start_logs

app = typer.Typer()


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
    from zeronode.settings import SettingsError

    try:
        settings = LedgerSettings.load(config, **{k: v for k, v in {"host": host, "port": port}.items() if v is not None})
    except SettingsError as exc:
        fail(str(exc))
    start_logs()
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
    from zeronode.node.identity import load_or_create_key
    from zeronode.protocol.errors import KeyFileError
    from zeronode.settings import SettingsError

    overrides = {"ledger_url": ledger_url, "redis_url": redis_url, "host": host, "port": port}
    try:
        settings = CoordSettings.load(config, **{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:
        fail(str(exc))
    start_logs()
    try:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        key = load_or_create_key(settings.key_path)
    except (KeyFileError, OSError) as exc:
        fail(f"cannot load the coordinator key: {exc}")
    app_ = create_app(settings, connect(settings.redis_url), key)
    uvicorn.run(app_, host=settings.host, port=settings.port, log_config=None, access_log=False)
