"""The coordinator: forwards signed scripts to the target nodes and tracks them.

Arrives with issue #7 (coordinator and deploy flow)."""
