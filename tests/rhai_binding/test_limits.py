"""Every safety limit: bounded by default, configurable, and reported by name."""

import math

import pytest

import rhai

UNBOUNDED_OPS = 10**12


def test_every_limit_is_bounded_by_default():
    limits = rhai.Engine().limits
    assert set(limits) == {
        "max_operations",
        "max_call_levels",
        "max_expr_depth",
        "max_function_expr_depth",
        "max_string_size",
        "max_array_size",
        "max_map_size",
        "max_variables",
        "max_functions",
        "max_modules",
        "max_memory",
        "max_value_depth",
    }
    assert all(0 < value < 2**32 for value in limits.values())


def test_limits_are_configurable():
    engine = rhai.Engine(max_operations=123, max_map_size=7, timeout=2.5)
    assert engine.limits["max_operations"] == 123
    assert engine.limits["max_map_size"] == 7
    assert engine.timeout == 2.5


@pytest.mark.parametrize(
    "name", ["max_operations", "max_call_levels", "max_string_size", "max_modules", "max_memory", "max_value_depth"]
)
def test_zero_would_mean_unlimited_and_is_refused(name):
    with pytest.raises(ValueError, match=name):
        rhai.Engine(**{name: 0})


@pytest.mark.parametrize("timeout", [0, -1, math.nan, math.inf])
def test_timeout_must_be_positive_and_finite(timeout):
    with pytest.raises(ValueError, match="timeout"):
        rhai.Engine(timeout=timeout)
    with pytest.raises(ValueError, match="timeout"):
        rhai.Engine().eval("1", timeout=timeout)


def test_infinite_loop_stopped_by_timeout():
    engine = rhai.Engine(max_operations=UNBOUNDED_OPS)
    with pytest.raises(rhai.Timeout) as info:
        engine.eval("loop { }", timeout=0.2)
    assert info.value.limit == "timeout"
    assert isinstance(info.value, rhai.LimitError)


def test_engine_timeout_is_the_default_and_eval_overrides_it():
    engine = rhai.Engine(max_operations=UNBOUNDED_OPS, timeout=0.1)
    with pytest.raises(rhai.Timeout):
        engine.eval("loop { }")
    # A per-call timeout replaces the default: this script outlives 0.1 s.
    busy = "let n = 0; let t = timestamp(); while t.elapsed < 0.3 { n += 1 } n > 0"
    assert engine.eval(busy, timeout=5) is True


# (engine limits, script, the limit it must hit); compile-time limits raise from compile().
RUNTIME_LIMITS = [
    ({"max_operations": 10_000}, "let x = 0;\nloop { x += 1; }", "max_operations"),
    ({"max_call_levels": 20}, "fn down(n) { down(n + 1) }\ndown(0)", "max_call_levels"),
    ({"max_string_size": 1000}, 'let s = "x"; loop { s += s; }', "max_string_size"),
    ({"max_array_size": 100}, "let a = []; loop { a.push(1); }", "max_array_size"),
    ({"max_array_size": 100}, "blob(1000)", "max_array_size"),
    ({"max_map_size": 3}, "let m = #{a: 1}; m.b = 2; m.c = 3; m.d = 4; m.e = 5;", "max_map_size"),
    ({"max_variables": 3}, "let a = 1; let b = 2; let c = 3; let d = 4;", "max_variables"),
    ({"max_value_depth": 10}, "let a = [];\nloop { a = [a]; }", "max_value_depth"),
    ({"max_value_depth": 10}, 'fn f(x) { x }\nlet p = Fn("f");\nloop { p = Fn("f").curry(p); }', "max_value_depth"),
    ({"max_memory": 2**20}, "let a = [];\nloop { a.push(`item ${a.len()}`); }", "max_memory"),
]
COMPILE_TIME_LIMITS = [
    ({"max_expr_depth": 10}, "(" * 20 + "1" + ")" * 20, "max_expr_depth"),
    ({"max_string_size": 10}, '"' + "y" * 50 + '"', "max_string_size"),
    ({"max_functions": 3}, "\n".join(f"fn f{i}() {{ {i} }}" for i in range(5)), "max_functions"),
]


@pytest.mark.parametrize(("limits", "source", "limit"), RUNTIME_LIMITS, ids=[c[2] for c in RUNTIME_LIMITS])
def test_runaway_script_stopped_by_limit(limits, source, limit):
    engine = rhai.Engine(**limits)
    ast = engine.compile(source)
    with pytest.raises(rhai.LimitError) as info:
        engine.eval(ast)
    assert info.value.limit == limit
    assert info.value.line is not None


@pytest.mark.parametrize(("limits", "source", "limit"), COMPILE_TIME_LIMITS, ids=[c[2] for c in COMPILE_TIME_LIMITS])
def test_oversized_script_refused_at_compile_time(limits, source, limit):
    with pytest.raises(rhai.LimitError) as info:
        rhai.Engine(**limits).compile(source)
    assert info.value.limit == limit
    # The same script compiles under the default limits: the limit, not the script, refused it.
    rhai.Engine().compile(source)


def test_oversized_result_caught_even_where_rhai_does_not_check():
    # Indexed assignment is not size-checked by Rhai itself; the result is.
    script = "let m = #{}; for i in 0..50 { m[`k${i}`] = i } m"
    with pytest.raises(rhai.LimitError) as info:
        rhai.Engine(max_map_size=10).eval(script)
    assert info.value.limit == "max_map_size"
    assert len(rhai.Engine(max_map_size=50).eval(script)) == 50


def test_too_deeply_nested_result_refused():
    # Built within max_value_depth, but deeper than a value may cross into Python.
    script = "let a = []; for i in 0..300 { a = [a] } a"
    with pytest.raises(rhai.LimitError) as info:
        rhai.Engine(max_value_depth=1000).eval(script)
    assert info.value.limit == "result_depth"
    assert rhai.Engine().eval(script.replace("300", "100")) is not None


def test_closures_nest_through_captured_variables_and_are_refused_as_results():
    # Each closure captures the previous one: no limit on building, but no crossing either.
    chain = "let p = 0; for i in 0..1000 { let q = p; p = || q; } p"
    with pytest.raises(rhai.LimitError) as info:
        rhai.Engine().eval(chain)
    assert info.value.limit == "result_depth"
    # A closure that captured itself is a cycle: infinitely deep, refused the same way.
    with pytest.raises(rhai.LimitError) as info:
        rhai.Engine().eval("let f = 0; f = || f; f")
    assert info.value.limit == "result_depth"
    assert rhai.Engine().eval('fn g(x) { x } Fn("g").curry([1, 2]).curry(#{a: "x"})') == ["g", [1, 2], {"a": "x"}]
