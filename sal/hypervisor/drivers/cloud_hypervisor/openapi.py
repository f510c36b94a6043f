"""cloud-hypervisor's own API description, as data: the simulator checks request bodies with it.

`cloud-hypervisor.yaml` beside this file is upstream's `vmm/src/api/openapi/cloud-hypervisor.yaml`
(workspace version 54.0.0: client.API_VERSION), copied unchanged so the simulator needs nothing outside the package.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import jsonschema
import yaml

SPEC_RESOURCE = "cloud-hypervisor.yaml"


@functools.cache
def spec() -> dict[str, Any]:
    # libyaml's safe loader where PyYAML has it: a tenth of the pure-Python one's 0.25 s, paid by every simulated VMM.
    # Used directly (as yaml.safe_load uses SafeLoader): only a safe loader ever reads the file.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(resources.files(__package__).joinpath(SPEC_RESOURCE).read_text())
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def with_components(schema: dict[str, Any]) -> dict[str, Any]:
    """A schema whose "#/components/..." references resolve inside the spec."""
    return {**schema, "components": spec()["components"]}


def request_schema(endpoint: str) -> dict[str, Any] | None:
    """The JSON schema of a PUT endpoint's body ("vm.create" → VmConfig), or None when it takes none."""
    body = spec()["paths"][f"/{endpoint}"]["put"].get("requestBody")
    return body["content"]["application/json"]["schema"] if body else None


@functools.cache
def _validator(endpoint: str) -> jsonschema.Draft4Validator | None:
    schema = request_schema(endpoint)
    # OpenAPI 3.0 schemas are a dialect of JSON Schema draft 4 (nullable aside, unused here).
    return jsonschema.Draft4Validator(with_components(schema)) if schema else None


def body_problems(endpoint: str, body: Any) -> list[str]:
    """What is wrong with a request body for `endpoint`, one line each; empty when it is valid."""
    validator = _validator(endpoint)
    if validator is None:
        return []
    return [
        f"{'.'.join(map(str, error.absolute_path)) or 'body'}: {error.message}"
        for error in sorted(validator.iter_errors(body), key=lambda e: list(map(str, e.absolute_path)))
    ]


def put_endpoints() -> list[str]:
    """Every PUT endpoint the spec describes, as "vm.boot", "vm.add-disk", ..."""
    return [path.lstrip("/") for path, methods in spec()["paths"].items() if "put" in methods]
