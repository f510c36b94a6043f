"""Signing in to the dashboard: read tokens, kept by coord as hashes, carried by the browser in a cookie.

A browser cannot sign requests with Ed25519 without a crypto library shipped in
JavaScript, so the dashboard signs in with a read token instead. An operator
makes one (`zeronode dashboard token`: 32 random bytes, URL-safe), keeps the
token, and puts its SHA-256 (`sha256:HEX`) in coord's `dashboard_tokens`: the
settings file never holds the secret. A token is an admin's read right: it
sees every deployment, node and job a coord admin sees, and can change nothing.

The sign-in form posts the token as JSON (a cross-site HTML form cannot send
that content type), and coord answers with the token in a cookie that scripts
cannot read (HttpOnly), that no other site's page sends (SameSite=Strict), that
goes to /dashboard only, and over HTTPS only when coord is reached by HTTPS.
Every dashboard read checks the cookie's token again against the hashes, in
constant time: removing a hash from the settings (and restarting coord) signs
every browser holding that token out.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Annotated

from fastapi import Depends, Request

from zeronode.api.errors import Refused

COOKIE = "zeronode_dashboard"
COOKIE_PATH = "/dashboard"
SESSION_SECONDS = 12 * 3600  # how long a browser stays signed in; the token itself lasts until it is removed
MAX_TOKEN = 200  # characters: ours are 43


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What coord's settings hold for `token`."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def accepted(token: str, hashes: list[str]) -> bool:
    """Whether `token` is one of the tokens `hashes` stand for. Every hash is compared, each in constant
    time, so how long this takes says nothing about which characters matched."""
    if not token or len(token) > MAX_TOKEN:
        return False
    presented = token_hash(token).encode()
    matches = [hmac.compare_digest(presented, known.encode()) for known in hashes]
    return any(matches)


def not_signed_in() -> Refused:
    return Refused(401, "not_signed_in", "sign in to the dashboard with a read token (zeronode dashboard token)")


async def _viewer(request: Request) -> None:
    if not accepted(request.cookies.get(COOKIE, ""), request.app.state.coord.settings.dashboard_tokens):
        raise not_signed_in()


# A dependency of every dashboard read: 401 not_signed_in without a cookie holding a valid token.
SignedIn = Annotated[None, Depends(_viewer)]
