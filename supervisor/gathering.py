"""Concurrent submits gathered into one `Supervisor.submit_many`: one thread hop, one journal transaction
and one Redis round trip for all the envelopes that arrived together.

A submit is blocking work (verifying, SQLite, Redis) and must leave the event
loop; handing each request to the thread pool on its own cost the supervisor
more than half its time in the hop itself (bench/supervisor.py, py-spy, 8
connections). So the one-envelope POST puts its envelope here and awaits its
answer. The first envelope to arrive is sent at once; those that arrive while a
gathering is being submitted wait for the next one, which takes them all (up to
MAX_GATHERED). Nothing waits for a timer: alone, a request is submitted as soon
as it comes, and under load the gatherings grow by themselves.

Each envelope is still answered alone (its own Accepted or ServiceError) and
keeps its own request's id, in its job's meta and its log lines.
"""

from __future__ import annotations

import asyncio
import contextvars
from concurrent.futures import ThreadPoolExecutor

from supervisor.service import Supervisor, Submitted

# At most this many envelopes in one submit_many: a gathering's answers wait for its slowest envelope, and a
# large one holds the journal's lock longer. 64 is far above what 8-32 connections gather (4-16, measured).
MAX_GATHERED = 64


class SubmitGatherer:
    """Envelopes for one Supervisor, from concurrent requests, submitted a gathering at a time."""

    def __init__(self, supervisor: Supervisor, max_gathered: int = MAX_GATHERED):
        self.supervisor = supervisor
        self.max_gathered = max_gathered
        self._waiting: list[tuple[bytes | str, str | None, str | None, asyncio.Future[Submitted]]] = []
        self._submitting: asyncio.Task | None = None
        # One gathering at a time, on a thread of its own: asyncio's executor hop is leaner than the thread
        # pool's (anyio's limiter and cancel scopes), and FastAPI's pool stays free for the other routes.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="submits")

    async def submit(self, raw: bytes | str, ticket: str | None, request_id: str | None) -> Submitted:
        """The envelope's answer, as `Supervisor.submit_many` gives it: Accepted, or the ServiceError to answer."""
        answer: asyncio.Future[Submitted] = asyncio.get_running_loop().create_future()
        self._waiting.append((raw, ticket, request_id, answer))
        if self._submitting is None:
            # A context of its own: the task must not carry the first request's id into the others' lines.
            self._submitting = asyncio.create_task(self._submit_waiting(), context=contextvars.Context())
        return await answer

    async def _submit_waiting(self) -> None:
        try:
            while self._waiting:
                gathered, self._waiting = self._waiting[: self.max_gathered], self._waiting[self.max_gathered :]
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
