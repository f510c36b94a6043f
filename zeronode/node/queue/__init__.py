"""A node's job queue in Redis: rq jobs, written directly on the hot paths.

    jobs.py       a job's payload, outcome and view; the rq queue
    rq_layout.py  accept, take and finish as one Lua script each (lua/), in rq's own layout
    keys.py       every Redis key of zeronode's own, spelled once
    durability.py whether the Redis persists what it is given (append-only), as a node's must
"""
