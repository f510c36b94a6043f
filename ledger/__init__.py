"""The ledger: nodes, their uptime, users and their rights (docs/ledger.md).

    settings   LedgerSettings: TOML file and ZERONODE_LEDGER_* variables
    schema     the tables, and the versioned migrations run on start
    database   SQLite (WAL) or PostgreSQL, and write transactions
    models     what the API takes and answers (in zeronode.api.ledger, shared with its client)
    nodes      registration by the node's key; reading nodes and their status
    uptime     judging reports, restarts, up intervals, uptime percentages
    reports    reports as signed requests, alone or in batches
    users      users, roles and deployment rights
    metrics    what /metrics counts
    routes/    the HTTP API, one router per resource, and its typed dependencies
    app        the FastAPI app: the routers, the shared error handlers
"""
