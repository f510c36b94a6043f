"""Concurrent submits gathered into one `Supervisor.submit_many`: one thread hop, one journal transaction
and one Redis round trip for all the envelopes that arrived together.

A submit is blocking work (verifying, SQLite, Redis) and must leave the event
loop; handing each request to the thread pool on its own cost the supervisor
more than half its time in the hop itself (bench/supervisor.py, py-spy, 8
connections). So the one-envelope POST puts its envelope here and awaits its
answer. The first envelope to arrive is sent at once; those that arrive while a
gathering is being submitted wait for the next one, which takes them all (up to
MAX_GATHERED).

Under steady load that alone settles into gatherings of 1 and 7 at 8
connections, in turn: the one request that came during a gathering of 7 goes
alone, while the 7 just answered come back. So a gathering smaller than the
last one waits (at most LINGER seconds) for as many requests as the last one
answered: their clients' next requests are due. Measured, 8 connections:
gatherings of 3.9 -> 7.8 envelopes on average, the supervisor's CPU 532-663 ->
438-585 µs an envelope. Alone, a request never waits: the last gathering was
of one.

Each envelope is still answered alone (its own Accepted or ServiceError) and
keeps its own request's id, in its job's meta and its log lines.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from supervisor.service import Submitted, Supervisor
from zeronode.api.gathering import Gatherer

# At most this many envelopes in one submit_many: a gathering's answers wait for its slowest envelope, and a
# large one holds the journal's lock longer. Far above what 8-32 connections gather.
MAX_GATHERED = 64
LINGER = 0.001  # seconds a gathering smaller than the last waits for the rest of it

Submit = tuple[bytes | str, str | None, str | None]  # an envelope, its placement ticket, its request's id


class SubmitGatherer:
    """Envelopes for one Supervisor, from concurrent requests, submitted a gathering at a time
    (zeronode.api.gathering)."""

    def __init__(self, supervisor: Supervisor, max_gathered: int = MAX_GATHERED, linger: float = LINGER):
        self.supervisor = supervisor
        # One gathering at a time, on a thread of its own: asyncio's executor hop is leaner than the thread
        # pool's (anyio's limiter and cancel scopes), and FastAPI's pool stays free for the other routes.
        self._gatherer: Gatherer[Submit, Submitted] = Gatherer(
            self._submit_many, most=max_gathered, linger=linger,
            executor=ThreadPoolExecutor(max_workers=1, thread_name_prefix="submits"),
        )

    async def submit(self, raw: bytes | str, ticket: str | None, request_id: str | None) -> Submitted:
        """The envelope's answer, as `Supervisor.submit_many` gives it: Accepted, or the ServiceError to answer."""
        return await self._gatherer.submit((raw, ticket, request_id))

    def _submit_many(self, gathered: list[Submit]) -> list[Submitted]:
        raws, tickets, request_ids = zip(*gathered, strict=True)
        return self.supervisor.submit_many(list(raws), list(tickets), list(request_ids))
