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

import asyncio
import contextvars
from concurrent.futures import ThreadPoolExecutor

from supervisor.service import Submitted, Supervisor

# At most this many envelopes in one submit_many: a gathering's answers wait for its slowest envelope, and a
# large one holds the journal's lock longer. Far above what 8-32 connections gather.
MAX_GATHERED = 64
LINGER = 0.001  # seconds a gathering smaller than the last waits for the rest of it


class SubmitGatherer:
    """Envelopes for one Supervisor, from concurrent requests, submitted a gathering at a time."""

    def __init__(self, supervisor: Supervisor, max_gathered: int = MAX_GATHERED, linger: float = LINGER):
        self.supervisor = supervisor
        self.max_gathered = max_gathered
        self.linger = linger
        self._waiting: list[tuple[bytes | str, str | None, str | None, asyncio.Future[Submitted]]] = []
        self._submitting: asyncio.Task | None = None
        self._expected = 0  # how many the last gathering answered: their clients' next requests are due
        self._enough: asyncio.Event | None = None  # set once that many wait
        # One gathering at a time, on a thread of its own: asyncio's executor hop is leaner than the thread
        # pool's (anyio's limiter and cancel scopes), and FastAPI's pool stays free for the other routes.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="submits")

    async def submit(self, raw: bytes | str, ticket: str | None, request_id: str | None) -> Submitted:
        """The envelope's answer, as `Supervisor.submit_many` gives it: Accepted, or the ServiceError to answer."""
        answer: asyncio.Future[Submitted] = asyncio.get_running_loop().create_future()
        self._waiting.append((raw, ticket, request_id, answer))
        if self._enough is not None and len(self._waiting) >= self._expected:
            self._enough.set()
        if self._submitting is None:
            # A context of its own: the task must not carry the first request's id into the others' lines.
            self._submitting = asyncio.create_task(self._submit_waiting(), context=contextvars.Context())
        return await answer

    async def _submit_waiting(self) -> None:
        try:
            while self._waiting:
                if len(self._waiting) < self._expected:
                    await self._wait_for_the_rest()
                gathered, self._waiting = self._waiting[: self.max_gathered], self._waiting[self.max_gathered :]
                self._expected = len(gathered)
                try:
                    answers = await asyncio.get_running_loop().run_in_executor(
                        self._thread, self.supervisor.submit_many,
                        [raw for raw, _, _, _ in gathered], [ticket for _, ticket, _, _ in gathered],
                        [request_id for _, _, request_id, _ in gathered],
                    )
                except Exception as exc:  # a bug: each request answers 500 (zeronode.api.handlers logs it)
                    for *_, answer in gathered:
                        if not answer.done():
                            answer.set_exception(exc)
                    continue
                for (*_, answer), outcome in zip(gathered, answers, strict=True):
                    if not answer.done():  # done: its client went away; the envelope was submitted all the same
                        answer.set_result(outcome)
        finally:  # cancelled (the server stops): nobody is left waiting for good
            for *_, answer in self._waiting:
                answer.cancel()
            self._waiting = []
            self._submitting = None

    async def _wait_for_the_rest(self) -> None:
        self._enough = asyncio.Event()
        try:
            await asyncio.wait_for(self._enough.wait(), self.linger)
        except TimeoutError:
            pass  # fewer came back: the next gathering expects fewer
        finally:
            self._enough = None
