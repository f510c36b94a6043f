"""`python -m zeronode.cli`: the same as the `zeronode` command."""

from zeronode.cli import app

app()
