"""The node's supervisor: verifies signed scripts and enqueues them as rq jobs (docs/node.md).

    service.py  the decisions, apart from HTTP: verify, authorise, compile, claim and enqueue
    routes/     the HTTP API, one router per resource, and its typed dependencies
    app.py      the FastAPI app: the routers, the shared error handlers, the queue-depth gauge
"""
