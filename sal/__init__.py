"""System abstraction layers (hypervisor, storage, network), exposed to Rhai.

Each SAL is a package with one shape: `base.py` (its interface, errors and
value types), `drivers/` (one module or package per backend, each with
`fingerprint()`), a simulator where the real backend cannot run here, and
`functions.py` (what Rhai scripts call). `registry.py` holds the one table that
picks each SAL's driver from the node's settings, and the one table of functions.
`context.py` says which job a function serves, and `tenancy.py` whom it acts
for: every VM and volume has an owner, and a deployer sees only its own.
"""
