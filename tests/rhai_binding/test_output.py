"""`print` and `debug` go to Python callbacks, never to stdout."""

import logging

import pytest

import rhai


def test_print_and_debug_reach_per_call_callbacks(capfd):
    printed, debugged = [], []
    rhai.Engine().eval(
        'print("one");\nprint(2);\ndebug("three");',
        on_print=printed.append,
        on_debug=lambda text, line: debugged.append((text, line)),
    )
    assert printed == ["one", "2"]
    assert debugged == [('"three"', 3)]
    assert capfd.readouterr().out == ""


def test_engine_callbacks_are_the_default_and_calls_override_them():
    engine_lines, call_lines = [], []
    engine = rhai.Engine(on_print=engine_lines.append)
    engine.eval('print("a")')
    engine.eval('print("b")', on_print=call_lines.append)
    assert engine_lines == ["a"]
    assert call_lines == ["b"]


def test_without_callbacks_output_goes_to_the_rhai_logger(caplog, capfd):
    with caplog.at_level(logging.DEBUG, logger="rhai"):
        rhai.Engine().eval('print("to the log"); debug("dbg")')
    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [
        ("rhai", "INFO", "to the log"),
        ("rhai", "DEBUG", '"dbg"'),
    ]
    assert capfd.readouterr().out == ""


def test_failing_output_callback_stops_the_script_with_its_exception():
    def broken(_line):
        raise OSError("log disk full")

    engine = rhai.Engine()
    with pytest.raises(OSError, match="log disk full"):
        engine.eval('print("x"); let n = 0; for i in 0..100000 { n += i } n', on_print=broken)
    # Even when the print is the script's last act.
    with pytest.raises(OSError, match="log disk full"):
        engine.eval('print("x")', on_print=broken)
