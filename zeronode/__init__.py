"""zeronode: what every side shares, one subpackage a role (docs/architecture.md has the map).

    protocol/          the signed-script protocol: keys, envelopes, signed requests, replay
    api/               the wire: models, ServiceError and its parser, the services' error handlers
    client/            clients of coord and the ledger
    node/              a node's settings, identity, authorizer and job queue
    identity_manager/  `zeronode identity`: registration and uptime
    cli/               the `zeronode` command
    dev/               `zeronode up`, a local cluster
    errors.py          the root of the error tree (drawn in its docstring); settings.py, retry.py, logs.py
"""

from importlib.metadata import version as _version

__version__ = _version("zeronode")
