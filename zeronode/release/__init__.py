"""zeronode's own releases: what a node installs when it updates itself (docs/operators.md, "Updating a fleet").

    manifest.py   versions, the manifest inside an artifact, the statement release keys sign, the m-of-n check
    artifact.py   the artifact: a reproducible tar of wheels and a manifest; reading it back, verified, safely
    build.py      `zeronode release build`: the project and rhai-py as wheels, with their pinned dependencies

Below the API and every service: the ledger checks signatures with it when a
release is published, and every node checks them again, and the artifact's
every file, before it installs anything.
"""
