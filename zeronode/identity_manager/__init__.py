"""The node identity manager (`zeronode identity`): the node's key, its record in the ledger, its uptime reports.

    lock.py     one reporter per node (flock)
    host.py     what the ledger should know of this host: capacity, addresses, drivers
    manager.py  the loop: register, report, back off; `run` is the command
    rights.py   the node's rights from the ledger, fetched and saved for the supervisor and runners
    updates.py  the node updating itself: the release the ledger names, installed, switched to, checked,
                kept or rolled back; with install.py (versions side by side), services.py (restarting
                the node's services) and checks.py (the new version's health checks)

It runs at boot (scripts/systemd/zeronode-identity.service.in, as root: it updates the node) and for as long
as the node does:

1. Take the reporter lock (STATE_DIR/identity.lock, flock): one reporter per
   node, so its reports stay monotonic. A second one exits with a message.
2. Load the node key, creating it (0600) on the first run: the node id derives
   from it, so it never changes across restarts.
3. Register the node in the ledger: capacity read from the host, supervisor
   URL, mycelium address, and its capabilities (each SAL's driver
   fingerprint). Registered again whenever any of that changes.
4. Report the host's uptime every `uptime_interval` seconds.
5. Beside it, fetch the node's rights from the ledger every `rights_refresh`
   seconds and save them in STATE_DIR/rights.json (0600), which the supervisor
   and runners read (docs/security.md).
6. With `release_keys` set, update the node to the release the ledger answers
   a report with (docs/operators.md, "Updating a fleet"): each report carries the
   running version and the last update's result.

It never dies of the ledger: unreachable, DNS failure, timeouts, 5xx and
unexpected errors are logged and retried with capped exponential backoff,
and reporting resumes by itself when the ledger is back. A ledger that lost
the node (404) gets it registered again.
"""
