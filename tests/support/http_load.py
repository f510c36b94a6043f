"""A small HTTP/1.1 load client for benches: requests made before the clock starts, sent over keep-alive connections.

    request = http_request("POST", "/v1/jobs", {"Content-Type": "application/json"}, body)
    seconds, answers = asyncio.run(drive(port, [request, ...], connections=8))

Each connection sends its next request once the answer to its last one is read
(no pipelining), so `connections` is the number of requests in flight. The
client does no parsing beyond the status and Content-Length: its own cost stays
small next to a service's, which is what the benches measure.
"""

from __future__ import annotations

import asyncio
import time


def http_request(method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    """The bytes of one HTTP/1.1 request, ready to send."""
    lines = [f"{method} {target} HTTP/1.1", "Host: bench", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def drive(ports: int | list[int], requests: list[bytes], connections: int) -> tuple[float, list[tuple[int, bytes]]]:
    """Send `requests` over `connections` keep-alive connections, dealt out among the servers on `ports`
    (one port, or several: processes serving one service); (seconds, [(status, body)]) in order."""
    ports = [ports] if isinstance(ports, int) else ports
    answers: list[tuple[int, bytes]] = [(0, b"")] * len(requests)
    work = iter(enumerate(requests))

    async def connection(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for index, request in work:  # one iterator shared by all connections: each request is sent once
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line[15:]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
            answers[index] = (int(head[9:12]), await reader.readexactly(length))
        writer.close()

    started = time.perf_counter()
    count = max(1, min(connections, len(requests)))
    await asyncio.gather(*(connection(ports[i % len(ports)]) for i in range(count)))
    return time.perf_counter() - started, answers
