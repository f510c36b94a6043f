"""The coordinator: takes signed deployments, forwards them to the target nodes' supervisors,
and tracks every node's job to its end (docs/operators.md).

    store.py          deployments and tasks in the Redis every replica shares; claiming due tasks, renewing leases
    authorization.py  whether the signer may deploy on every target, as the ledger says (before anything is stored)
    limits.py         how often one signer may submit, counted across replicas
    dispatcher.py     moving each task forward: dispatch, follow, retry, cancel, reconcile with silent nodes
    nodes.py          where the targets are, as the ledger says
    supervisors.py    HTTP clients for the nodes' supervisors, and how their answers are read
    views.py          a deployment as the API shows it
    metrics.py        what /metrics counts
    routes/           the HTTP API, one router per resource, and its typed dependencies
    dashboard/        the fleet dashboard: a read-only page for people, signed in with a read token
    app.py            the FastAPI app and the dispatcher loop beside it
"""
