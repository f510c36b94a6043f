"""Evaluating scripts: values in both directions, scope, compiled ASTs, errors with positions."""

import pytest

import rhai


@pytest.fixture
def engine():
    return rhai.Engine()


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("40 + 2", 42),
        ("1.5 * 2", 3.0),
        ("true && !false", True),
        ('"zero" + "node"', "zeronode"),
        ("'x'", "x"),  # a Rhai char arrives as str
        ("()", None),
        ("let x = 1;", None),
        ("[1, [2, 3], #{a: 4}]", [1, [2, 3], {"a": 4}]),
        ("#{name: \"web1\", disks: [#{gb: 10}], up: false}", {"name": "web1", "disks": [{"gb": 10}], "up": False}),
        ("blob(3, 0x41)", b"AAA"),
        ("9223372036854775807", 2**63 - 1),
        ("-9223372036854775807 - 1", -(2**63)),
    ],
)
def test_values_come_back_as_python_types(engine, source, expected):
    result = engine.eval(source)
    assert result == expected
    assert type(result) is type(expected)


def test_scope_variables_are_visible_and_converted(engine):
    scope = {
        "n": 41,
        "f": 0.5,
        "flag": True,
        "name": "web",
        "nothing": None,
        "items": [1, "two", [3.0]],
        "config": {"vcpus": 2, "tags": {"env": "prod"}},
        "raw": b"\x00\xff",
    }
    assert engine.eval("n + 1", scope) == 42
    assert engine.eval("type_of(flag) + type_of(nothing) + type_of(raw) + type_of(items)", scope) == "bool()blobarray"
    assert engine.eval("config.tags.env + items[1]", scope) == "prodtwo"
    assert engine.eval("raw.len()", scope) == 2
    # Every value survives the trip into Rhai and back unchanged.
    for name, value in scope.items():
        assert engine.eval(name, scope) == value


def test_tuples_become_arrays(engine):
    assert engine.eval("t", {"t": (1, 2)}) == [1, 2]


def test_scope_rejects_values_rhai_cannot_hold(engine):
    with pytest.raises(TypeError, match="scope variable 'x'"):
        engine.eval("x", {"x": object()})
    with pytest.raises(TypeError, match="keys must be str"):
        engine.eval("1", {1: 2})


def test_ints_beyond_64_bits_are_refused_not_rounded(engine):
    with pytest.raises(OverflowError, match="scope variable 'x': int 1180591620717411303424 does not fit"):
        engine.eval("x", {"x": 2**70})
    engine.register("big", lambda: 2**64)
    with pytest.raises(rhai.EvalError, match="OverflowError") as info:
        engine.eval("big()")
    assert isinstance(info.value.__cause__, OverflowError)


def test_deeply_nested_input_is_refused_not_a_crash(engine):
    value = []
    for _ in range(100_000):
        value = [value]
    with pytest.raises(ValueError, match="nested deeper than 256"):
        engine.eval("x", {"x": value})


def test_script_must_be_text_or_ast(engine):
    with pytest.raises(TypeError, match="str or rhai.AST"):
        engine.eval(b"40 + 2")


def test_exit_returns_its_value(engine):
    assert engine.eval("exit(7); 1") == 7


def test_compiled_ast_is_reusable_with_different_scopes(engine):
    ast = engine.compile("x * 2", name="double.rhai")
    assert ast.name == "double.rhai"
    assert [engine.eval(ast, {"x": i}) for i in range(5)] == [0, 2, 4, 6, 8]
    # The same AST runs on another engine too.
    assert rhai.Engine().eval(ast, {"x": 21}) == 42


def test_syntax_error_has_position_and_source_name(engine):
    with pytest.raises(rhai.ParseError) as info:
        engine.compile("let a = 1;\nlet b = ;\n", name="deploy.rhai")
    error = info.value
    assert (error.line, error.column) == (2, 9)
    assert error.source_name == "deploy.rhai"
    assert error.message == "Unexpected ';'"
    assert str(error) == "deploy.rhai:2:9: Unexpected ';'"


def test_syntax_error_from_eval_of_text(engine):
    with pytest.raises(rhai.ParseError) as info:
        engine.eval("fn f( {")
    assert info.value.line == 1
    assert info.value.source_name is None
    assert isinstance(info.value, rhai.RhaiError)


def test_runtime_error_points_at_the_failing_line(engine):
    source = "let x = 1;\nfn inner(a) {\n    a + missing\n}\ninner(x)"
    with pytest.raises(rhai.EvalError) as info:
        engine.eval(engine.compile(source, name="f.rhai"))
    error = info.value
    assert (error.line, error.column) == (3, 9)
    assert "missing" in error.message
    assert error.source_name == "f.rhai"


def test_thrown_value_is_an_eval_error(engine):
    with pytest.raises(rhai.EvalError, match="Runtime error: 42") as info:
        engine.eval('\n  throw 42')
    assert (info.value.line, info.value.column) == (2, 3)


def test_imports_cannot_read_files(engine, tmp_path, monkeypatch):
    (tmp_path / "secret.rhai").write_text("export const leaked = 1;")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(rhai.EvalError, match="Module not found"):
        engine.eval('import "secret" as s; s::leaked')


def test_rust_panic_becomes_python_exception():
    with pytest.raises(rhai.RhaiError, match="internal error in the Rhai engine: kaboom"):
        rhai._rhai._panic_inside_guard("kaboom")
