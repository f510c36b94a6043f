"""The coordinator: takes signed deployments, forwards them to the target nodes' supervisors,
and tracks every node's job to its end (docs/operators.md).

    store.py        deployments and tasks in the Redis every replica shares; claiming due tasks
    dispatcher.py   moving each task forward: dispatch, follow, retry, cancel
    nodes.py        where the targets are, as the ledger says
    supervisors.py  HTTP clients for the nodes' supervisors
    views.py        a deployment as the API shows it
    metrics.py      what /metrics counts
    routes/         the HTTP API, one router per resource, and its typed dependencies
    app.py          the FastAPI app and the dispatcher loop beside it
"""
