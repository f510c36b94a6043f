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


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can make a file another user's")
def test_root_writing_in_another_users_directory_gives_them_the_file(tmp_path):
    """The identity manager and the runners (root) write the node key and rights.json in the supervisor's
    state directory: the supervisor's user must be able to read them, whoever made them first."""
    from zeronode.protocol import keys

    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, 4242, 4343)
    write_atomic(state / "rights.json", "{}")
    keys.save_private_key(keys.generate(), state / "node.key")
    for name in ("rights.json", "node.key"):
        found = (state / name).stat()
        assert (found.st_uid, found.st_gid, stat.S_IMODE(found.st_mode)) == (4242, 4343, 0o600), name
    mine = tmp_path / "root's.json"  # in root's own directory, root's file
    write_atomic(mine, "{}")
    assert (mine.stat().st_uid, mine.stat().st_gid) == (0, 0)
