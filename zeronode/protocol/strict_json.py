"""Which JSON zeronode accepts on its signed and API paths, and the checks that hold to it.

A text is read once, by pydantic-core's parser into a strict model; that one
parse gives the values that are verified and the values that are acted on.
Beyond being JSON (RFC 8259), a text must be I-JSON-like (RFC 7493):

- no object repeats a key, at any depth. `{"script": "a", "script": "b"}`
  means "b" to one parser and "a" to another: a parser differential between a
  hop that checks and a hop that forwards. Refused as `invalid_json`.
- nesting is at most MAX_DEPTH levels, pydantic-core's own bound (its parser
  refuses deeper text before building anything). Refused as `invalid_json`.
- integers are integers: the models are strict, so `1.0`, `1e0` and `true`
  are not 1 (pydantic's `Literal[1]` compares by equality and would take them:
  integer fields are typed `int`, never an integer Literal).

pydantic-core has no option to refuse duplicate keys (its parser keeps the
last value), so `unique_keys` is a gate run after a successful parse: the C
`json` scanner with a pairs hook that compares each object's key count with
its distinct keys and builds nothing. Envelopes, the hot path, avoid even that:
a text that is byte for byte the parsed envelope's canonical JSON (which verify
writes anyway) has no key twice, and any other text takes an exact count
(zeronode.protocol.envelope._check_unique_keys).
"""

from __future__ import annotations

import json

from zeronode.protocol.errors import InvalidJSON

MAX_DEPTH = 200  # pydantic-core's parser: deeper text is refused (json_invalid: "recursion limit exceeded")


def _unique(pairs: list[tuple[str, object]]) -> None:
    if len(pairs) > 1 and len({key for key, _ in pairs}) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidJSON(f"duplicate key {key[:64]!r} in a JSON object: each key may appear once")
            seen.add(key)
    # Nothing is built: the values that count are the model's, from pydantic's one parse.


def _ignore(_text: str) -> None:
    return None


_GATE = json.JSONDecoder(object_pairs_hook=_unique, parse_int=_ignore, parse_float=_ignore, parse_constant=_ignore)


def unique_keys(raw: bytes | str) -> None:
    """Raise InvalidJSON if an object in `raw` repeats a key. `raw` has already been parsed (so it is
    JSON, nested at most MAX_DEPTH levels): this pass decides nothing else, and keeps no value."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes | bytearray | memoryview) else raw
        _GATE.decode(text)
    except InvalidJSON:
        raise
    except RecursionError:
        raise InvalidJSON(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # UnicodeDecodeError, JSONDecodeError: what pydantic's parser took, this one refuses
        raise InvalidJSON(f"not JSON: {exc}") from None


def parse_error(message: str) -> InvalidJSON:
    """pydantic-core's json_invalid message as the InvalidJSON it stands for (too deep, or not JSON)."""
    if "recursion limit exceeded" in message:
        return InvalidJSON(f"JSON nested deeper than {MAX_DEPTH} levels ({message})")
    return InvalidJSON(f"not JSON: {message}")
