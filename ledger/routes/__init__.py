"""The ledger's routes, one router per resource; ledger.app puts them together.

    nodes.py         /v1/nodes: registration, listing, one node
    uptime.py        uptime reports: one node's, and batches of them
    report_route.py  one node's report answered beneath FastAPI (ledger.app installs it): the hot path
    users.py         /v1/users: users and their rights
    rights.py        /v1/nodes/{id}/rights and /v1/policies: what a node enforces
    operations.py    /health, /ping, /metrics
    dependencies.py  what the handlers take from the app, and who may read or write
"""
