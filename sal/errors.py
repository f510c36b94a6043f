"""What every SAL shares: its error type, and the checking of map arguments from scripts.

SalError is a ZeronodeError, so the project has one error tree; each SAL's own
errors (StorageError, NetworkError, HypervisorError, ...) derive from it, and
callers that tolerate "the SAL refused" catch SalError alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from zeronode.errors import ZeronodeError

Driver = TypeVar("Driver")


class SalError(ZeronodeError):
    """A SAL refused or failed an operation; the script sees its message and line."""


class JobInterrupted(SalError):
    """A long SAL call (an image's download, say) stopped because its job was cancelled or ran out of time.
    The runner records the job as cancelled or timed out, as when the script itself is stopped."""


def spec(function: str, arguments: Any, *, required: dict[str, type], optional: dict[str, type] | None = None) -> dict:
    """Check a script's argument map: known keys only, each of its type."""
    optional = optional or {}
    if not isinstance(arguments, dict):
        raise SalError(f"{function} takes a map, e.g. {function}(#{{ {', '.join(f'{k}: ...' for k in required)} }})")
    if unknown := set(arguments) - set(required) - set(optional):
        raise SalError(f"{function}: unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted({**required, **optional}))})")
    for key, kind in {**required, **optional}.items():
        if key not in arguments:
            if key in required:
                raise SalError(f"{function}: missing key {key!r}")
            continue
        value = arguments[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise SalError(f"{function}: {key!r} must be {kind.__name__}, got {type(value).__name__}")
    return arguments


def spec_named(function: str, name_or_arguments: Any, *, optional: dict[str, type] | None = None) -> dict:
    """spec() for a function called with a name alone or a map of it and options: f("x"), f(#{ name: "x", ... })."""
    if isinstance(name_or_arguments, str):
        name_or_arguments = {"name": name_or_arguments}
    return spec(function, name_or_arguments, required={"name": str}, optional=optional)


def configured(driver: Driver | None, missing: str) -> Callable[[], Driver]:
    """The getter a SAL's script functions use for their driver: it fails with `missing` when the node has none."""

    def get() -> Driver:
        if driver is None:
            raise SalError(missing)
        return driver

    return get
