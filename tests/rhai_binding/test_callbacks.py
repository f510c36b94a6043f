"""Python functions called from scripts."""

import pytest

import rhai


@pytest.fixture
def engine():
    return rhai.Engine()


def test_register_by_call_and_by_decorator(engine):
    engine.register("add", lambda a, b: a + b)

    @engine.register
    def shout(text):
        return text.upper()

    @engine.register("vm_spec")
    def make_spec(name, vcpus=1):
        return {"name": name, "vcpus": vcpus}

    assert shout("hi") == "HI"  # the decorator returns the function itself
    assert engine.eval('add(40, 2)') == 42
    assert engine.eval('shout("edge")') == "EDGE"
    assert engine.eval('vm_spec("web1").vcpus + vm_spec("db", 4).vcpus') == 5


def test_arguments_and_results_convert_both_ways(engine):
    seen = []

    def echo(value):
        seen.append(value)
        return value

    engine.register("echo", echo)
    value = engine.eval('echo(#{a: [1, 2.5, "s", (), true, blob(2, 1)]})')
    expected = {"a": [1, 2.5, "s", None, True, b"\x01\x01"]}
    assert seen == [expected]
    assert value == expected
    assert engine.eval('let m = echo(#{n: 1}); m.n + 1') == 2


def test_arity_follows_the_signature(engine):
    engine.register("pair", lambda a, b=0: [a, b])
    engine.register("count", lambda *args: len(args))
    assert engine.eval("pair(1)") == [1, 0]
    assert engine.eval("pair(1, 2)") == [1, 2]
    assert engine.eval("count() + count(1, 2, 3)") == 3
    with pytest.raises(rhai.EvalError, match="Function not found: pair"):
        engine.eval("pair(1, 2, 3)")


def test_explicit_arity_for_callables_without_signature(engine):
    engine.register("absolute", abs, arity=1)
    assert engine.eval("absolute(-3)") == 3


def test_bad_registrations_refused(engine):
    with pytest.raises(ValueError, match="valid Rhai function name"):
        engine.register("not a name", lambda: 1)
    with pytest.raises(TypeError, match="keyword-only"):
        engine.register("kw", lambda *, x: x)
    with pytest.raises(TypeError, match="not callable"):
        engine.register_callable("x", 42, [0])
    with pytest.raises(TypeError):
        engine.register(42)


def test_python_exception_becomes_eval_error_with_cause_and_position(engine):
    class QuotaExceeded(Exception):
        pass

    def create_volume(name):
        raise QuotaExceeded(f"no room for {name}")

    engine.register("volume_create", create_volume)
    with pytest.raises(rhai.EvalError) as info:
        engine.eval(engine.compile('let a = 1;\nlet v = volume_create("data");', name="deploy.rhai"))
    error = info.value
    assert isinstance(error.__cause__, QuotaExceeded)
    assert str(error.__cause__) == "no room for data"
    assert error.message == "QuotaExceeded: no room for data"
    assert (error.line, error.column) == (2, 9)
    assert str(error) == "deploy.rhai:2:9: QuotaExceeded: no room for data"


def test_script_can_catch_a_python_exception(engine):
    engine.register("fail", lambda: 1 / 0)
    result = engine.eval('let r = ""; try { fail() } catch (e) { r = `${type_of(e)}: ${e}`; } r')
    assert result == "PythonException: ZeroDivisionError: division by zero"


def test_unconvertible_return_value_is_an_error_in_the_script(engine):
    engine.register("opaque", lambda: object())
    with pytest.raises(rhai.EvalError, match="cannot convert Python object") as info:
        engine.eval("opaque()")
    assert isinstance(info.value.__cause__, TypeError)


def test_keyboard_interrupt_passes_through_untouched(engine):
    def interrupt():
        raise KeyboardInterrupt

    engine.register("interrupt", interrupt)
    with pytest.raises(KeyboardInterrupt):
        engine.eval("interrupt()")


def test_callback_may_evaluate_another_script(engine):
    inner = rhai.Engine()
    printed = []
    engine.register("nested", lambda x: inner.eval("x * 10", {"x": x}, on_print=printed.append))
    assert engine.eval('print("outer"); nested(4) + 2', on_print=printed.append) == 42
    assert printed == ["outer"]
