"""Structured logs (zeronode.logs): one JSON object a line, without ANSI colours, at the level asked for."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from zeronode import logs


def emitted(code: str, **env: str) -> list[dict]:
    """The JSON lines a fresh interpreter writes to stderr after logs.setup() and `code`."""
    program = f"import logging\nfrom zeronode import logs\nlogs.setup()\n{code}"
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", **env})
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stderr.splitlines()]


def test_uvicorns_coloured_copy_of_a_message_is_not_in_the_json_line():
    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, "Started server process [%d]", (7,), None)
    record.color_message = "Started server process [\x1b[36m%d\x1b[0m]"
    line = logs.JsonFormatter().format(record)
    assert "\x1b" not in line and "color_message" not in line
    assert json.loads(line)["msg"] == "Started server process [7]"


def test_request_lines_of_http_clients_show_at_debug_only():
    code = 'logging.getLogger("httpx").info("HTTP Request: GET x"); logging.getLogger("zeronode.t").info("kept")'
    assert [line["msg"] for line in emitted(code)] == ["kept"]
    assert [line["msg"] for line in emitted(code, ZERONODE_LOG_LEVEL="debug")] == ["HTTP Request: GET x", "kept"]
    assert emitted(code, ZERONODE_LOG_LEVEL="warning") == []


def test_a_level_that_is_not_one_is_refused():
    with pytest.raises(ValueError, match="one of debug, info"):
        logs.setup("loud")


def test_lines_written_for_a_request_carry_its_id_and_no_others_do():
    code = (
        'log = logging.getLogger("zeronode.t")\n'
        'with logs.request_context("req-1"):\n'
        '    log.info("inside")\n'
        '    with logs.request_context(None):\n'
        '        log.info("a job without one")\n'
        'log.info("after")\n'
    )
    assert [(line["msg"], line.get("request_id")) for line in emitted(code)] == [
        ("inside", "req-1"), ("a job without one", None), ("after", None),
    ]
