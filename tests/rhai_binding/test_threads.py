"""The GIL is released while Rhai runs; Engine and AST are shared between threads;
a running script can be cancelled from another thread."""

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import rhai

UNBOUNDED_OPS = 10**12


def test_eight_threads_share_one_engine_and_one_ast():
    engine = rhai.Engine()
    engine.register("scale", lambda x, k: x * k)
    engine.register("tag", lambda name, i: f"{name}-{i}")
    engine.register("thread_name", lambda: threading.current_thread().name)
    ast = engine.compile(
        "let total = 0; for i in 0..200 { total += scale(i, k); } #{ total: total, tag: tag(name, k), by: thread_name() }"
    )

    def work(k):
        results = [engine.eval(ast, {"k": k, "name": "job"}) for _ in range(20)]
        return k, results

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(work, range(1, 33)))

    expected_total = sum(range(200))
    by_threads = set()
    for k, results in outcomes:
        for result in results:
            assert result["total"] == expected_total * k
            assert result["tag"] == f"job-{k}"
            by_threads.add(result["by"])
    assert len(by_threads) > 1


def test_gil_is_released_while_a_script_runs():
    engine = rhai.Engine(max_operations=UNBOUNDED_OPS)
    started, done = threading.Event(), threading.Event()
    engine.register("started", started.set)

    def run():
        try:
            engine.eval("started(); loop { }", timeout=0.5)
        except rhai.Timeout:
            done.set()

    worker = threading.Thread(target=run)
    worker.start()
    assert started.wait(5)
    # If eval held the GIL, this thread could not run until the script ended.
    progress = 0
    while not done.is_set() and progress < 1000:
        progress += 1
        time.sleep(0)
    worker.join()
    assert done.is_set()
    assert progress == 1000


def test_cancel_from_another_thread():
    engine = rhai.Engine(max_operations=UNBOUNDED_OPS)
    token = rhai.CancelToken()
    assert not token.cancelled
    threading.Timer(0.1, token.cancel).start()
    with pytest.raises(rhai.Cancelled) as info:
        engine.eval("let x = 0;\nloop { x += 1; }", cancel=token, timeout=30)
    assert token.cancelled
    assert info.value.line == 2
    assert isinstance(info.value, rhai.EvalError)


def test_cancelled_token_stops_even_a_short_script():
    token = rhai.CancelToken()
    token.cancel()
    with pytest.raises(rhai.Cancelled):
        rhai.Engine().eval("let a = 1; a + 1", cancel=token)


def test_register_while_another_thread_runs_a_script():
    engine = rhai.Engine(max_operations=UNBOUNDED_OPS)
    engine.register("tick", lambda: None)
    running = threading.Event()
    engine.register("running", running.set)
    worker = threading.Thread(
        target=lambda: pytest.raises(rhai.Timeout, engine.eval, "running(); loop { tick(); }", timeout=0.5)
    )
    worker.start()
    assert running.wait(5)
    engine.register("late", lambda: "registered")  # waits for the read lock, without deadlocking
    worker.join()
    assert engine.eval("late()") == "registered"


def test_ctrl_c_interrupts_a_long_script_on_the_main_thread():
    assert threading.current_thread() is threading.main_thread()
    engine = rhai.Engine(max_operations=UNBOUNDED_OPS)
    threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        engine.eval("loop { }", timeout=20)
    assert time.monotonic() - started < 10


def test_sleep_honours_the_timeout():
    # Rhai's own sleep() would block for the full 30 s regardless of the timeout.
    started = time.monotonic()
    with pytest.raises(rhai.Timeout):
        rhai.Engine().eval("sleep(30)", timeout=0.2)
    assert time.monotonic() - started < 5


def test_sleep_honours_a_cancel():
    token = rhai.CancelToken()
    threading.Timer(0.1, token.cancel).start()
    started = time.monotonic()
    with pytest.raises(rhai.Cancelled):
        rhai.Engine().eval("sleep(1e300)", cancel=token)
    assert time.monotonic() - started < 5


def test_sleep_still_sleeps():
    started = time.monotonic()
    assert rhai.Engine().eval("sleep(0.05); sleep(0); sleep(-1); 7") == 7
    assert time.monotonic() - started >= 0.05
