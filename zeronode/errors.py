"""Errors of the zeronode protocol, named after what went wrong.

Each verification failure has a stable `reason` code, which services return
in their JSON errors and clients can match on.
"""

from __future__ import annotations


class ZeronodeError(Exception):
    """Base of every error zeronode raises on purpose."""


class KeyFileError(ZeronodeError):
    """A key file is missing, unsafe (readable by others) or not a zeronode key."""


class VerificationError(ZeronodeError):
    """A signed envelope or request was refused."""

    reason = "invalid"


class MalformedEnvelope(VerificationError):
    reason = "malformed"


class InvalidJSON(MalformedEnvelope):
    reason = "invalid_json"


class UnsupportedVersion(VerificationError):
    reason = "unsupported_version"


class UnknownAlgorithm(VerificationError):
    reason = "unknown_algorithm"


class MalformedKey(VerificationError):
    reason = "malformed_key"


class BadSignature(VerificationError):
    reason = "bad_signature"


class Expired(VerificationError):
    reason = "expired"


class NotYetValid(VerificationError):
    reason = "not_yet_valid"


class ScriptTooLarge(VerificationError):
    reason = "too_large"


class Replayed(VerificationError):
    reason = "replayed"


class PolicyNotMet(VerificationError):
    reason = "policy_not_met"
