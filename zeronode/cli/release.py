"""`zeronode release build | sign | publish | list | status | promote | pause | resume | rollback | follow`:
zeronode's own releases, and rolling them out to the fleet (docs/operators.md, "Updating a fleet").

    build      an artifact of this checkout (zeronode.release.build), offline from then on
    sign       one release key's signature over an artifact, to hand to whoever publishes it
    publish    the artifact's digest and the release keys' signatures to the ledger, and the artifact
               itself unless it is served elsewhere (--url)
    promote    a release to a channel: the canary first, the rest after the health window
    pause, resume, rollback, status, follow: the rollout and who follows what

Changes are signed by a ledger admin's key (--key) and carry a sequence, as
users and policies do (zeronode.cli.common.change_ledger).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zeronode.cli.common import DEFAULT_LEDGER_URL, JsonOption, LedgerOption, change_ledger, fail, load_key, out, print_json

app = typer.Typer(help="zeronode's releases and their rollout to the fleet.", no_args_is_help=True)

AdminKeyOption = Annotated[Path, typer.Option("--key", help="Private key file of an admin of the ledger")]
ChannelArgument = Annotated[str, typer.Argument(metavar="CHANNEL", help="stable, beta, ...")]
ArtifactArgument = Annotated[Path, typer.Argument(metavar="ARTIFACT", help="A release artifact (zeronode-VERSION.tar)")]



def _artifact(path: Path):
    """(manifest, sha256, size) of an artifact, read whole and checked against its own manifest."""
    import tempfile

    from zeronode.release import artifact
    from zeronode.release.manifest import BadArtifact

    try:
        sha256, size = artifact.file_sha256(path)
        with tempfile.TemporaryDirectory() as scratch:
            manifest = artifact.unpack(path, Path(scratch) / "x", sha256=sha256, size=size)
    except (OSError, BadArtifact) as exc:
        fail(f"{path}: {exc}")
    return manifest, sha256, size


@app.command()
def build(
    version: Annotated[str | None, typer.Option(help="The release's version (default: pyproject.toml's)")] = None,
    source: Annotated[Path, typer.Option(help="The checkout to build")] = Path("."),
    output: Annotated[Path, typer.Option(help="Where the artifact goes")] = Path("dist"),
) -> None:
    """Build a release artifact: the project and rhai-py as wheels, with their pinned dependencies."""
    from zeronode.release.build import build as build_release
    from zeronode.release.manifest import ReleaseError

    try:
        with out.status("building...") as status:
            built = build_release(source, output, version=version, progress=lambda line: status.update(line))
    except ReleaseError as exc:
        fail(str(exc))
    out.print(f"{built.path}  version {built.manifest.version}  sha256 {built.sha256}  {built.size} bytes  "
              f"{len(built.manifest.files)} wheels", highlight=False, markup=False)


@app.command()
def sign(artifact: ArtifactArgument, key: Annotated[Path, typer.Option("--key", help="A release key's private key file")]) -> None:
    """Sign ARTIFACT with a release key; print the signature as publish --signature takes it (KEY:SIGNATURE)."""
    from zeronode.release.manifest import sign as sign_release

    manifest, sha256, size = _artifact(artifact)
    signature = sign_release(load_key(key), manifest.version, sha256, size)
    print(f"{signature.public_key}:{signature.signature}")


@app.command()
def publish(
    artifact: ArtifactArgument,
    key: AdminKeyOption,
    release_key: Annotated[list[Path], typer.Option("--release-key", help="A release key to sign with (repeatable)")] = [],
    signature: Annotated[list[str], typer.Option("--signature", help="KEY:SIGNATURE from `release sign` (repeatable)")] = [],
    url: Annotated[str | None, typer.Option(help="Where nodes fetch it (default: the ledger serves it)")] = None,
    ledger_url: LedgerOption = DEFAULT_LEDGER_URL,
) -> None:
    """Publish ARTIFACT in the ledger with its release keys' signatures, and upload it unless --url is given."""
    from pydantic import ValidationError

    from zeronode.api.errors import ServiceError, problems
    from zeronode.api.releases import ReleaseNew
    from zeronode.client.ledger import LedgerClient
    from zeronode.release.manifest import ReleaseSignature
    from zeronode.release.manifest import sign as sign_release

    manifest, sha256, size = _artifact(artifact)
    signatures = [sign_release(load_key(path), manifest.version, sha256, size) for path in release_key]
    try:
        for given in signature:
            public_key, _, value = given.partition(":")
            signatures.append(ReleaseSignature(public_key=public_key, signature=value))
        release = ReleaseNew(version=manifest.version, sha256=sha256, size=size, signatures=signatures, url=url)
    except ValidationError as exc:
        fail(problems(exc.errors()))
    with LedgerClient(ledger_url, load_key(key)) as ledger:
        try:
            saved = ledger.publish_release(release)
            if url is None and not saved.hosted:
                with out.status(f"uploading {artifact} ({size} bytes)..."):
                    saved = ledger.upload_artifact(manifest.version, artifact)
        except ServiceError as exc:
            fail(str(exc))
    print(saved.model_dump_json(indent=2))


@app.command("list")
def releases_list(ledger_url: LedgerOption = DEFAULT_LEDGER_URL, as_json: JsonOption = False) -> None:
    """The published releases, newest first."""
    from rich.table import Table

    from zeronode.api.errors import ServiceError
    from zeronode.client.ledger import LedgerClient

    with LedgerClient(ledger_url) as ledger:
        try:
            found = ledger.releases()
        except ServiceError as exc:
            fail(str(exc))
    if as_json:
        print_json([release.model_dump(mode="json") for release in found])
        return
    table = Table()
    for column in ("version", "sha256", "size", "signers", "served from", "published"):
        table.add_column(column)
    for release in found:
        table.add_row(release.version, release.sha256[:16], str(release.size), str(len(release.signers)),
                      release.url or ("the ledger" if release.hosted else "nowhere yet (upload it)"), str(release.published_at))
    out.print(table)


@app.command()
def status(
    channel: Annotated[str | None, typer.Argument(metavar="[CHANNEL]", help="One channel (default: all)")] = None,
    ledger_url: LedgerOption = DEFAULT_LEDGER_URL,
    as_json: JsonOption = False,
) -> None:
    """Each channel's release and rollout: its stage, and how many followers run which version, updated, failed."""
    from rich.text import Text

    from zeronode.api.errors import ServiceError
    from zeronode.client.ledger import LedgerClient

    with LedgerClient(ledger_url) as ledger:
        try:
            found = [ledger.channel(channel)] if channel else ledger.channels()
        except ServiceError as exc:
            fail(str(exc))
    if as_json:
        print_json([view.model_dump(mode="json") for view in found])
        return
    for view in found:
        stage = view.stage + (" (paused)" if view.paused else "")
        out.print(Text(f"{view.name}: {view.version} (before: {view.previous or '-'}), stage {stage}, window {view.window} s"))
        if view.halted:
            out.print(Text(f"  halted: {view.halted}", style="red"))
        if view.progress:
            progress = view.progress
            versions = ", ".join(f"{count} on {version}" for version, count in sorted(progress.versions.items()))
            out.print(Text(f"  followers: {versions or 'none'}; told to run {view.version}: {progress.target}; "
                           f"running it: {progress.succeeded}; updating: {progress.updating}; "
                           f"rolled back: {progress.rolled_back}; refused: {progress.refused}"))
            for node, why in progress.failures.items():
                out.print(Text(f"  {node}: {why}"))


@app.command()
def promote(
    version: Annotated[str, typer.Argument(metavar="VERSION")],
    key: AdminKeyOption,
    channel: Annotated[str, typer.Option(help="The channel")] = "stable",
    canary_farm: Annotated[list[str], typer.Option("--canary-farm", help="A farm that gets it first (repeatable)")] = [],
    canary_node: Annotated[list[str], typer.Option("--canary-node", help="A node that gets it first (repeatable)")] = [],
    canary_percent: Annotated[int, typer.Option("--canary-percent", help="Percent of the other nodes that get it first")] = 0,
    window: Annotated[int, typer.Option(help="Seconds the canary must run it before the rest get it")] = 600,
    ledger_url: LedgerOption = DEFAULT_LEDGER_URL,
) -> None:
    """Roll VERSION out on a channel: to the canary (if any), then to every follower after the window."""
    _change(ledger_url, key, channel, {"action": "promote", "version": version, "window": window,
                                       "canary": {"farms": canary_farm, "nodes": canary_node, "percent": canary_percent}})


@app.command()
def pause(channel: ChannelArgument, key: AdminKeyOption, ledger_url: LedgerOption = DEFAULT_LEDGER_URL) -> None:
    """Hold the channel's rollout: nodes not yet on its release stay where they are."""
    _change(ledger_url, key, channel, {"action": "pause"})


@app.command()
def resume(channel: ChannelArgument, key: AdminKeyOption, ledger_url: LedgerOption = DEFAULT_LEDGER_URL) -> None:
    """Let a paused or halted rollout go on (its window starts again)."""
    _change(ledger_url, key, channel, {"action": "resume"})


@app.command()
def rollback(channel: ChannelArgument, key: AdminKeyOption, ledger_url: LedgerOption = DEFAULT_LEDGER_URL) -> None:
    """Every follower of the channel back to the release before its current one."""
    _change(ledger_url, key, channel, {"action": "rollback"})


def _change(ledger_url: str, key: Path, channel: str, fields: dict) -> None:
    from zeronode.api.rollouts import ChannelChange

    change_ledger(ledger_url, key, ChannelChange, fields, lambda client, change: client.change_channel(channel, change))


@app.command()
def follow(
    key: AdminKeyOption,
    farm: Annotated[str | None, typer.Option(help="The farm whose nodes follow")] = None,
    node: Annotated[str | None, typer.Option(help="The node that follows (over its farm's choice)")] = None,
    channel: Annotated[str | None, typer.Option(help="Follow this channel")] = None,
    version: Annotated[str | None, typer.Option(help="Pin this version")] = None,
    ledger_url: LedgerOption = DEFAULT_LEDGER_URL,
) -> None:
    """Set what a farm or a node runs: a channel, a pinned version, or neither (back to the default)."""
    from zeronode.api.rollouts import FollowChange

    change_ledger(ledger_url, key, FollowChange, {"farm": farm, "node": node, "channel": channel, "version": version},
                  lambda client, change: client.follow(change))
