"""What a script may hold (max_memory) and how deeply its values may nest (max_value_depth):
no script can grow the process without bound, and none can crash it with a deep value.

Every case that could crash or bloat the process runs in a subprocess: a crash shows as a
negative return code (the signal), and the memory it took as the subprocess's peak RSS.
"""

import json
import subprocess
import sys
import textwrap
import threading

import pytest

import rhai

MiB = 1024 * 1024

# A string near max_string_size (4 MiB by default), then 700 function pointers carrying
# a copy each: 2.8 GB if nothing counts what function pointers carry.
BIG_STRING = 'let s = "x"; while s.len < 4000000 { s += s } s = s.sub_string(0, 4000000);'
MEMORY_BOMBS = {
    "curried, kept in an array": 'fn f(x) { x } let a = []; for i in 0..700 { a.push(Fn("f").curry(s + i)); } a.len',
    "curried, chained": 'fn f(x, y) { x } let p = Fn("f"); for i in 0..700 { p = Fn("f").curry(p, s + i); } 1',
    "captured by closures": "let keep = []; for i in 0..700 { let t = s + i; keep.push(|| t.len); } keep.len",
    "one variable each, down a recursion": "fn down(n, s) { let t = s + n; if n == 0 { 0 } else { down(n - 1, s) + t.len } } down(60, s)",
}

CHILD = """
import json, resource, sys, threading
import rhai

def peak_rss():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024

def run(engine_kwargs, script, stack_size, repeat):
    outcome = {}
    def target():
        engine = rhai.Engine(**engine_kwargs)
        for attempt in range(repeat):
            try:
                value = engine.eval(script)
                outcome["result"] = value if isinstance(value, (int, str, bool, type(None))) else repr(type(value))
                outcome.pop("error", None)
            except rhai.RhaiError as exc:
                outcome["error"] = type(exc).__name__
                outcome["limit"] = getattr(exc, "limit", None)
                outcome["line"] = exc.line
    before = peak_rss()
    if stack_size:
        threading.stack_size(stack_size)
    worker = threading.Thread(target=target)
    worker.start()
    worker.join()
    outcome["rss_growth"] = peak_rss() - before
    return outcome

print(json.dumps(run(*json.loads(sys.argv[1]))))
"""


def run_isolated(script, engine_kwargs=None, *, stack_size=0, repeat=1, address_space=4 * 1024 * MiB):
    """Run `script` in a fresh interpreter (on a thread with `stack_size`, 0 for the default)
    under an address-space ceiling; the process must exit normally, whatever the script did."""
    args = json.dumps([engine_kwargs or {}, script, stack_size, repeat])
    limit_memory = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({address_space}, {address_space}))\n"
    child = subprocess.run(
        [sys.executable, "-c", limit_memory + textwrap.dedent(CHILD), args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == 0, f"the process died (return code {child.returncode}): {child.stderr[-2000:]}"
    return json.loads(child.stdout)


@pytest.mark.parametrize("bomb", MEMORY_BOMBS.values(), ids=MEMORY_BOMBS.keys())
def test_memory_bomb_is_stopped_by_max_memory_and_the_process_stays_small(bomb):
    outcome = run_isolated(BIG_STRING + bomb, {"max_memory": 64 * MiB})
    assert outcome.get("error") == "LimitError", outcome
    assert outcome["limit"] == "max_memory"
    assert outcome["line"] is not None
    # 64 MiB of budget, plus a few operations' worth of overshoot and the allocator's slack.
    assert outcome["rss_growth"] < 160 * MiB, outcome


def test_memory_bomb_under_the_default_limits():
    assert rhai.Engine().limits["max_memory"] == 256 * MiB
    outcome = run_isolated(BIG_STRING + MEMORY_BOMBS["curried, kept in an array"])
    assert outcome.get("limit") == "max_memory", outcome
    assert outcome["rss_growth"] < 400 * MiB, outcome


def test_a_big_but_legal_script_still_runs():
    # Near max_string_size, several big strings alive at once, closures holding them.
    script = BIG_STRING + """
        let parts = [s.sub_string(0, 1000000), s.sub_string(1000000, 1000000)];
        let keep = || parts[0].len + parts[1].len;
        let t = s + "!";
        keep.call() + t.len + parts.len()
    """
    assert rhai.Engine().eval(script) == 2_000_000 + 4_000_001 + 2


def test_max_memory_is_per_run():
    engine = rhai.Engine(max_memory=32 * MiB)
    bomb = BIG_STRING + MEMORY_BOMBS["curried, kept in an array"]
    for _ in range(3):
        with pytest.raises(rhai.LimitError) as info:
            engine.eval(bomb)
        assert info.value.limit == "max_memory"
        # What the refused run held is not held against the next one.
        assert engine.eval(BIG_STRING + "let t = s + s.sub_string(0, 10); t.len") == 4_000_010


def test_max_memory_is_per_run_in_a_subprocess_too():
    # The same engine runs the bomb twice: each run is refused, neither grows the process much.
    outcome = run_isolated(BIG_STRING + MEMORY_BOMBS["captured by closures"], {"max_memory": 64 * MiB}, repeat=4)
    assert outcome.get("limit") == "max_memory", outcome
    assert outcome["rss_growth"] < 160 * MiB, outcome


def test_max_memory_counts_scripts_on_their_own_thread():
    # Four threads run one engine at once: one script exceeds the budget, three stay within it.
    engine = rhai.Engine(max_memory=48 * MiB)
    hold = 'fn f(x) { x } let keep = []; for i in 0..N { keep.push(Fn("f").curry(s + i)); } keep.len()'
    small = BIG_STRING + hold.replace("N", "5")  # about 20 MB
    big = BIG_STRING + hold.replace("N", "50")  # about 200 MB
    results = {}

    def run(name, script):
        try:
            results[name] = engine.eval(script)
        except rhai.LimitError as exc:
            results[name] = exc.limit

    threads = [threading.Thread(target=run, args=(f"small{i}", small)) for i in range(3)]
    threads.append(threading.Thread(target=run, args=("big", big)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {"small0": 5, "small1": 5, "small2": 5, "big": "max_memory"}


def test_a_nested_eval_never_gets_more_than_its_caller_has_left():
    outer = rhai.Engine(max_memory=32 * MiB)
    inner = rhai.Engine()  # 256 MiB of its own, but it runs inside the outer script's budget
    inner_limits = []

    def nested():
        try:
            return inner.eval(
                BIG_STRING + 'fn f(x) { x } let keep = []; for i in 0..20 { keep.push(Fn("f").curry(s + i)); } keep.len()'
            )
        except rhai.LimitError as exc:
            inner_limits.append(exc.limit)
            return -1

    outer.register("nested", nested)
    assert outer.eval("nested()") == -1
    assert inner_limits == ["max_memory"]
    # On its own, the inner script is within its budget.
    assert nested() == 20


# Every way a script can nest a value 100,000 deep. Each ends with an exception or a result,
# never with the process killed by a stack overflow (dropping, cloning or walking it).
DEEP_VALUES = {
    "curry": ('fn f(x) { x } let p = Fn("f"); for i in 0..100000 { p = Fn("f").curry(p); } 1', "max_value_depth"),
    "curry, moved": ('fn f(x) { x } let p = Fn("f"); for i in 0..100000 { p = Fn("f").curry(take(p)); } 1', "max_value_depth"),
    "array": ("let a = []; for i in 0..100000 { a = [a]; } 1", "max_value_depth"),
    "array, index assignment": ("let a = [0]; for i in 0..100000 { let b = [0]; b[0] = take(a); a = b; } 1", "max_value_depth"),
    "array, push": ("let a = []; for i in 0..100000 { let b = []; b.push(take(a)); a = b; } 1", "max_value_depth"),
    "map": ("let m = #{}; for i in 0..100000 { m = #{inner: take(m)}; } 1", "max_value_depth"),
    "map, property assignment": ("let m = #{}; for i in 0..100000 { let n = #{}; n.inner = take(m); m = n; } 1", "max_value_depth"),
    "array, map and curry mixed": (
        'fn f(x) { x } let a = []; for i in 0..100000 { a = [#{x: Fn("f").curry(take(a))}]; } 1',
        "max_value_depth",
    ),
    # Closures capture variables as shared values: each is a value of its own, so chains of
    # them are not refused while they are built, and are dropped without recursion.
    "closures capturing closures": ("let p = 0; for i in 0..100000 { let q = p; p = || q; } 1", 1),
    "closures linked after capture": (
        "let prev = || 0; for i in 0..100000 { let x = 0; let g = || x; x = prev; prev = g; } 1",
        1,
    ),
    "closure chain, printed, hashed, serialized": (
        "let p = 0; for i in 0..100000 { let q = p; p = || [q]; }"
        " let text = `${[p]}` + [p].to_debug() + #{p: p}.to_json(); switch [p] { 1 => 0, _ => text.len() > 0 }",
        True,
    ),
    "closure chain, returned": ("let p = 0; for i in 0..100000 { let q = p; p = || q; } p", "result_depth"),
    "closure that captured itself, returned": ("let f = 0; f = || f; f", "result_depth"),
}


@pytest.mark.parametrize(("script", "expected"), DEEP_VALUES.values(), ids=DEEP_VALUES.keys())
def test_a_deep_value_never_crashes_the_process(script, expected):
    # A 1 MiB stack, an eighth of the default: the outcome must not depend on it.
    outcome = run_isolated(script, stack_size=1 * MiB)
    if isinstance(expected, str):
        assert outcome.get("error") == "LimitError", outcome
        assert outcome["limit"] == expected
    else:
        assert outcome.get("result") == expected, outcome


def test_the_deepest_values_the_limits_allow_never_crash_the_process():
    # Chains of closures grow until the memory budget stops them: about two million levels.
    for script in (
        "let p = 0; loop { let q = p; p = || q; }",
        "let prev = || 0; loop { let x = 0; let g = || x; x = prev; prev = g; }",
        'fn f(x) { x } let p = 0; loop { let q = p; p = || Fn("f").curry([[#{a: q}]]); }',
    ):
        outcome = run_isolated(script, stack_size=1 * MiB)
        assert outcome.get("limit") == "max_memory", (script, outcome)
        assert outcome["rss_growth"] < 400 * MiB, outcome


def test_a_deep_closure_passed_to_python_is_refused_not_a_crash():
    engine = rhai.Engine()
    engine.register("show", lambda value: str(value))
    with pytest.raises(rhai.EvalError, match="nested deeper than 256") as info:
        engine.eval("let p = 0; for i in 0..1000 { let q = p; p = || q; } show(p)")
    assert isinstance(info.value.__cause__, ValueError)
    assert engine.eval('fn f(x) { x } show(Fn("f").curry(1))') == "['f', 1]"


def test_max_value_depth_is_configurable():
    script = "let a = []; for i in 0..n { a = [a]; } 1"  # n + 1 levels: [] is one
    engine = rhai.Engine(max_value_depth=20)
    assert engine.limits["max_value_depth"] == 20
    assert engine.eval(script, {"n": 19}) == 1
    with pytest.raises(rhai.LimitError) as info:
        engine.eval(script, {"n": 20})
    assert info.value.limit == "max_value_depth"
    assert info.value.line == 1
    assert rhai.Engine().limits["max_value_depth"] == 256
    assert rhai.Engine().eval(script, {"n": 255}) == 1
    # Deeper would overflow the stack of a thread comparing or printing such values.
    assert rhai.Engine(max_value_depth=1024).eval(script + "; a == a", {"n": 1023}) is True
    with pytest.raises(ValueError, match="max_value_depth must be at most 1024"):
        rhai.Engine(max_value_depth=1025)
