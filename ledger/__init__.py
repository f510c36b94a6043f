"""The ledger: nodes, their uptime, users and their rights.

Arrives with issue #6 (ledger and node identity)."""
