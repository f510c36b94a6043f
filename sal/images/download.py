"""An image's download: HTTP(S) with httpx, streamed to a file, resumed with a Range request.

fetch() appends to what its file holds already: the part that an interrupted
pull of the same digest left (the digest names the bytes, whichever URL serves
them, and the whole is checked against it at the end). A server that ignores
the Range header answers 200 with the whole body, and the part is started over.

Redirects are followed here, not by httpx, at most MAX_REDIRECTS, and only to
the scheme the URL has: an https download never goes on over http (nor an
http one over https: one rule). The size is bounded twice: by what the server
declares, before a byte is written, and by what it actually sends.

Errors: a bad URL, a server that cannot be reached or answers an error status
(DownloadError); a body that stops short, a dropped connection
(DownloadInterrupted: the part is kept); too large (ImageTooLarge); the job
cancelled or out of time, checked between chunks (JobInterrupted). A full
disk is the OSError the file's write raises: the caller knows what to remove.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from sal.context import check_interrupted, seconds_left
from sal.images.base import MAX_URL_CHARS, DownloadError, DownloadInterrupted, ImageTooLarge, UnsafeRedirect

CHUNK = 1024 * 1024
MAX_REDIRECTS = 5
REDIRECTS = frozenset({301, 302, 303, 307, 308})
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0  # one read; the job's deadline bounds the whole
CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
UNSATISFIABLE_RANGE = re.compile(r"bytes \*/(\d+)")

Progress = Callable[[int, "int | None"], None]  # (bytes so far, bytes in all when the server says)


def check_url(url: object) -> httpx.URL:
    """An http(s) URL with a host and without credentials (they would be recorded with the image)."""
    if not isinstance(url, str) or not 0 < len(url) <= MAX_URL_CHARS:
        raise DownloadError(f"url must be a string of 1-{MAX_URL_CHARS} characters")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise DownloadError(f"invalid url {url!r}: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise DownloadError(f"url must be http:// or https:// with a host, got {url!r}")
    if parsed.userinfo:
        raise DownloadError("a url with credentials (user:password@) is refused: it would be recorded with the image")
    return parsed


def fetch(url: str, path: Path, *, max_bytes: int, progress: Progress) -> str:
    """Download `url` into `path`, after the bytes `path` holds already; the sha256 of the whole file."""
    start = check_url(url)
    check_interrupted("image download")  # a job out of time asks nothing
    hasher, have = _hash_part(path)
    if have > max_bytes:
        raise ImageTooLarge(f"the image is over this node's max_image_bytes ({max_bytes})")
    timeout = httpx.Timeout(max(1.0, seconds_left(READ_TIMEOUT)), connect=CONNECT_TIMEOUT)
    # identity: the bytes on the wire are the file the digest names, and Content-Length counts them.
    with httpx.Client(timeout=timeout, headers={"accept-encoding": "identity"}) as client:
        while True:
            with _get(client, start, have) as response:
                if response.status_code == 416 and have:
                    total = _unsatisfiable_total(response)
                    if total == have:
                        return hasher.hexdigest()  # the part was whole: an earlier pull stopped after the last byte
                    hasher, have = hashlib.sha256(), 0  # a part longer than the file: not this file's, start over
                    continue
                return _receive(response, path, have, hasher, max_bytes, progress)


def _hash_part(path: Path) -> tuple[hashlib._Hash, int]:
    hasher, have = hashlib.sha256(), 0
    with contextlib.suppress(FileNotFoundError), open(path, "rb") as part:
        while block := part.read(CHUNK):
            hasher.update(block)
            have += len(block)
            check_interrupted("image download")
    return hasher, have


@contextlib.contextmanager
def _get(client: httpx.Client, url: httpx.URL, have: int) -> Iterator[httpx.Response]:
    """The answer to GET `url` (from byte `have` on), through redirects within its scheme, streaming."""
    headers = {"range": f"bytes={have}-"} if have else {}
    for _ in range(MAX_REDIRECTS + 1):
        try:
            response = client.send(client.build_request("GET", url, headers=headers), stream=True)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise DownloadError(f"cannot download from {url.host or url}: {exc or type(exc).__name__}") from None
        if response.status_code not in REDIRECTS:
            break
        response.close()
        location = response.headers.get("location")
        if not location:
            raise DownloadError(f"{url.host} answered {response.status_code} without a Location")
        try:
            target = url.join(location)
        except httpx.InvalidURL:
            raise DownloadError(f"{url.host} redirected to an invalid URL {location[:200]!r}") from None
        if target.scheme != url.scheme:
            raise UnsafeRedirect(f"{url.host} redirected the {url.scheme} download to {target.scheme}: refused")
        url = target
    else:
        raise UnsafeRedirect(f"more than {MAX_REDIRECTS} redirects")
    try:
        yield response
    finally:
        response.close()


def _receive(response: httpx.Response, path: Path, have: int, hasher, max_bytes: int, progress: Progress) -> str:
    """Write the body of `response` after the `have` bytes of `path`; the sha256 of the whole."""
    host = response.request.url.host
    if response.status_code == 206 and have:
        total = _resumed_total(response, have)
    elif response.status_code == 200:
        # A full body: from the start, whatever part there was (a server that ignores Range does this).
        hasher, have = hashlib.sha256(), 0
        length = response.headers.get("content-length")
        total = int(length) if length and length.isdigit() else None
    else:
        raise DownloadError(f"{host} answered {response.status_code} {response.reason_phrase}".rstrip())
    if total is not None and total > max_bytes:
        raise ImageTooLarge(f"the image is {total} bytes, over this node's max_image_bytes ({max_bytes})")
    progress(have, total)
    with open(path, "r+b" if have else "wb") as file:
        file.seek(have)
        try:
            # As the bytes come, never in fixed chunks: httpx drops what its chunker holds when the connection
            # fails, and a resume must start after every byte that came.
            for chunk in response.iter_raw():
                have += len(chunk)
                if have > max_bytes:
                    raise ImageTooLarge(f"the image is over this node's max_image_bytes ({max_bytes})")
                hasher.update(chunk)
                write_sparse(file, chunk)
                progress(have, total)
                check_interrupted("image download")
        except httpx.HTTPError as exc:
            raise DownloadInterrupted(_stopped(have, total, f"{host}: {exc or type(exc).__name__}")) from None
        finally:
            with contextlib.suppress(OSError):  # on a full disk the part is removed anyway
                file.truncate()  # the size is what came, holes included: where a resume starts
    if total is not None and have < total:
        raise DownloadInterrupted(_stopped(have, total, f"{host} ended the body early"))
    return hasher.hexdigest()


def write_sparse(file, chunk: bytes) -> None:
    """Write `chunk`, or skip over it when it is all zeros: a disk image's empty space takes no room."""
    if chunk.count(0) == len(chunk):
        file.seek(len(chunk), 1)
    else:
        file.write(chunk)


def _stopped(have: int, total: int | None, why: str) -> str:
    of = f" of {total}" if total is not None else ""
    return f"the download stopped at byte {have}{of} ({why}); the part is kept: pull again to resume"


def _resumed_total(response: httpx.Response, have: int) -> int | None:
    match = CONTENT_RANGE.fullmatch(response.headers.get("content-range", ""))
    if not match or int(match[1]) != have:
        raise DownloadError(f"{response.request.url.host} did not resume at byte {have} "
                            f"(Content-Range: {response.headers.get('content-range')!r})")
    return None if match[3] == "*" else int(match[3])


def _unsatisfiable_total(response: httpx.Response) -> int | None:
    match = UNSATISFIABLE_RANGE.fullmatch(response.headers.get("content-range", ""))
    return int(match[1]) if match else None
