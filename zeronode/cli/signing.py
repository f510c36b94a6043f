"""`zeronode keygen`, `sign`, `cosign`, `verify` and `sign-image`: keys, signed envelopes and image
signatures, offline."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated

import typer

from zeronode.cli.common import emit, fail, load_key, parse_env, read_text
from sal.images.base import signed_message
from zeronode.protocol import keys
from zeronode.protocol.envelope import Envelope, new_envelope
from zeronode.protocol.envelope import verify as verify_envelope
from zeronode.protocol.errors import KeyFileError, VerificationError

app = typer.Typer()


@app.command()
def keygen(
    out: Annotated[Path, typer.Option("--out", help="Where to write the private key (mode 0600)")],
    force: Annotated[bool, typer.Option(help="Overwrite an existing key file")] = False,
) -> None:
    """Create an Ed25519 key; print its public key."""
    key = keys.generate()
    try:
        keys.save_private_key(key, out, force=force)
    except (KeyFileError, OSError) as exc:
        fail(str(exc))
    print(keys.public_key_text(key))


@app.command()
def sign(
    script: Annotated[Path, typer.Argument(help="Rhai script to sign")],
    key: Annotated[Path, typer.Option("--key", help="Private key file of the signer")],
    target: Annotated[list[str], typer.Option("--target", help="Node id to run on (repeatable)")],
    timeout: Annotated[int, typer.Option(help="Seconds the script may run")] = 60,
    ttl: Annotated[int, typer.Option(help="Seconds the envelope stays valid")] = 3600,
    retries: Annotated[int, typer.Option(help="Times a node may retry a failed run")] = 0,
    env: Annotated[list[str], typer.Option("--env", help="KEY=VALUE made visible to the script as env.KEY")] = [],  # noqa: B006
    out_path: Annotated[Path | None, typer.Option("--out", help="Write the envelope here instead of stdout")] = None,
) -> None:
    """Sign a script for the target nodes; print the envelope as JSON."""
    source = read_text(script, "script")
    signing_key = load_key(key)
    try:
        envelope = new_envelope(
            source, target, signing_key, timeout=timeout, ttl=ttl, retries=retries, env=parse_env(env)
        )
    except VerificationError as exc:
        fail(str(exc))
    emit(envelope.to_json(indent=2), out_path)


@app.command()
def cosign(
    envelope_path: Annotated[Path, typer.Argument(metavar="ENVELOPE", help="Signed envelope (JSON)")],
    key: Annotated[Path, typer.Option("--key", help="Private key file of the co-signer")],
    out_path: Annotated[Path | None, typer.Option("--out", help="Write the envelope here instead of stdout")] = None,
) -> None:
    """Add a signature to an envelope (for multi-signature policies)."""
    try:
        envelope = Envelope.from_json(read_text(envelope_path, "envelope"))
        cosigned = envelope.signed_by(load_key(key))
    except (VerificationError, ValueError) as exc:
        fail(str(exc))
    emit(cosigned.to_json(indent=2), out_path)


@app.command()
def verify(
    envelope_path: Annotated[Path, typer.Argument(metavar="ENVELOPE", help="Signed envelope (JSON)")],
) -> None:
    """Check an envelope's signatures and validity; exit 0 if valid, 1 if not."""
    try:
        verified = verify_envelope(read_text(envelope_path, "envelope"))
    except VerificationError as exc:
        fail(f"invalid ({exc.reason}): {exc}")
    envelope = verified.envelope
    print(f"valid: envelope {envelope.id} for {', '.join(envelope.targets)}")
    for signer in sorted(verified.signers):
        print(f"signed by {signer}{' (signer)' if signer == envelope.signer else ''}")


@app.command("sign-image")
def sign_image(
    image: Annotated[Path, typer.Argument(help="The image file as it is served (raw disk, qcow2 or bundle)")],
    key: Annotated[Path, typer.Option("--key", help="Private key file of the image's publisher")],
) -> None:
    """Sign an image for image_pull: print its sha256, the signature, and the key nodes must trust
    (trusted_image_keys), as JSON."""
    signer = load_key(key)
    digest = hashlib.sha256()
    try:
        with open(image, "rb") as file:
            while chunk := file.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        fail(f"cannot read image {image}: {exc.strerror}")
    print(json.dumps({"sha256": digest.hexdigest(), "signature": keys.sign(signer, signed_message(digest.hexdigest())),
                      "public_key": keys.public_key_text(signer)}))
