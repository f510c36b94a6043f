"""Type stubs of the native core, `rhai._rhai`."""

from collections.abc import Callable
from typing import Any, final

__version__: str

Value = int | float | bool | str | bytes | None | list[Any] | dict[str, Any]
"""What crosses between Python and Rhai: INT, FLOAT, bool, string, BLOB, (), array, object map."""

class RhaiError(Exception):
    """Any error raised by the Rhai engine."""

    message: str
    """The error without its position."""
    line: int | None
    column: int | None
    source_name: str | None
    """The `name` given to `Engine.compile`, if any."""

class ParseError(RhaiError):
    """The script does not compile."""

class EvalError(RhaiError):
    """The script failed while running; a Python callback's exception is its `__cause__`."""

class Cancelled(EvalError):
    """The script was stopped through a CancelToken."""

class LimitError(RhaiError):
    """The script exceeded a safety limit."""

    limit: str
    """Which one: max_operations, max_call_levels, max_expr_depth, max_string_size,
    max_array_size, max_map_size, max_variables, max_functions, max_modules, timeout,
    max_memory (the script held more bytes at once than allowed), max_value_depth
    (it nested a value deeper than allowed), or result_depth (a returned value nested
    deeper than 256 levels, counting closures' captured values)."""

class Timeout(LimitError):
    """The script ran longer than its timeout."""

@final
class CancelToken:
    """Lets any thread stop the scripts it was given to."""

    def __init__(self) -> None: ...
    def cancel(self) -> None: ...
    @property
    def cancelled(self) -> bool: ...

@final
class AST:
    """A compiled script: immutable, reusable, safe to share between threads."""

    @property
    def name(self) -> str | None: ...

class Engine:
    def __init__(
        self,
        *,
        max_operations: int | None = None,
        max_call_levels: int | None = None,
        max_expr_depth: int | None = None,
        max_function_expr_depth: int | None = None,
        max_string_size: int | None = None,
        max_array_size: int | None = None,
        max_map_size: int | None = None,
        max_variables: int | None = None,
        max_functions: int | None = None,
        max_modules: int | None = None,
        max_memory: int | None = None,
        max_value_depth: int | None = None,
        timeout: float | None = None,
        on_print: Callable[[str], object] | None = None,
        on_debug: Callable[[str, int | None], object] | None = None,
    ) -> None:
        """Every limit is bounded by default (see `limits`); 0 is refused.
        `max_memory` is the bytes one `eval` may hold at once (default 256 MiB), counted
        at the allocator; `max_value_depth` how deeply a value may nest (default 256, at
        most 1024). `timeout` is the default wall-clock limit in seconds for `eval`.
        Without `on_print`/`on_debug`, output goes to the `rhai` logger."""

    @property
    def limits(self) -> dict[str, int]: ...
    @property
    def timeout(self) -> float | None: ...
    def compile(self, source: str, name: str | None = None) -> AST:
        """Raises ParseError (or LimitError for max_expr_depth, max_functions and oversized literals)."""

    def eval(
        self,
        script: str | AST,
        scope: dict[str, Value] | None = None,
        *,
        timeout: float | None = None,
        cancel: CancelToken | None = None,
        on_print: Callable[[str], object] | None = None,
        on_debug: Callable[[str, int | None], object] | None = None,
    ) -> Value:
        """Run a script with the GIL released and return its value."""

    def register_callable(self, name: str, callable: Callable[..., Any], arities: list[int]) -> None: ...

def _panic_inside_guard(message: str) -> None: ...
