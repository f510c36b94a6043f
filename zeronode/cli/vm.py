"""A node's VMs, as their owners see them: `zeronode vm logs NODE VM [--follow]`, `zeronode vm events NODE VM`.

Both ask the node's supervisor (found through the ledger) with a request signed
by `--key`: a VM's console and events are its owner's and the node admins'.
A guest's console is the guest's text: it is printed as it is, with terminal
controls escaped (a guest must not be able to move the cursor, retitle the
terminal or hide lines), never read as markup.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from zeronode.cli.common import DEFAULT_LEDGER_URL, JsonOption, LedgerOption, ask_supervisor, fail, out, print_json

app = typer.Typer(help="A node's VMs: their consoles and events.", no_args_is_help=True)

KeyOption = Annotated[Path, typer.Option("--key", help="Your private key file: your VMs, or a node admin's all")]
# C0 controls but tab and newline, DEL and the C1 controls: what a terminal would act on.
CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` with every terminal control written out as \\xNN (a carriage return too)."""
    return CONTROLS.sub(lambda found: f"\\x{ord(found.group()):02x}", text)


@app.command()
def logs(
    node: Annotated[str, typer.Argument(help="The node's id")],
    vm: Annotated[str, typer.Argument(help="The VM's name")],
    key: KeyOption,
    ledger_url: LedgerOption = DEFAULT_LEDGER_URL,
    lines: Annotated[int, typer.Option(help="How many of the last lines", min=1, max=1000)] = 100,
    boot: Annotated[int, typer.Option(help="0: this boot; 1, 2: the boots before", min=0, max=2)] = 0,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing what the guest writes (Ctrl-C ends)")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between reads with --follow", min=0.1)] = 0.5,
) -> None:
    """Print a VM's serial console: the last lines, then, with --follow, what comes."""
    path = f"/v1/vms/{_vm_name(vm)}/console"
    answer = ask_supervisor(node, ledger_url, key, path, {"lines": lines, "boot": boot})
    _write(str(answer.get("text", "")) + "\n")
    if not follow:
        return
    # Where the console ended when those lines were read, and in which file (a new boot's is another).
    position = {"offset": answer.get("offset") or 0, **({"file": answer["file"]} if answer.get("file") else {})}
    try:
        while True:
            time.sleep(interval)
            answer = ask_supervisor(node, ledger_url, key, path, position)
            position = {"offset": int(answer.get("offset") or 0), "file": int(answer.get("file") or 0)}
            _write(str(answer.get("text", "")))
    except KeyboardInterrupt:
        pass


@app.command()
def events(
    node: Annotated[str, typer.Argument(help="The node's id")],
    vm: Annotated[str, typer.Argument(help="The VM's name")],
    key: KeyOption,
    ledger_url: LedgerOption = DEFAULT_LEDGER_URL,
    as_json: JsonOption = False,
) -> None:
    """What happened to a VM: created, started, stopped, exited, crashed, restarted, gave_up..."""
    answer = ask_supervisor(node, ledger_url, key, f"/v1/vms/{_vm_name(vm)}/events")
    if as_json:
        print_json([event for event in answer.get("events", []) if isinstance(event, dict)])
        return
    table = Table(title=Text(f"events of {vm} on {node}"), title_justify="left")
    for column in ("at", "event", "details"):
        table.add_column(column)
    for event in answer.get("events", []):
        if not isinstance(event, dict):
            continue
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(event.get("at", 0))))
        details = ", ".join(f"{k}={v}" for k, v in event.items() if k not in ("at", "event"))
        table.add_row(at, Text(printable(str(event.get("event")))), Text(printable(details)))  # text, never markup
    out.print(table)


def _vm_name(name: str) -> str:
    """A VM name, checked before it goes into a URL's path."""
    from sal.hypervisor.base import InvalidVmName, check_vm_name

    try:
        return check_vm_name(name)
    except InvalidVmName as exc:
        fail(str(exc))


def _write(text: str) -> None:
    sys.stdout.write(printable(text))
    sys.stdout.flush()
