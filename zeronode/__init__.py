"""zeronode: what every side shares (signed-envelope protocol, keys, settings),
the client SDK and the `zeronode` command line."""

from importlib.metadata import version as _version

__version__ = _version("zeronode")
