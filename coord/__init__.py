"""The coordinator: takes signed deployments, forwards them to the target nodes' supervisors,
and tracks every node's job to its end (docs/operators.md)."""
