"""Clients of the control plane's HTTP APIs, raising zeronode.api.errors' ServiceError family.

    coord.py   CoordClient: submit a signed deployment, follow it, cancel it
    ledger.py  LedgerClient: register a node, report its uptime, read nodes and users
"""
