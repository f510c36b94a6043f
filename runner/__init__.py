"""rq workers that re-verify each job and run its script in an embedded Rhai engine (docs/node.md).

    executor.py  one job's run: verify the envelope again, evaluate it in Rhai with the SALs
    worker.py    a runner: take, run, finish, in rq's layout, with heartbeats and cancellation
    monitor.py   keeps jobs moving when runners die
    pool.py      `zeronode runner --pool N`: the processes and the monitor
"""
