"""sal.hypervisor.console: a VM's console kept per boot, bounded, and read by followers without loss or garbling."""

from __future__ import annotations

from sal.hypervisor import console


def test_rotation_keeps_the_boots_before_each_cut_to_its_end(tmp_path):
    (tmp_path / "serial.log").write_text("boot one\n")
    console.rotate(tmp_path)
    (tmp_path / "serial.log").write_bytes(b"x" * 10 + b"\n" + b"line\n" * (console.MAX_BYTES // 5 + 10))
    console.rotate(tmp_path)
    assert console.tail(tmp_path, 1, boot=2) == "boot one"
    kept = (tmp_path / "serial.log.1").read_bytes()
    assert len(kept) <= console.MAX_BYTES and kept.startswith(b"line\n") and kept.endswith(b"line\n")
    assert not (tmp_path / "serial.log").exists()


def test_a_live_console_past_its_bound_is_cut_back_to_its_last_lines(tmp_path):
    lines = b"".join(b"line %08d\n" % number for number in range(console.LIVE_MAX // 14 + 1000))
    (tmp_path / "serial.log").write_bytes(lines)
    assert console.trim(tmp_path)
    kept = (tmp_path / "serial.log").read_bytes()
    assert len(kept) <= console.MAX_BYTES and lines.endswith(kept) and kept.startswith(b"line ")
    assert not console.trim(tmp_path)  # under the bound: left alone


def test_a_follower_gets_whole_characters_and_starts_a_new_boot_from_its_start(tmp_path):
    serial = tmp_path / "serial.log"
    serial.write_bytes("ré".encode()[:-1])  # "é" half written
    first = console.read_from(tmp_path, 0)
    assert first.text == "r" and first.offset == 1
    serial.write_bytes("ré\n".encode())
    second = console.read_from(tmp_path, first.offset, first.file)
    assert second.text == "é\n" and second.offset == 4
    end = console.read_from(tmp_path, console.END)
    assert end.text == "" and end.offset == 4
    console.rotate(tmp_path)  # a new boot: another file, already longer than the old offset
    serial.write_text("new boot, and more text than before\n")
    assert console.read_from(tmp_path, end.offset, end.file).text == "new boot, and more text than before\n"
