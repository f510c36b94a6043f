"""For developers and demos, never on a node: `zeronode up`'s local cluster (cluster.py)."""
