"""keygen, sign, cosign and verify from the command line, as a client uses them."""

import json
import stat

import pytest

from zeronode.protocol import keys


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "deploy.rhai"
    path.write_text('print("deploying"); env.ZONE')
    return path


@pytest.fixture
def key(zn, tmp_path):
    path = tmp_path / "client.key"
    result = zn("keygen", "--out", path)
    assert result.returncode == 0, result.stderr
    return path, result.stdout.strip()


def test_keygen_writes_a_private_key_and_prints_the_public_one(zn, key):
    path, public = key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keys.public_key_text(keys.load_private_key(path)) == public
    again = zn("keygen", "--out", path)
    assert again.returncode == 1
    assert again.stderr.strip() == f"error: {path} exists; refusing to overwrite it (use --force)"
    forced = zn("keygen", "--out", path, "--force")
    assert forced.returncode == 0 and forced.stdout.strip() != public


def test_sign_then_verify(zn, key, script, tmp_path):
    path, public = key
    out = tmp_path / "envelope.json"
    signed = zn("sign", script, "--key", path, "--target", "edge-1", "--target", "edge-2",
                "--timeout", "30", "--ttl", "600", "--retries", "2", "--env", "ZONE=eu", "--out", out)
    assert signed.returncode == 0, signed.stderr
    envelope = json.loads(out.read_text())
    assert envelope["targets"] == ["edge-1", "edge-2"]
    assert (envelope["timeout"], envelope["retries"], envelope["env"]) == (30, 2, {"ZONE": "eu"})
    assert envelope["expires_at"] - envelope["created_at"] == 600
    assert envelope["signer"] == public
    checked = zn("verify", out)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.splitlines() == [
        f"valid: envelope {envelope['id']} for edge-1, edge-2",
        f"signed by {public} (signer)",
    ]


def test_sign_prints_to_stdout_without_out(zn, key, script):
    result = zn("sign", script, "--key", key[0], "--target", "edge-1")
    assert result.returncode == 0
    assert json.loads(result.stdout)["script"] == script.read_text()


def test_tampered_envelope_fails_verification_in_one_line(zn, key, script, tmp_path):
    out = tmp_path / "envelope.json"
    zn("sign", script, "--key", key[0], "--target", "edge-1", "--out", out)
    out.write_text(out.read_text().replace("deploying", "DEPLOYING"))
    result = zn("verify", out)
    assert result.returncode == 1
    assert result.stderr.startswith("error: invalid (bad_signature): signature by ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_cosign_adds_a_signer(zn, key, script, tmp_path):
    envelope = tmp_path / "envelope.json"
    zn("sign", script, "--key", key[0], "--target", "edge-1", "--out", envelope)
    second = tmp_path / "second.key"
    second_public = zn("keygen", "--out", second).stdout.strip()
    cosigned = tmp_path / "cosigned.json"
    assert zn("cosign", envelope, "--key", second, "--out", cosigned).returncode == 0
    result = zn("verify", cosigned)
    assert result.returncode == 0
    assert f"signed by {second_public}" in result.stdout.splitlines()
    again = zn("cosign", cosigned, "--key", second)
    assert again.returncode == 1 and "already signed" in again.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "edge-1", "--key", "{missing}"], "error: cannot open key file"),
        (["--target", "../etc", "--key", "{key}"], "error: targets.0: String should match pattern"),
        (["--target", "edge-1", "--key", "{key}", "--env", "1X=2"], "error: env.1X"),
    ],
)
def test_sign_errors_are_one_line(zn, key, script, tmp_path, args, message):
    args = [a.format(missing=tmp_path / "absent.key", key=key[0]) for a in args]
    result = zn("sign", script, *args)
    assert result.returncode == 1
    assert result.stderr.startswith(message), result.stderr
    assert "Traceback" not in result.stderr


def test_world_readable_key_is_refused(zn, key, script):
    key[0].chmod(0o644)
    result = zn("sign", script, "--key", key[0], "--target", "edge-1")
    assert result.returncode == 1
    assert "readable by group or others (mode 0644)" in result.stderr


def test_verify_of_garbage_is_one_line(zn, tmp_path):
    junk = tmp_path / "junk.json"
    junk.write_text("not json at all")
    result = zn("verify", junk)
    assert result.returncode == 1
    assert result.stderr.startswith("error: invalid (invalid_json): not JSON")
    missing = zn("verify", tmp_path / "absent.json")
    assert missing.returncode == 1 and missing.stderr.startswith("error: cannot read envelope")
