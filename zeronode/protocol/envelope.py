"""The signed envelope: a Rhai script, its targets and terms, and signatures over them.

What is signed (version 1), documented in docs/protocol.md:

    b"zeronode-envelope-v1\\n" + canonical JSON of every field except `signatures`

where canonical JSON is RFC 8785 (JCS) for the values an envelope can hold:
keys sorted, no white space, UTF-8, integers only. The model's fields are
declared in alphabetical order and `env` is sorted before signing, so the
model's own compact JSON dump *is* that canonical form. That is the cheap path. An
import-time check and a property test hold it to the reference definition,
`json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import nacl.signing
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator
from pydantic_core import PydanticSerializationError

from zeronode.protocol import keys
from zeronode.protocol.errors import (
    BadSignature,
    Expired,
    InvalidJSON,
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
SignatureText = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{86}$")]
# The canonical UUID spelling only: a second spelling would sign differently.
EnvelopeId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
Nonce = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{16,64}$")]
NodeName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
EnvValue = Annotated[str, StringConstraints(max_length=4096)]
UnixTime = Annotated[int, Field(ge=0, le=2**53)]  # JCS (and JavaScript) integers are exact up to 2**53


class VerifyOptions(BaseModel):
    """What a verifier tolerates; every hop may set its own."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    skew: float = Field(300.0, ge=0, description="clock skew tolerated, seconds")
    max_script_bytes: int = Field(256 * 1024, gt=0, description="largest script, UTF-8 bytes")
    max_ttl: int = Field(7 * 86400, gt=0, description="longest validity window, seconds")


class Signature(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    public_key: PublicKey
    signature: SignatureText


class Envelope(BaseModel):
    """A deployment: what to run, where, on which terms, signed by whom."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    # Alphabetical order: see the module docstring.
    algorithm: Literal["ed25519"]
    created_at: UnixTime
    env: Annotated[dict[EnvName, EnvValue], Field(max_length=64)] = {}
    expires_at: UnixTime
    id: EnvelopeId
    nonce: Nonce
    retries: Annotated[int, Field(ge=0, le=100)] = 0
    script: str
    signatures: Annotated[list[Signature], Field(max_length=16)] = []
    signer: PublicKey
    targets: Annotated[list[NodeName], Field(min_length=1, max_length=10_000)]
    timeout: Annotated[int, Field(ge=1, le=86400)] = 60
    version: Literal[1]

    # -- the wire form ---------------------------------------------------

    @classmethod
    def from_json(cls, raw: bytes | str, options: VerifyOptions | None = None) -> Envelope:
        """Parse an envelope, or raise the VerificationError that says why not."""
        options = options or DEFAULT_OPTIONS
        # JSON escaping can grow a script six-fold (\u00XX); anything beyond is not a valid envelope.
        if len(raw) > 6 * options.max_script_bytes + 64 * 1024:
            raise ScriptTooLarge(f"envelope of {len(raw)} bytes is larger than any valid one")
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            raise _refusal(exc) from None

    def to_json(self, **kwargs: Any) -> str:
        return self.model_dump_json(**kwargs)

    def signing_bytes(self) -> bytes:
        """Exactly the bytes every signature covers."""
        envelope = self
        # Canonical JSON sorts `env` too. Our own encoder writes it sorted, so
        # this copy happens only for envelopes built elsewhere.
        if len(self.env) > 1 and list(self.env) != sorted(self.env):
            envelope = self.model_copy(update={"env": dict(sorted(self.env.items()))})
        try:
            return DOMAIN + envelope.model_dump_json(exclude={"signatures"}).encode("utf-8")
        except PydanticSerializationError as exc:  # text that is not valid Unicode (a lone surrogate)
            raise MalformedEnvelope(f"envelope cannot be encoded as UTF-8: {exc}") from None

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

DEFAULT_OPTIONS = VerifyOptions()


def _refusal(error: ValidationError) -> VerificationError:
    """The most specific reason a model validation failed."""
    problems = error.errors(include_url=False)
    for problem in problems:
        field = problem["loc"][0] if problem["loc"] else None
        if field == "version" and problem["type"] == "literal_error":
            return UnsupportedVersion(f"envelope version {problem['input']!r} is not supported (this side speaks {VERSION})")
        if field == "algorithm" and problem["type"] == "literal_error":
            return UnknownAlgorithm(f"signature algorithm {problem['input']!r} is not supported (only {ALGORITHM})")
    for problem in problems:
        loc = problem["loc"]
        if problem["type"] == "missing":
            continue
        if loc[:1] == ("signer",) or (loc[:1] == ("signatures",) and loc[-1:] == ("public_key",)):
            return MalformedKey(f"{_path(loc)}: not an ed25519 public key in base64url: {problem['input']!r}")
    first = problems[0]
    if first["type"] == "json_invalid":
        return InvalidJSON(f"not JSON: {first['msg']}")
    where = _path(first["loc"])
    return MalformedEnvelope(f"{where}: {first['msg']}" if where else first["msg"])


def _path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


def new_envelope(
    script: str,
    targets: list[str],
    key: nacl.signing.SigningKey,
    *,
    timeout: int = 60,
    ttl: int = 3600,
    retries: int = 0,
    env: dict[str, str] | None = None,
    now: float | None = None,
) -> Envelope:
    """A fresh envelope, signed by `key` as its signer."""
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
            signer=keys.public_key_text(key),
            targets=targets,
            timeout=timeout,
            version=VERSION,
        )
    except ValidationError as exc:
        raise _refusal(exc) from None
    _check_distinct(unsigned.targets)
    return unsigned.model_copy(update={"env": dict(sorted(unsigned.env.items()))}).signed_by(key)


def _check_distinct(targets: list[str]) -> None:
    if len(set(targets)) != len(targets):
        raise MalformedEnvelope("targets must be distinct")


@dataclass(frozen=True)
class Verified:
    """An envelope whose signatures checked out, and who signed it."""

    envelope: Envelope
    signers: frozenset[str]


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
    options = options or DEFAULT_OPTIONS
    if not isinstance(envelope, Envelope):
        envelope = Envelope.from_json(envelope, options)
    now = time.time() if now is None else now

    # UTF-8 takes at most 4 bytes a character: only a long script needs encoding to be measured.
    script = envelope.script
    if 4 * len(script) > options.max_script_bytes and len(script.encode("utf-8")) > options.max_script_bytes:
        raise ScriptTooLarge(f"script is larger than {options.max_script_bytes} bytes")
    _check_distinct(envelope.targets)
    if envelope.expires_at <= envelope.created_at:
        raise MalformedEnvelope("expires_at must be later than created_at")
    if envelope.expires_at - envelope.created_at > options.max_ttl:
        raise MalformedEnvelope(f"validity window is longer than {options.max_ttl} s")
    if now + options.skew < envelope.created_at:
        raise NotYetValid(f"envelope is dated {envelope.created_at - now:.0f} s in the future")
    if now - options.skew >= envelope.expires_at:
        raise Expired(f"envelope expired {now - envelope.expires_at:.0f} s ago")

    keys.parse_public_key(envelope.signer)  # MalformedKey for a non-canonical spelling
    if not envelope.signatures:
        raise BadSignature("envelope is not signed")
    message = envelope.signing_bytes()
    signers = set()
    for signature in envelope.signatures:
        if signature.public_key in signers:
            raise MalformedEnvelope(f"two signatures by {signature.public_key}")
        if not keys.verify_signature(signature.public_key, message, signature.signature):
            raise BadSignature(f"signature by {signature.public_key} does not match the envelope")
        signers.add(signature.public_key)
    if envelope.signer not in signers:
        raise BadSignature(f"the signer {envelope.signer} has not signed the envelope")
    return Verified(envelope, frozenset(signers))


class Policy(BaseModel):
    """"`threshold` of these `keys` must have signed", e.g. 2 of 3 operators."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold: int = Field(ge=1)
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
