"""What every zeronode HTTP service must do, whatever it serves (zeronode.api.service), checked over HTTP.

The supervisor's, coord's and the ledger's tests call these on a real server
of theirs: request ids, the one error body, HTTP metrics and build info, the
OpenAPI document's bodies and errors, and /docs without any outside host.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Iterator
from html.parser import HTMLParser

import httpx

import zeronode
from zeronode.api.errors import ErrorBody
from zeronode.logs import JsonFormatter

GENERATED_ID = re.compile(r"[0-9a-f]{16}")


def check_request_ids(http: httpx.Client, path: str) -> None:
    """A safe X-Request-Id comes back as sent; an unsafe or missing one is replaced by a new one."""
    for kept in ("trace-1", "0f8c7a2e-9a4b-4c1e-8d4e-2b9f1a6c3d5e", "a.b_c:d-1", "x" * 64):
        assert http.get(path, headers={"X-Request-Id": kept}).headers["x-request-id"] == kept
    for unsafe in ("x" * 65, "two words", 'quote"d', "semi;colon", "<b>", "ü".encode("utf-8")):
        answered = http.get(path, headers={"X-Request-Id": unsafe}).headers["x-request-id"]
        assert GENERATED_ID.fullmatch(answered), (unsafe, answered)
    made = [http.get(path).headers["x-request-id"] for _ in range(3)]
    assert all(GENERATED_ID.fullmatch(one) for one in made) and len(set(made)) == 3


def error(response: httpx.Response, status: int, reason: str) -> ErrorBody:
    """The answer's error body, checked to be the one shape, with this status and reason."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = ErrorBody.model_validate(response.json())
    assert body.reason == reason, body
    assert body.message
    return body


def check_framework_errors(http: httpx.Client, *, get_only: str, bad_query: str, auth: httpx.Auth | None = None) -> None:
    """FastAPI's and Starlette's own refusals in the one error body: an unknown route (404), a method the
    route does not take (405), a query parameter that does not validate (422)."""
    unknown = error(http.get("/no/such/route"), 404, "not_found")
    assert "/no/such/route" in unknown.message
    assert "x-request-id" in http.get("/no/such/route").headers
    wrong = error(http.delete(get_only), 405, "method_not_allowed")
    assert "DELETE" in wrong.message
    error(http.get(bad_query, auth=auth or http.auth), 422, "malformed")


def metrics(http: httpx.Client) -> str:
    response = http.get("/metrics")
    assert response.status_code == 200
    return response.text


def check_series(http: httpx.Client, expected: dict[str, float]) -> None:
    """Each series of the scrape has its expected value."""
    text = metrics(http)
    for series, value in expected.items():
        assert f"{series} {float(value)}" in text.splitlines(), (series, text)


def check_metrics(http: httpx.Client, service: str, *, route: str, path: str, status: int = 200) -> None:
    """Build info, and HTTP requests counted by route template (never the path), method and status."""
    before = metrics(http)
    http.get(path)
    http.get(path)
    http.get("/no/such/route/for/metrics")
    text = metrics(http)
    info = re.search(r'^zeronode_build_info\{(.*)\} 1\.0$', text, re.M)
    assert info, text
    labels = dict(re.findall(r'(\w+)="([^"]*)"', info.group(1)))
    assert labels["version"] == zeronode.__version__ and labels["rhai"] != "unknown" and labels["python"].count(".") == 2

    def count(series: str, in_text: str) -> float:
        found = re.search(rf"^{re.escape(series)} (\S+)$", in_text, re.M)
        return float(found.group(1)) if found else 0.0

    requests = f'zeronode_{service}_http_requests_total{{method="GET",route="{route}",status="{status}"}}'
    assert count(requests, text) == count(requests, before) + 2, text
    assert count(f'zeronode_{service}_http_request_duration_seconds_count{{method="GET",route="{route}"}}', text) >= 2
    assert f'route="unmatched",status="404"' in text
    assert "/no/such/route/for/metrics" not in text  # a path is never a label: a scan adds no series
    assert not re.search(rf"^zeronode_(?!{service}_|build_info)\w+", text, re.M)  # one naming scheme: the service's


def check_openapi(http: httpx.Client, bodies: dict[tuple[str, str], str]) -> dict:
    """Every write declares its body and every operation its errors (ErrorBody); every reference resolves.
    `bodies`: (method, path) -> the model some writes' bodies are, by its name in the components."""
    document = http.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    for (method, path), model in bodies.items():
        assert body_schema(document, method, path) == {"$ref": f"#/components/schemas/{model}"}, (method, path)
        assert schemas[model]["properties"], model
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status in ("4XX", "5XX"):
                schema = operation["responses"][status]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)
            assert "422" not in operation["responses"], (method, path)  # FastAPI's HTTPValidationError: never sent
            if method in ("post", "put") and not path.endswith("/cancel"):
                assert operation["requestBody"]["content"], (method, path)
    text = json.dumps(document)
    for name in set(re.findall(r'"#/components/schemas/([^"]+)"', text)):
        assert name in schemas, name
    assert "#/$defs/" not in text
    assert set(schemas["ErrorBody"]["required"]) == {"reason", "message"}
    return document


def body_schema(document: dict, method: str, path: str, content_type: str = "application/json") -> dict:
    """The schema an operation declares for its request body."""
    return document["paths"][path][method]["requestBody"]["content"][content_type]["schema"]


class _References(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.found.extend(value for name, value in attrs if name in ("src", "href") and value)


def check_docs(http: httpx.Client) -> None:
    """/docs and /redoc name no outside host, and the assets they name are served."""
    for page in ("/docs", "/redoc"):
        response = http.get(page)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
        assert not re.search(r"https?:|//[a-z]", response.text, re.I), response.text
        parser = _References()
        parser.feed(response.text)
        assert parser.found, response.text
        for reference in parser.found:
            assert reference.startswith("/") and not reference.startswith("//"), reference
            asset = http.get(reference)
            assert asset.status_code == 200 and len(asset.content) > 1000, reference
    assert "'/openapi.json'" in http.get("/docs").text
    error(http.get("/docs/assets/..%2F..%2Fcore.py"), 404, "not_found")
    error(http.get("/docs/assets/other.js"), 404, "not_found")


@contextlib.contextmanager
def json_lines(logger: str) -> Iterator[list[dict]]:
    """The JSON log lines `logger` writes meanwhile (at info and up), formatted as they are written."""
    lines: list[dict] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(json.loads(JsonFormatter().format(record)))

    handler, target = Collect(), logging.getLogger(logger)
    level = target.level
    target.addHandler(handler)
    target.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        target.removeHandler(handler)
        target.setLevel(level)
