"""zeronode.files.write_atomic: a reader sees the old file or the new one, never a torn one."""

import os
import stat
import threading

import pytest

from zeronode.files import write_atomic


def test_new_file_is_private_and_whole(tmp_path):
    path = tmp_path / "state.json"
    write_atomic(path, '{"a": 1}')
    assert path.read_text() == '{"a": 1}'
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["state.json"]  # no temporary left behind


def test_mode_can_be_widened_for_files_others_read(tmp_path):
    path = tmp_path / "public.txt"
    write_atomic(path, b"x", mode=0o644)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    path = tmp_path / "state.json"
    write_atomic(path, "old")
    with pytest.raises(TypeError):
        write_atomic(path, object())  # type: ignore[arg-type]
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["state.json"]


def test_concurrent_reader_never_sees_a_partial_file(tmp_path):
    # The failure this guards against: `up` rewriting cluster.json while a test read it, and
    # the reader getting an empty file (a truncate-then-write).
    path = tmp_path / "cluster.json"
    bodies = {("x" * 200_000), ("y" * 300_000)}
    write_atomic(path, "x" * 200_000)
    stop = threading.Event()
    seen = set()

    def read() -> None:
        while not stop.is_set():
            seen.add(path.read_text())

    reader = threading.Thread(target=read)
    reader.start()
    for round_ in range(200):
        write_atomic(path, "y" * 300_000 if round_ % 2 else "x" * 200_000)
    stop.set()
    reader.join()
    assert seen <= bodies
