"""The signed envelope: a Rhai script, its targets and terms, and signatures over them.

What is signed (version 1), documented in docs/protocol.md:

    b"zeronode-envelope-v1\\n" + canonical JSON of every field except `signatures`

where canonical JSON is RFC 8785 (JCS) for the values an envelope can hold:
keys sorted, no white space, UTF-8, integers only. The model's fields are
declared in alphabetical order and `env` is sorted before signing, so the
model's own compact JSON dump *is* that canonical form. That is the cheap path. An
import-time check and a property test hold it to the reference definition,
`json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`.

The wire form is read strictly (zeronode.protocol.strict_json), in one parse
whose values are both what the signatures are checked over and what is run:
no duplicate key anywhere, nesting bounded, integers that are integers (so
`"version": 1.0`, `1e0` or `true` is not version 1). `Envelope.canonical_json`
is the verified envelope's one spelling, for a hop that stores or forwards it.
"""

from __future__ import annotations

import os
import time
import uuid
import warnings
from typing import Annotated, Any, Literal, NamedTuple

import nacl.signing
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, create_model, field_validator
from pydantic_core import PydanticSerializationError

from zeronode.protocol import keys, strict_json
from zeronode.protocol.errors import (
    BadSignature,
    Expired,
    MalformedEnvelope,
    MalformedKey,
    NotYetValid,
    PolicyNotMet,
    ScriptTooLarge,
    UnknownAlgorithm,
    UnsupportedVersion,
    VerificationError,
)

DOMAIN = b"zeronode-envelope-v1\n"
VERSION = 1
ALGORITHM = "ed25519"

PublicKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{43}$")]
# The canonical UUID spelling only: a second spelling would sign differently.
EnvelopeId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
Nonce = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{16,64}$")]
NodeName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
EnvValue = Annotated[str, StringConstraints(max_length=4096)]
UnixTime = Annotated[int, Field(ge=0, le=2**53)]  # JCS (and JavaScript) integers are exact up to 2**53
# An envelope's keys and signatures: their length here, their spelling where they are decoded, strictly
# (keys.b64url_decode: verify refuses any but the canonical one, as MalformedKey). A pattern here would
# check them twice, and three patterns are a sixth of the parse.
KeyText = Annotated[str, StringConstraints(min_length=43, max_length=43)]
SignatureText = Annotated[str, StringConstraints(min_length=86, max_length=86)]
FarmName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
# "key=value", as nodes declare their labels (NodeSettings.labels): no colon, so _check_unique_keys counts right.
Label = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}=[A-Za-z0-9_.-]{0,63}$")]
MAX_TARGETS = 10_000


class VerifyOptions(BaseModel):
    """What a verifier tolerates; every hop may set its own."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    skew: float = Field(300.0, ge=0, description="clock skew tolerated, seconds")
    max_script_bytes: int = Field(256 * 1024, gt=0, description="largest script, UTF-8 bytes")
    max_ttl: int = Field(7 * 86400, gt=0, description="longest validity window, seconds")


# cache_strings off: pydantic-core's cache of parsed strings pays for repeats, and an envelope's
# values (ids, nonces, signatures, scripts) never repeat; without it a parse is 8% faster.
_MODEL = ConfigDict(strict=True, extra="forbid", frozen=True, cache_strings=False)


class Signature(BaseModel):
    model_config = _MODEL

    public_key: KeyText
    signature: SignatureText


class Selector(BaseModel):
    """Which nodes a deployment wants, when the client leaves the choice to coord (docs/protocol.md, "Placement").

    Coord picks `count` nodes that match (besides the envelope's own `targets`, if any) and gives each a
    placement ticket (zeronode.protocol.ticket) that a node checks in place of finding itself in `targets`.
    Memory and disk are what a node must have free. `kind` "service" asks coord to keep the deployment on
    `count` nodes: when one stays offline, or is drained, its share moves to another that matches.
    """

    model_config = _MODEL

    # Alphabetical order, as the envelope's (canonical JSON); labels are sorted and distinct (checked).
    count: Annotated[int, Field(ge=1, le=MAX_TARGETS)]
    farms: Annotated[list[FarmName], Field(max_length=64)] = []
    kind: Literal["job", "service"] = "job"
    labels: Annotated[list[Label], Field(max_length=32)] = []
    max_per_farm: Annotated[int, Field(ge=1, le=MAX_TARGETS)] | None = None
    min_disk_gib: Annotated[int, Field(ge=0, le=2**40)] = 0
    min_memory_mib: Annotated[int, Field(ge=0, le=2**40)] = 0
    min_vcpus: Annotated[int, Field(ge=0, le=1_000_000)] = 0
    strategy: Literal["binpack", "spread"] = "binpack"

    @field_validator("labels", "farms")
    @classmethod
    def _sorted_distinct(cls, value: list[str]) -> list[str]:
        # One spelling: the same selector must sign the same, and a label twice means nothing more.
        if value != sorted(set(value)):
            raise ValueError("must be sorted and distinct")
        return value


if list(Selector.model_fields) != sorted(Selector.model_fields):  # pragma: no cover - a developer's slip
    raise AssertionError("Selector fields must be declared in alphabetical order (canonical JSON)")


def _absent(value: object) -> bool:
    return value is None


class Envelope(BaseModel):
    """A deployment: what to run, where, on which terms, signed by whom."""

    model_config = _MODEL

    # Alphabetical order: see the module docstring.
    algorithm: Literal["ed25519"]
    created_at: UnixTime
    env: Annotated[dict[EnvName, EnvValue], Field(max_length=64)] = {}
    expires_at: UnixTime
    id: EnvelopeId
    nonce: Nonce
    retries: Annotated[int, Field(ge=0, le=100)] = 0
    script: str
    # Left out of the JSON when absent, so that envelopes without one sign exactly as before.
    selector: Annotated[Selector | None, Field(exclude_if=_absent)] = None
    signatures: Annotated[list[Signature], Field(max_length=16)] = []
    signer: KeyText
    # The nodes named by the client; empty only when a selector lets coord choose them all.
    targets: Annotated[list[NodeName], Field(max_length=MAX_TARGETS)]
    timeout: Annotated[int, Field(ge=1, le=86400)] = 60
    # An int, not Literal[1]: a Literal compares by equality, and 1.0 == True == 1 (see _refusal).
    version: Annotated[int, Field(ge=VERSION, le=VERSION)]

    # -- the wire form ---------------------------------------------------

    @classmethod
    def from_json(cls, raw: bytes | str, options: VerifyOptions | None = None) -> Envelope:
        """Parse an envelope, or raise the VerificationError that says why not."""
        envelope = _parse(raw, options or DEFAULT_OPTIONS)
        _check_unique_keys(envelope, raw)
        return envelope

    def to_json(self, **kwargs: Any) -> str:
        return self.model_dump_json(**kwargs)

    def signing_bytes(self) -> bytes:
        """Exactly the bytes every signature covers."""
        return DOMAIN + _canonical(self, _unsigned_json)

    def canonical_json(self) -> bytes:
        """The envelope, signatures included, in canonical JSON (keys sorted, no white space, UTF-8):
        its one spelling. What a hop that stores, compares or forwards a verified envelope should use
        rather than the bytes it received (the same envelope, maybe spelled otherwise)."""
        return _canonical(self, _envelope_json)

    # -- signing ---------------------------------------------------------

    def signed_by(self, key: nacl.signing.SigningKey) -> Envelope:
        """A copy with `key`'s signature added (the signer's, or a co-signer's)."""
        public_key = keys.public_key_text(key)
        if any(s.public_key == public_key for s in self.signatures):
            raise ValueError(f"envelope is already signed by {public_key}")
        signature = Signature(public_key=public_key, signature=keys.sign(key, self.signing_bytes()))
        return self.model_copy(update={"signatures": [*self.signatures, signature]})


if list(Envelope.model_fields) != sorted(Envelope.model_fields):  # pragma: no cover - a developer's slip
    raise AssertionError("Envelope fields must be declared in alphabetical order (canonical JSON)")
if not all(field.is_required() for field in Signature.model_fields.values()):  # pragma: no cover - likewise
    raise AssertionError("_check_unique_keys counts two keys a signature: make it count an optional field")

DEFAULT_OPTIONS = VerifyOptions()
# The validator itself, looked up once: model_validate_json's wrapper costs a tenth of the parse, and even
# the attribute lookup on the class (through pydantic's metaclass) costs a tenth of a microsecond.
_validate_json = Envelope.__pydantic_validator__.validate_json


def _parse(raw: bytes | str, options: VerifyOptions) -> Envelope:
    """The envelope `raw` spells, strictly typed and bounded; its keys not yet checked for repeats."""
    # JSON escaping can grow a script six-fold (\u00XX); anything beyond is not a valid envelope.
    if len(raw) > 6 * options.max_script_bytes + 64 * 1024:
        raise ScriptTooLarge(f"envelope of {len(raw)} bytes is larger than any valid one")
    try:
        return _validate_json(raw)
    except ValidationError as exc:
        raise _refusal(exc) from None


def _canonical(envelope: Envelope, to_json: Any) -> bytes:
    # Canonical JSON sorts `env` too. Our own encoder writes it sorted, so
    # this copy happens only for envelopes built elsewhere.
    env = envelope.env
    if len(env) > 1 and list(env) != sorted(env):
        envelope = envelope.model_copy(update={"env": dict(sorted(env.items()))})
    try:
        return to_json(envelope)  # bytes straight from pydantic-core, no str between
    except PydanticSerializationError as exc:  # text that is not valid Unicode (a lone surrogate)
        raise MalformedEnvelope(f"envelope cannot be encoded as UTF-8: {exc}") from None


def _samples() -> list[Envelope]:
    """Envelopes that hold what could trip the serializers' shortcuts (below): every field, escapes, a
    selector, two signatures, and a script and an env that spell the members those shortcuts look for."""
    sample = Envelope(
        algorithm=ALGORITHM, created_at=1, env={"A": "é\n", "B": "", "signer": ',"signer":"x'}, expires_at=2,
        id=str(uuid.UUID(int=1)), nonce="A" * 22, retries=3, script='"x":\\ ,"signatures":[ ,"signer":"',
        signatures=[Signature(public_key="A" * 43, signature="A" * 86), Signature(public_key="B" * 43, signature="B" * 86)],
        signer="A" * 43, targets=["a", "b"], timeout=4, version=VERSION,
    )
    placed = sample.model_copy(update={"selector": Selector(count=2, farms=["f"], labels=["a=b"]), "targets": []})
    return [sample, placed]


def _unsigned_serializer() -> Any:
    """What writes an envelope without its signatures: the serializer of a model of the same fields but
    `signatures`, which pydantic-core applies to any object's attributes (2.5 times as fast as
    `exclude=`, a microsecond an envelope). Checked here against `exclude=`, the plain way, which it
    falls back to should a pydantic release serialize otherwise."""
    full = Envelope.__pydantic_serializer__.to_json
    fields = {name: (info.annotation, info) for name, info in Envelope.model_fields.items() if name != "signatures"}
    unsigned = create_model("UnsignedEnvelope", __config__=_MODEL, **fields).__pydantic_serializer__.to_json
    exclude = frozenset({"signatures"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            if all(unsigned(each) == full(each, exclude=exclude) for each in _samples()):
                return unsigned
        except Exception:  # pragma: no cover - a pydantic release that serializes otherwise
            pass
    return lambda envelope: full(envelope, exclude=exclude)  # pragma: no cover


_envelope_json = Envelope.__pydantic_serializer__.to_json
_unsigned_json = _unsigned_serializer()


def _signed_pieces(canonical: bytes) -> tuple[bytes, bytes, bytes]:
    """What the signatures cover (signing_bytes()), in the pieces cut from the envelope's canonical JSON
    (signatures included): the domain, then the JSON before and after its `signatures`. Cut in a third of
    the time it takes to write the envelope again without them, and joined once, with each signature
    (keys.verify_signature).

    Canonical JSON puts the member `"signatures":[...]` between the script (or selector) and `"signer"`.
    Outside a string, `,"` begins a member; inside one a quote is always escaped (`\\"`), so `,"signatures":[`
    and `,"signer":"` there are members. `"signatures"` with an array is a member of the envelope only
    (`env` holds strings; selectors and signatures have no such field); `"signer"` with a string could also
    be a name in `env`, which comes before, so the last one is the envelope's. Checked at import against
    `_unsigned_json` (below) and by tests/protocol/test_fuzz.py.
    """
    end = canonical.rfind(b',"signer":"')
    start = canonical.rfind(b',"signatures":[', 0, end)
    return DOMAIN, canonical[:start], canonical[end:]


if not all(b"".join(_signed_pieces(_envelope_json(each))) == DOMAIN + _unsigned_json(each) for each in _samples()):
    raise AssertionError("this pydantic release writes envelopes otherwise: _signed_pieces cannot cut them")  # pragma: no cover


def _check_unique_keys(envelope: Envelope, raw: bytes | str) -> None:
    """InvalidJSON if an object of `raw`, which parsed as `envelope`, repeats a key.

    Counted rather than parsed again (the gate, strict_json.unique_keys, costs as much as the parse).
    In JSON every colon outside a string separates one member of an object from its value. A text
    that parsed as an envelope has three kinds of object: the envelope, its `env`, and each entry of
    `signatures`; their distinct keys are the fields set, the env's names and each signature's
    fields. Colons inside strings are in the script and the env's values (every other string is a
    field name, matches a pattern without one, or is a key or signature text, which has none unless
    it is not one: its colons could only add to the count, never hide a member), and there each
    decoded colon was a literal colon in the text, unless the text escaped one as \\u003a. So,
    without that escape: the text's colons, less the colons of those strings, are its members, and
    they are as many as the distinct keys exactly when no object repeats a key. Anything else (an
    escaped colon, a count that does not add up) goes to the gate, which names the duplicate or finds
    none.
    """
    if isinstance(raw, str):
        colon, escape, hex_digits = ":", "\\u003", ("a", "A")
    else:
        colon, escape, hex_digits = b":", b"\\u003", (b"a", b"A")
    env = envelope.env
    # Each signature has its two fields, both required: two distinct keys.
    members = len(envelope.__pydantic_fields_set__) + len(env) + 2 * len(envelope.signatures)
    if envelope.selector is not None:  # its own object; its strings (farms, labels) hold no colon
        members += len(envelope.selector.__pydantic_fields_set__)
    in_strings = envelope.script.count(":")
    for value in env.values():
        in_strings += value.count(":")
    if raw.count(colon) - in_strings == members:
        escaped = raw.find(escape)  # \u0030-\u003f: digits, and :;<=>? (some encoders escape < and >)
        while escaped >= 0:
            if raw[escaped + 5 : escaped + 6] in hex_digits:
                break  # an escaped colon: count no further
            escaped = raw.find(escape, escaped + 5)
        else:
            return
    strict_json.unique_keys(raw)


def _check_targeted(targets: list[str], selector: Selector | None) -> None:
    if not targets and selector is None:
        raise MalformedEnvelope("an envelope needs targets, a selector, or both")
    if len(targets) > 1 and len(set(targets)) != len(targets):
        raise MalformedEnvelope("targets must be distinct")


def _refusal(error: ValidationError) -> VerificationError:
    """The most specific reason a model validation failed."""
    problems = error.errors(include_url=False, include_input=True)
    for problem in problems:
        field = problem["loc"][0] if problem["loc"] else None
        # Any version but the integer 1: 2, "1", and 1.0, 1e0 or true, which are not 1 either.
        if field == "version" and problem["type"] != "missing":
            return UnsupportedVersion(
                f"envelope version {_short(problem['input'])} is not supported (this side speaks the integer {VERSION})"
            )
        if field == "algorithm" and problem["type"] == "literal_error":
            return UnknownAlgorithm(f"signature algorithm {_short(problem['input'])} is not supported (only {ALGORITHM})")
    for problem in problems:
        loc = problem["loc"]
        if problem["type"] == "missing":
            continue
        if loc[:1] == ("signer",) or (loc[:1] == ("signatures",) and loc[-1:] == ("public_key",)):
            return MalformedKey(f"{_path(loc)}: not an ed25519 public key in base64url: {_short(problem['input'])}")
    first = problems[0]
    if first["type"] == "json_invalid":
        return strict_json.parse_error(first["msg"])
    where = _path(first["loc"])
    return MalformedEnvelope(f"{where}: {first['msg']}" if where else first["msg"])


def _path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _short(value: Any) -> str:
    """A value for an error message: its repr, cut short (a "key" may be megabytes long)."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def new_envelope(
    script: str,
    targets: list[str],
    key: nacl.signing.SigningKey,
    *,
    timeout: int = 60,
    ttl: int = 3600,
    retries: int = 0,
    env: dict[str, str] | None = None,
    selector: Selector | None = None,
    now: float | None = None,
) -> Envelope:
    """A fresh envelope, signed by `key` as its signer: for `targets`, and the nodes coord picks by `selector`."""
    created = int(time.time() if now is None else now)
    try:
        unsigned = Envelope(
            algorithm=ALGORITHM,
            created_at=created,
            env=env or {},
            expires_at=created + ttl,
            id=str(uuid.uuid4()),
            nonce=keys.b64url(os.urandom(16)),
            retries=retries,
            script=script,
            selector=selector,
            signer=keys.public_key_text(key),
            targets=targets,
            timeout=timeout,
            version=VERSION,
        )
    except ValidationError as exc:
        raise _refusal(exc) from None
    _check_targeted(unsigned.targets, unsigned.selector)
    return unsigned.model_copy(update={"env": dict(sorted(unsigned.env.items()))}).signed_by(key)


class Verified(NamedTuple):
    """An envelope whose signatures checked out, who signed it, and its canonical JSON (signatures
    included): the bytes to store or forward, as `envelope.canonical_json()` would write them again.
    (A NamedTuple: immutable, and made in a tenth of a frozen dataclass's time, which counts once an envelope.)"""

    envelope: Envelope
    signers: frozenset[str]
    canonical_json: bytes


def verify(
    envelope: Envelope | bytes | str,
    *,
    options: VerifyOptions | None = None,
    now: float | None = None,
) -> Verified:
    """Check an envelope from end to end, or raise the VerificationError that says why not.

    Every signature present must be valid (one bad signature means tampering),
    and the signer's must be among them. Cheap checks come before the crypto.
    """
    # The checks of this hot path are written out (few helper calls): verifying is an Ed25519
    # verification and as little else as can be (bench/verify.py).
    options = options or DEFAULT_OPTIONS
    raw = None
    # bytes and str first: pydantic's isinstance check on its models costs a tenth of a microsecond.
    if isinstance(envelope, (bytes, str)) or not isinstance(envelope, Envelope):  # noqa: UP038 - the tuple is faster
        raw = envelope
        envelope = _parse(raw, options)

    # The canonical JSON, written once: what the signatures cover is cut from it (_signed_pieces), and a
    # text that is that very spelling repeats no key (the count, _check_unique_keys, is for the others).
    canonical = _canonical(envelope, _envelope_json)
    if raw is not None and not (canonical.decode() == raw if isinstance(raw, str) else canonical == raw):
        _check_unique_keys(envelope, raw)

    now = time.time() if now is None else now
    script, targets, created_at, expires_at = envelope.script, envelope.targets, envelope.created_at, envelope.expires_at
    # UTF-8 takes at most 4 bytes a character: only a long script needs encoding to be measured.
    if 4 * len(script) > options.max_script_bytes and len(script.encode("utf-8")) > options.max_script_bytes:
        raise ScriptTooLarge(f"script is larger than {options.max_script_bytes} bytes")
    # One target needs neither check; several, distinct, need only the count (no call, no selector).
    if len(targets) != 1 and (not targets or len(set(targets)) != len(targets)):
        _check_targeted(targets, envelope.selector)
    if expires_at <= created_at:
        raise MalformedEnvelope("expires_at must be later than created_at")
    if expires_at - created_at > options.max_ttl:
        raise MalformedEnvelope(f"validity window is longer than {options.max_ttl} s")
    if now + options.skew < created_at:
        raise NotYetValid(f"envelope is dated {created_at - now:.0f} s in the future")
    if now - options.skew >= expires_at:
        raise Expired(f"envelope expired {now - expires_at:.0f} s ago")

    keys.public_key_bytes(envelope.signer)  # MalformedKey for a signer that is no key (cached: signers repeat)
    signatures = envelope.signatures
    if not signatures:
        raise BadSignature("envelope is not signed")
    message = _signed_pieces(canonical)  # signing_bytes(), without writing the envelope again
    signers: set[str] = set()
    verify_signature = keys.verify_signature  # MalformedKey for a key or signature text not in its one spelling
    for signature in signatures:
        public_key = signature.public_key
        if public_key in signers:
            raise MalformedEnvelope(f"two signatures by {public_key}")
        if not verify_signature(public_key, message, signature.signature):
            raise BadSignature(f"signature by {public_key} does not match the envelope")
        signers.add(public_key)
    if envelope.signer not in signers:
        raise BadSignature(f"the signer {envelope.signer} has not signed the envelope")
    return Verified._make((envelope, frozenset(signers), canonical))  # _make: a third of Verified(...)'s time


class Policy(BaseModel):
    """"`threshold` of these `keys` must have signed", e.g. 2 of 3 operators."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold: int = Field(ge=1, strict=True)  # 2.0 is not 2 (zeronode.protocol.strict_json)
    keys: frozenset[PublicKey]

    @field_validator("keys")
    @classmethod
    def _keys_parse(cls, value: frozenset[str]) -> frozenset[str]:
        for key in value:
            keys.parse_public_key(key)
        return value

    def model_post_init(self, _context: Any) -> None:
        if self.threshold > len(self.keys):
            raise ValueError(f"threshold {self.threshold} exceeds the {len(self.keys)} keys of the policy")

    def check(self, signers: frozenset[str] | set[str]) -> None:
        present = len(self.keys & signers)
        if present < self.threshold:
            raise PolicyNotMet(f"{present} of the {self.threshold} required signatures from the policy's {len(self.keys)} keys")
