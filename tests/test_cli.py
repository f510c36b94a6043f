"""The `zeronode` command, run as a user would: a real process."""

import json
import os
import re
from pathlib import Path

import pytest

import rhai
import zeronode

ROOT = Path(__file__).resolve().parent.parent


def test_help_lists_the_commands(zn):
    result = zn("--help")
    assert result.returncode == 0
    for command in ("version", "run", "keygen", "sign", "cosign", "verify"):
        assert command in result.stdout


def test_version(zn):
    for argv in (["version"], ["--version"]):
        result = zn(*argv)
        assert result.returncode == 0
        assert result.stdout.strip() == f"zeronode {zeronode.__version__} (rhai-py {rhai.__version__})"


def test_dash_h_is_help_everywhere(zn):
    for argv in (["-h"], ["release", "-h"], ["deploy", "-h"]):
        result = zn(*argv)
        assert result.returncode == 0 and "Usage: zeronode" in result.stdout, argv


def test_run_hello_example_prints_output_and_result(zn):
    result = zn("run", str(ROOT / "scripts/examples/hello.rhai"))
    assert result.returncode == 0, result.stderr
    assert "prepared 3 greetings" in result.stdout
    payload = json.loads(result.stdout[result.stdout.index("{") :])
    assert payload["answer"] == 42
    assert payload["greetings"] == ["hello from edge-1", "hello from edge-2", "hello from edge-3"]


def test_run_passes_env(zn, tmp_path):
    script = tmp_path / "env.rhai"
    script.write_text("env.REGION + '-' + env.SIZE")
    result = zn("run", str(script), "--env", "REGION=eu", "--env", "SIZE=2")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == "eu-2"


@pytest.mark.parametrize(
    ("source", "expected", "timeout"),
    [
        ("let x = ;", r"error: bad\.rhai:1:9: Unexpected ';'", 5),
        ("let a = 1;\nnope()", r"error: bad\.rhai:2:1: Function not found: nope \(\)", 5),
        # A generous timeout: the operation limit, not the clock, must stop this one.
        ("loop {}", r"error: bad\.rhai:1:\d+: Too many operations", 30),
        # Where a timeout strikes within the line depends on timing: the column is not fixed.
        ("let t = timestamp();\nwhile t.elapsed < 60 { }", r"error: bad\.rhai:2:\d+: script timed out", 0.3),
    ],
)
def test_script_errors_are_one_line(zn, tmp_path, source, expected, timeout):
    script = tmp_path / "bad.rhai"
    script.write_text(source)
    result = zn("run", str(script), "--timeout", str(timeout))
    assert result.returncode == 1
    assert re.fullmatch(expected, result.stderr.strip())
    assert "Traceback" not in result.stderr


def test_missing_file_and_bad_env_are_one_line(zn, tmp_path):
    missing = zn("run", str(tmp_path / "absent.rhai"))
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: cannot read")
    assert "Traceback" not in missing.stderr
    script = tmp_path / "ok.rhai"
    script.write_text("1")
    bad_env = zn("run", str(script), "--env", "NOEQUALS")
    assert bad_env.returncode == 1
    assert bad_env.stderr.strip() == "error: --env takes KEY=VALUE, got 'NOEQUALS'"


def test_a_runner_with_an_unknown_driver_or_no_storage_pool_says_so_in_one_line(zn, tmp_path):
    config = tmp_path / "node.toml"
    config.write_text(f'state_dir = "{tmp_path}"\nstorage_root = "{tmp_path}"\nhypervisor = "xen"\n')
    result = zn("runner", "--burst", "--config", config)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: cannot set up this node's drivers: hypervisor = 'xen' is not a hypervisor driver; "
        "known: auto, cloud-hypervisor, qemu, simulated"
    ]
    config.write_text(f'state_dir = "{tmp_path}"\nstorage_root = "{tmp_path}"\nhypervisor = "qemu"\n'
                      'qemu_binary = "no-such-qemu"\n')
    result = zn("runner", "--burst", "--config", config)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: cannot set up this node's drivers: hypervisor = \"qemu\" but 'no-such-qemu' is not installed "
        "(Debian: qemu-system-x86)"
    ]
    config.write_text(f'state_dir = "{tmp_path}"\nstorage_root = "{tmp_path}/missing"\n')
    result = zn("runner", "--burst", "--config", config)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: cannot set up this node's drivers: storage pool ")


def test_up_with_an_unknown_hypervisor_driver_says_so_before_starting_anything(zn, tmp_path):
    result = zn("up", "--once", "--hypervisor", "xen", "--state-dir", tmp_path / "up")
    assert result.returncode == 1
    assert "error: --hypervisor: hypervisor = 'xen' is not a hypervisor driver; known: " in result.stderr
    assert not (tmp_path / "up" / "logs" / "redis.log").exists()


def test_what_a_script_says_is_printed_as_text_never_as_markup(zn, tmp_path):
    script = tmp_path / "marked.rhai"
    script.write_text('print("value [b]bold[/b] a:running:b [red]"); debug("[/]");\n'
                      'throw "bad value [x] in [/tmp/path] and ^[a-z2-7]{26}$";')
    result = zn("run", str(script))
    assert result.returncode == 1 and "Traceback" not in result.stderr and "MarkupError" not in result.stderr
    assert "│ value [b]bold[/b] a:running:b [red]" in result.stdout  # no bold, no emoji, nothing eaten
    assert "[/]" in result.stdout
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "bad value [x] in [/tmp/path] and ^[a-z2-7]{26}$" in line
    result_text = tmp_path / "result.rhai"
    result_text.write_text('"value [b]bold[/b]"')
    assert json.loads(zn("run", str(result_text)).stdout) == "value [b]bold[/b]"


def test_simple_mistakes_are_one_line_errors(zn, tmp_path):
    key = tmp_path / "k.key"
    assert zn("keygen", "--out", str(key)).returncode == 0
    script = tmp_path / "s.rhai"
    script.write_text("1")
    cases = {
        ("deploy", script, "--key", key, "--target", "bad name!"): "targets",
        ("deploy", script, "--key", key, "--target", "a" * 26, "--timeout", "0"): "timeout",
        ("nodes", "--status", "bogus", "--ledger", "http://127.0.0.1:9"): "status",
        ("jobs", "--node", "a" * 26, "--key", key, "--status", "bogus"): "--status 'bogus': one of queued",
    }
    for argv, said in cases.items():
        result = zn(*argv)
        assert result.returncode == 1, (argv, result.stdout)
        [line] = result.stderr.strip().splitlines()  # one line, no traceback
        assert line.startswith("error: ") and said in line, (argv, line)


def test_deploy_compiles_the_script_first_and_names_its_file(zn, tmp_path):
    """A syntax error is told once, here, with the file's name, before anything is signed or sent: coord's
    address is one where nothing answers, and the error is the script's, not coord's."""
    key = tmp_path / "k.key"
    assert zn("keygen", "--out", str(key)).returncode == 0
    script = tmp_path / "broken.rhai"
    script.write_text('let x = 1;\nlet y = ;\n')
    result = zn("deploy", str(script), "--key", str(key), "--target", "a" * 26, "--coord", "http://127.0.0.1:9")
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: broken.rhai:2:9: ") and "nothing was signed or sent" in line, line


def test_reads_refuse_a_bad_status_in_one_line(zn, tmp_path):
    key = tmp_path / "k.key"
    assert zn("keygen", "--out", str(key)).returncode == 0
    result = zn("deployments", "--key", str(key), "--status", "bogus", "--coord", "http://127.0.0.1:9")
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line == "error: --status 'bogus': one of pending, running, succeeded, failed, canceled"


def test_shell_completion_completes_commands(zn):
    script = zn("--show-completion", env={**os.environ, "SHELL": "/bin/bash"})
    assert script.returncode == 0 and "_zeronode_completion" in script.stdout and "complete " in script.stdout
    completed = zn(env={**os.environ, "_ZERONODE_COMPLETE": "complete_bash", "COMP_WORDS": "zeronode dep", "COMP_CWORD": "1"})
    assert completed.stdout.split() == ["deploy", "deployments"]
    options = zn(env={**os.environ, "_ZERONODE_COMPLETE": "complete_bash", "COMP_WORDS": "zeronode logs --fo", "COMP_CWORD": "2"})
    assert options.stdout.split() == ["--follow"]


def test_every_read_command_takes_json(zn):
    reads = [["status"], ["deployments"], ["logs"], ["cancel"], ["nodes"], ["jobs"], ["policies", "list"],
             ["release", "list"], ["release", "status"], ["vm", "events"], ["deploy"], ["submit"]]
    for argv in reads:
        shown = zn(*argv, "-h")
        assert shown.returncode == 0 and "--json" in shown.stdout, argv
