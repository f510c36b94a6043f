"""System abstraction layers (hypervisor, storage, network), exposed to Rhai.

Arrives with issue #5 (SALs)."""
