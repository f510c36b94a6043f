"""rq workers that re-verify each job and run its script in an embedded Rhai engine.

Arrives with issue #4 (supervisor and runners)."""
