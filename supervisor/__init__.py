"""The node's supervisor: verifies signed scripts and enqueues them as rq jobs.

Arrives with issue #4 (supervisor and runners)."""
