"""Errors of the zeronode protocol, named after what went wrong.

Each verification failure has a stable `reason` code, which services return
in their JSON errors and clients can match on.
"""

from __future__ import annotations

from zeronode.errors import ZeronodeError


class KeyFileError(ZeronodeError):
    """A key file is missing, unsafe (readable by others) or not a zeronode key."""


class VerificationError(ZeronodeError):
    """A signed envelope or request was refused."""

    reason = "invalid"
    http_status = 400


class MalformedEnvelope(VerificationError):
    reason = "malformed"
    http_status = 422


class InvalidJSON(MalformedEnvelope):
    reason = "invalid_json"
    http_status = 400


class UnsupportedVersion(VerificationError):
    reason = "unsupported_version"
    http_status = 422


class UnknownAlgorithm(VerificationError):
    reason = "unknown_algorithm"
    http_status = 422


class MalformedKey(VerificationError):
    reason = "malformed_key"
    http_status = 422


class BadSignature(VerificationError):
    reason = "bad_signature"
    http_status = 401


class Expired(VerificationError):
    reason = "expired"
    http_status = 401


class NotYetValid(VerificationError):
    reason = "not_yet_valid"
    http_status = 401


class ScriptTooLarge(VerificationError):
    reason = "too_large"
    http_status = 413


class WrongAudience(VerificationError):
    """A signed request addressed to another node or service."""

    reason = "wrong_audience"
    http_status = 401


class Replayed(VerificationError):
    reason = "replayed"
    http_status = 409


class NotAuthorized(VerificationError):
    """The signer has no right to do this here."""

    reason = "not_authorized"
    http_status = 403


class PolicyNotMet(VerificationError):
    reason = "policy_not_met"
    http_status = 403


class WrongNode(VerificationError):
    """The envelope is not for this node: not among its targets, and no valid placement ticket says it is."""

    reason = "wrong_node"
    http_status = 403


class BadTicket(VerificationError):
    """A placement ticket that is not one: malformed, signed by no trusted placer, or for another envelope or node."""

    reason = "bad_ticket"
    http_status = 403
