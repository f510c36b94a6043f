"""What every zeronode service and client share on the wire: models, refusals, error handling.

    errors.py    ServiceError (Refused, NotFound, Conflict, Unavailable), the one ErrorBody, and reading it back
    handlers.py  the exception handlers every service installs: one JSON error body, never a traceback
    service.py   what every service's app is made with: middleware.py (request ids, HTTP metrics), build
                 info, openapi.py (declared request bodies and errors), docs.py (/docs without a CDN)
    bodies.py    request bodies, bounded as they stream and parsed strictly
    auth.py      the signed-request check as a FastAPI dependency
    jobs.py      a node's jobs as its supervisor shows them
    ledger.py    what the ledger takes and answers: nodes, uptime reports, users
"""
