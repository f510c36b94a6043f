"""How deployments look in a terminal: a table per deployment, and live progress until it ends."""

from __future__ import annotations

import json
from contextlib import nullcontext
from typing import Any

from rich.live import Live
from rich.table import Table
from rich.text import Text

from zeronode.cli.common import fail, out

MAX_ROWS = 50  # more nodes than this: live progress shows counts, the final table every node
STATE_STYLE = {
    "succeeded": "green", "failed": "red", "canceled": "yellow", "running": "cyan", "dispatched": "cyan", "moved": "dim",
}


def deployment_table(view: dict[str, Any], source_name: str | None = None) -> Table:
    """Its status and counts, then a row a node; a script's error says where (`deploy.rhai line 3` when the
    script's file is known)."""
    counts = ", ".join(f"{n} {state}" for state, n in sorted(view["counts"].items()))
    table = Table(title=Text(f"deployment {view['id']}: {view['status']} ({counts})"), title_justify="left")
    table.add_column("node", no_wrap=True, min_width=26)  # whole, at any width: it is pasted into --target
    for column in ("state", "result / error", "attempts"):
        table.add_column(column)
    moves = {move["node"]: move for move in view.get("history") or []}
    for task in view.get("tasks") or []:
        style = STATE_STYLE.get(task["state"], "")
        if task["state"] == "moved" and task["node"] in moves:
            move = moves[task["node"]]
            outcome = f"to {move['to']}: {move['reason']}, {move['message']}"
        elif task.get("error"):
            line = f" (line {task['error']['line']})" if task["error"].get("line") else ""
            outcome = f"{task['error']['reason']}: {task['error']['message']}{line}"
        else:
            outcome = "" if task.get("result") is None else json.dumps(task["result"], separators=(",", ":"))
        # What came from a script or a node is text, never markup.
        table.add_row(Text(task["node"]), Text(task["state"], style=style), Text(outcome), str(task["attempts"]))
    return table


def follow(coord_url: str, deployment_id: str, targets: int, key, *, timeout: float | None = None, live: bool = True,
           source_name: str | None = None) -> dict[str, Any] | None:
    """Progress until the deployment ends, live (per node when there are few) or quietly; its final view, or None
    when `timeout` seconds passed first. `key` signs the reads: the deployment's signer's, or a coord admin's."""
    from zeronode.api.errors import ServiceError
    from zeronode.client.coord import CoordClient

    view = None
    with CoordClient(coord_url, key=key) as client, Live(console=out, refresh_per_second=8, transient=False) if live else nullcontext() as shown:
        try:
            for view in client.follow(deployment_id, timeout=timeout, tasks=live and targets <= MAX_ROWS):
                if shown is not None:
                    shown.update(deployment_table(view, source_name))
        except ServiceError as exc:
            if exc.reason == "timed_out":
                return None
            fail(str(exc))
    return view
