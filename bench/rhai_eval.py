"""How fast rhai-py evaluates scripts, against baselines measured in the same run.

    .venv/bin/python bench/rhai_eval.py [--seconds 2]

Cases:
  cached AST, 3 Python callbacks  the runner's hot path: a compiled script calling
                                  three registered Python functions
  baseline: the same in Python    the same three calls and arithmetic, plain Python
  baseline: cached AST, no calls  the floor of one eval through the binding
  compile + eval                  the supervisor's path for a new script
  threads                         a CPU-bound script on 1 and 2 threads: the GIL is
                                  released while Rhai runs, so 2 threads should scale
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from collections.abc import Callable

from aims import Aim, report
from rich.console import Console
from rich.table import Table

import rhai

SCRIPT = "let a = add(x, 1);\nlet b = mul(a, 2);\nneg(b) + x"
SPIN = "let n = 0; for i in 0..20000 { n += i } n"


def add(a, b):
    return a + b


def mul(a, b):
    return a * b


def neg(a):
    return -a


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of `fn`, over at least `seconds` of wall time."""
    fn()  # warm up
    calls, batch = 0, 64
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        for _ in range(batch):
            fn()
        calls += batch
    return calls / elapsed


def threaded_rate(fn: Callable[[], object], threads: int, seconds: float) -> float:
    counts = [0] * threads
    stop = threading.Event()

    def loop(slot):
        while not stop.is_set():
            fn()
            counts[slot] += 1

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    time.sleep(seconds)
    stop.set()
    for worker in workers:
        worker.join()
    return sum(counts) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time spent on each case")
    seconds = parser.parse_args().seconds

    engine = rhai.Engine()
    for fn in (add, mul, neg):
        engine.register(fn)
    ast = engine.compile(SCRIPT)
    empty = engine.compile("()")
    scope = {"x": 20}
    assert engine.eval(ast, scope) == -(42) + 20

    def python_equivalent():
        a = add(scope["x"], 1)
        b = mul(a, 2)
        return neg(b) + scope["x"]

    spin = engine.compile(SPIN)
    console = Console()
    with console.status("measuring…"):
        # The hot case, in 3 rounds for its spread (each a third of the time).
        hot_rounds = [rate(lambda: engine.eval(ast, scope), seconds / 3) for _ in range(3)]
        cases = {
            "cached AST, 3 Python callbacks": sorted(hot_rounds)[1],
            "baseline: the same in Python": rate(python_equivalent, seconds),
            "baseline: cached AST, no calls": rate(lambda: engine.eval(empty), seconds),
            "compile + eval, 3 callbacks": rate(lambda: engine.eval(SCRIPT, scope), seconds),
        }
        one_thread = threaded_rate(lambda: engine.eval(spin), 1, seconds)
        two_threads = threaded_rate(lambda: engine.eval(spin), 2, seconds)

    table = Table(title=f"rhai-py {rhai.__version__} on {os.cpu_count()} cores")
    table.add_column("case")
    table.add_column("evals/s", justify="right")
    table.add_column("µs/eval", justify="right")
    for name, per_second in cases.items():
        table.add_row(name, f"{per_second:,.0f}", f"{1e6 / per_second:.2f}")
    console.print(table)
    hot = cases["cached AST, 3 Python callbacks"]
    console.print(
        f"cached AST with 3 callbacks: {1e6 / hot:.2f} µs/eval (aim: < 20 µs); "
        f"{cases['baseline: the same in Python'] / hot:.1f}× the cost of plain Python, "
        f"{cases['baseline: cached AST, no calls'] / hot:.1f}× an empty eval"
    )
    console.print(
        f"CPU-bound script: 1 thread {one_thread:,.0f}/s, 2 threads {two_threads:,.0f}/s "
        f"→ {two_threads / one_thread:.2f}× with 2 threads"
    )
    report([Aim("cached AST with 3 callbacks, µs per eval", [1e6 / r for r in hot_rounds], at_most=20, unit="µs")],
           console)


if __name__ == "__main__":
    main()
