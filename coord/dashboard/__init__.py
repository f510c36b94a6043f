"""The fleet dashboard: a read-only page served by coord, for people (docs/operators.md, "Fleet dashboard").

    routes.py   /dashboard: the page and its files, signing in, the reads the page makes, the security headers
    auth.py     read tokens: their hashes in coord's settings, the session cookie, the check on every read
    fleet.py    what the page shows beyond coord's own deployments: the ledger's nodes, a node's supervisor
                (runner pool, jobs) and the tasks coord gave it, the newest failures
    static/     index.html, dashboard.js, dashboard.css: plain files, no build step, nothing from a CDN

The page is static; its script reads /dashboard/api with the session cookie,
polls the lists every few seconds and follows the open deployment through the
same server-sent events as /v1/deployments/ID/events. Everything it shows comes
from nodes, scripts and signers, so it goes into the page as text
(textContent), never as markup. The dashboard changes nothing: a deployment is
submitted, canceled, or a node drained with the CLI, whose requests are signed.
"""
