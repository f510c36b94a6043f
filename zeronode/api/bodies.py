"""Reading request bodies: bounded while they stream in, parsed strictly, and batches item by item.

Strict (zeronode.protocol.strict_json): one parse into a strict model, no key
twice in an object, nesting bounded, integers that are integers. A refusal is
400 invalid_json when the text is not such JSON, 422 malformed when it does not
fit the model.

A batch (a JSON array of items, maybe under one member of an object) is cut
into its items' texts without parsing them (`batch_items`): each item is then
parsed, and refused, on its own, whatever another item holds: nesting 100,000
deep, a duplicate key, a wrong type, bad JSON inside it. Only a batch whose own
shape is broken (not an array, an array never closed, an empty item, too many
items) is refused whole.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ConfigDict, RootModel, ValidationError, create_model

from zeronode.api.errors import Refused, problems
from zeronode.protocol import strict_json
from zeronode.protocol.errors import InvalidJSON

Model = TypeVar("Model", bound=BaseModel)


async def read_bounded(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it grows past `limit` bytes: never read whole first."""
    too_large = Refused(413, "too_large", f"request body over {limit} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def parse_body(model: type[Model], raw: bytes | str) -> Model:
    """`raw` as a `model`, or Refused: 400 invalid_json when it is not JSON (or repeats a key in an object,
    or nests deeper than strict_json.MAX_DEPTH), 422 malformed when it does not fit."""
    try:
        parsed = model.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        invalid = next((e for e in errors if e["type"] == "json_invalid"), None)
        if invalid is not None:
            raise Refused(400, "invalid_json", f"body is not JSON: {strict_json.parse_error(invalid['msg'])}") from None
        raise Refused(422, "malformed", problems(errors)) from None
    try:
        strict_json.unique_keys(raw)
    except InvalidJSON as exc:
        raise Refused(400, "invalid_json", f"body is not JSON: {exc}") from None
    return parsed


# -- batches -------------------------------------------------------------------

_WS = b" \t\r\n"
# A JSON string, whole (possessive: no backtracking, whatever its length).
_STRING = rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"'


def _nested(levels: int) -> bytes:
    """Text with brackets balanced at most `levels` deep, strings skipped whole (a regular language)."""
    inner = b""
    for _ in range(levels):
        inner = rb'(?:[^"\[\]{}]++|' + _STRING + (rb"|[\[{]" + inner + rb"[\]}]" if inner else b"") + rb")*+"
    return inner


# One item of the array, up to the comma or ']' after it, in one match: any item nested at most
# _FAST_DEPTH deep (an envelope is 3 deep, an uptime report 2). A deeper item stops it at a bracket.
_FAST_DEPTH = 6
_ITEM = re.compile(
    rb'(?:[^"\[\]{},]++|' + _STRING + rb"|[\[{]" + _nested(_FAST_DEPTH - 1) + rb"[\]}])*+", re.DOTALL
)
# Inside a deeper item: between two strings, only the brackets count (a run of them, in C).
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_OPENERS = re.compile(rb"[\[{]++")
_CLOSERS = re.compile(rb"[\]}]++")
_STRING_AT = re.compile(_STRING, re.DOTALL)
# A deeper item costs a step for each string in it and each run of brackets between two strings:
# a body built to take many (["",["",["",...) is refused whole rather than take seconds. An item
# nested 100,000 deep without strings takes two.
MAX_STEPS = 100_000
_OPEN = frozenset(b"[{")
_COMMA, _CLOSE_ARRAY, _QUOTE = ord(","), ord("]"), ord('"')


def _broken(why: str, position: int) -> Refused:
    return Refused(400, "invalid_json", f"the batch is not a JSON array of items: {why} at byte {position}")


def split_array(raw: bytes, position: int, limit: int) -> tuple[list[bytes], int]:
    """The texts of the items of the JSON array opening at raw[position] ('['), and the position after
    its closing ']'. Items are delimited by the brackets and commas outside strings, counted rather
    than parsed (no recursion: an item of any depth costs its length, never the stack); what an item
    holds is for its own parser to judge. Refused: 400 invalid_json when the array is not closed or has
    an empty item, 422 too_many past `limit` items, 413 too_large past MAX_STEPS steps."""
    items: list[bytes] = []
    position += 1
    start, steps, end = position, 0, len(raw)
    while True:
        position = _ITEM.match(raw, position).end()
        if position >= end:
            raise _broken("the array is not closed", position)
        char = raw[position]
        if char == _COMMA or char == _CLOSE_ARRAY:
            item = raw[start:position]
            if item.strip(_WS):
                items.append(item)
            elif char == _COMMA or items:
                raise _broken("an empty item", position)
            if len(items) > limit:
                raise Refused(422, "too_many", f"at most {limit} items in a batch")
            if char == _CLOSE_ARRAY:
                return items, position + 1
            start = position = position + 1
        elif char in _OPEN:  # an item nested deeper than _ITEM takes: step through this bracket
            position, steps = _past_bracket(raw, position, steps)
        elif char == _QUOTE:  # no string pattern matched it
            raise _broken("a string is not closed", position)
        else:
            raise _broken("the array is closed with '}'", position)


def _nth_bracket(raw: bytes, start: int, end: int, count: int) -> int:
    """The position just after the `count`-th bracket of raw[start:end] (which has at least that many).
    A bisection that counts only the half it looks at, in C: a million brackets cost two passes."""

    def brackets(begin: int, stop: int) -> int:
        return sum(raw.count(bracket, begin, stop) for bracket in (b"[", b"]", b"{", b"}"))

    low, below, high = start, 0, end  # `below`: the brackets in raw[start:low], fewer than `count`
    while high - low > 1:
        middle = (low + high) // 2
        found = below + brackets(low, middle)
        if found >= count:
            high = middle
        else:
            low, below = middle, found
    return high


def _past_bracket(raw: bytes, position: int, steps: int) -> tuple[int, int]:
    """The position after the bracket that closes the one at `position`, and the steps taken so far."""
    depth, end = 0, len(raw)
    while True:
        quote = raw.find(b'"', position)
        segment_end = end if quote < 0 else quote
        brackets = raw[position:segment_end].translate(None, _NOT_BRACKETS)
        closers = brackets.count(b"]") + brackets.count(b"}")
        if closers < depth:  # the item goes on past this segment
            depth += len(brackets) - 2 * closers
        else:
            index = 0
            while index < len(brackets):
                steps += 1
                if steps > MAX_STEPS:
                    raise _too_intricate()
                if brackets[index] in _OPEN:
                    run = _OPENERS.match(brackets, index).end()
                    depth += run - index
                else:
                    run = _CLOSERS.match(brackets, index).end()
                    if run - index >= depth:  # the depth-th closer of the run closes the item
                        return _nth_bracket(raw, position, segment_end, index + depth), steps
                    depth -= run - index
                index = run
        if quote < 0:
            raise _broken("the array is not closed", end)
        string = _STRING_AT.match(raw, quote)
        if string is None:
            raise _broken("a string is not closed", quote)
        position = string.end()
        steps += 1
        if steps > MAX_STEPS:
            raise _too_intricate()


def _too_intricate() -> Refused:
    return Refused(413, "too_large", f"the batch takes more than {MAX_STEPS} steps to cut into items")


def batch_items(raw: bytes, *, limit: int, member: str | None = None) -> list[bytes]:
    """The items' texts of a batch: the JSON array `raw` is, or (with `member`) the array that is the
    only member of the object `raw` is, `{"<member>": [...]}`. Any other shape is refused whole, as
    parse_body refuses it (400 invalid_json, 422 malformed), or 422 too_many past `limit` items."""
    shape = _shape(member)
    opened = shape.opening.match(raw)
    if opened is not None:
        items, after = split_array(raw, opened.end(), limit)
        if shape.closing.match(raw, after):
            return items
    # Not the plain shape: a body that is not JSON, or not that shape, or one that spells it otherwise
    # (an escaped member name, say). The whole body decides, parsed as any body is.
    parsed = parse_body(shape.model, raw)
    values = parsed.root if member is None else getattr(parsed, member)
    if len(values) > limit:
        raise Refused(422, "too_many", f"at most {limit} items in a batch")
    # Items re-spelled from a parse that refused duplicate keys and bounded the nesting.
    return [json.dumps(value).encode() for value in values]


@dataclass(frozen=True)
class _Shape:
    opening: re.Pattern[bytes]  # up to the array's '['
    closing: re.Pattern[bytes]  # from after its ']' to the end
    model: type[BaseModel]  # the whole shape, for a body that is not plainly it


@functools.cache
def _shape(member: str | None) -> _Shape:
    if member is None:
        return _Shape(re.compile(rb"[ \t\r\n]*+(?=\[)"), re.compile(rb"[ \t\r\n]*+\Z"), RootModel[list[Any]])
    name = re.escape(member.encode())
    return _Shape(
        re.compile(rb'[ \t\r\n]*+\{[ \t\r\n]*+"' + name + rb'"[ \t\r\n]*+:[ \t\r\n]*+(?=\[)'),
        re.compile(rb"[ \t\r\n]*+\}[ \t\r\n]*+\Z"),
        create_model(
            f"Batch_{member}", __config__=ConfigDict(strict=True, extra="forbid"), **{member: (list[Any], ...)}
        ),
    )
