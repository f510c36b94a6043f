"""What a node's services share (supervisor, runners, identity manager), but no service itself.

    settings.py    NodeSettings: one TOML file and ZERONODE_* variables
    identity.py    the node's key (created on first start, 0600) and its id
    authorizer.py  who may do what here, from the authorized_keys file and the ledger's rights
    rights.py      the saved copy of the ledger's rights
    process.py     dying with one's parent
    journal.py     what the node accepted and ran (SQLite): at most one run per attempt, whatever Redis forgets
    queue/         how jobs live in the node's Redis: rq's layout, the Lua hot paths, every key
"""
