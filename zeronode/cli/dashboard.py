"""`zeronode dashboard token`: a read token for coord's fleet dashboard (coord.dashboard.auth).

The token is printed once (or written to a 0600 file) and coord's settings get
only its hash: whoever holds the token reads what a coord admin reads, in a
browser, and changes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from zeronode.cli.common import fail, out

app = typer.Typer(help="coord's fleet dashboard", no_args_is_help=True)


@app.command()
def token(
    token_file: Annotated[Path | None, typer.Option(
        "--token-file", help="Write the token to this new file (0600) instead of printing it")] = None,
) -> None:
    """Make a dashboard read token, and print the line that lets coord accept it."""
    from coord.dashboard.auth import new_token, token_hash
    from zeronode.files import write_atomic

    secret = new_token()
    if token_file is not None:
        if token_file.exists():
            fail(f"{token_file} exists: give a new file")
        try:
            write_atomic(token_file, secret + "\n")
        except OSError as exc:
            fail(f"cannot write {token_file}: {exc.strerror or exc}")
        out.print(Text(f"token written to {token_file}"))
    else:
        out.print(Text(f"token: {secret}"))
    hashed = token_hash(secret)
    out.print(Text(f'add its hash to coord\'s settings, then restart coord:\n  dashboard_tokens = ["{hashed}"]\n'
                   f"(or ZERONODE_COORD_DASHBOARD_TOKENS='[\"{hashed}\"]'); sign in at COORD_URL/dashboard/ with the token"))
