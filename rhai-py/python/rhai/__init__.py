"""Rhai, the embedded scripting language, for Python.

    >>> import rhai
    >>> rhai.Engine().eval("40 + 2")
    42

The engine is Rust (the `rhai` crate behind PyO3); this module adds only the
Python-side conveniences: `Engine.register` as a call or a decorator, with the
accepted argument counts read from the function's signature.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any, TypeVar, overload

from rhai._rhai import (
    AST,
    CancelToken,
    Cancelled,
    EvalError,
    LimitError,
    ParseError,
    RhaiError,
    Timeout,
    __version__,
)
from rhai._rhai import Engine as _NativeEngine

__all__ = [
    "AST",
    "CancelToken",
    "Cancelled",
    "Engine",
    "EvalError",
    "LimitError",
    "ParseError",
    "RhaiError",
    "Timeout",
    "__version__",
]

F = TypeVar("F", bound=Callable[..., Any])

# A Python function with *args is registered for 0..MAX_VARIADIC_ARITY arguments.
MAX_VARIADIC_ARITY = 12
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _arities(fn: Callable[..., Any]) -> list[int]:
    """The positional argument counts `fn` accepts, from its signature."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"cannot read the signature of {fn!r}; pass arity= explicitly") from exc
    required = optional = 0
    variadic = False
    for parameter in signature.parameters.values():
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            if parameter.default is parameter.empty:
                required += 1
            else:
                optional += 1
        elif parameter.kind is parameter.VAR_POSITIONAL:
            variadic = True
        elif parameter.kind is parameter.KEYWORD_ONLY and parameter.default is parameter.empty:
            raise TypeError(f"{fn!r} has a required keyword-only argument {parameter.name!r}; Rhai passes positional arguments only")
    highest = max(MAX_VARIADIC_ARITY, required) if variadic else required + optional
    return list(range(required, highest + 1))


class Engine(_NativeEngine):
    """A Rhai engine with safety limits; see `rhai._rhai.Engine` for the arguments."""

    @overload
    def register(self, name: str, fn: F, /, *, arity: int | None = None) -> F: ...
    @overload
    def register(self, name: str, /, *, arity: int | None = None) -> Callable[[F], F]: ...
    @overload
    def register(self, fn: F, /, *, arity: int | None = None) -> F: ...

    def register(self, name_or_fn: Any, fn: Any = None, /, *, arity: int | None = None) -> Any:
        """Make a Python callable a Rhai function.

        engine.register("add", lambda a, b: a + b)
        @engine.register            # named after the function
        @engine.register("sleep")   # named explicitly
        """
        if callable(name_or_fn) and fn is None:
            return self._register(name_or_fn.__name__, name_or_fn, arity)
        if not isinstance(name_or_fn, str):
            raise TypeError("register() takes a name (str) and/or a callable")
        if fn is None:
            return lambda f: self._register(name_or_fn, f, arity)
        return self._register(name_or_fn, fn, arity)

    def _register(self, name: str, fn: F, arity: int | None) -> F:
        if not _IDENTIFIER.match(name):
            raise ValueError(f"{name!r} is not a valid Rhai function name")
        if arity is not None and arity < 0:
            raise ValueError("arity must be >= 0")
        self.register_callable(name, fn, [arity] if arity is not None else _arities(fn))
        return fn
