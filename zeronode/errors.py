"""The root of every error zeronode raises on purpose (the whole tree is drawn below, once the SALs are in)."""

from __future__ import annotations


class ZeronodeError(Exception):
    """Base of every error zeronode raises on purpose."""
