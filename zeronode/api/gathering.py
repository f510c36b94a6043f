"""Work from concurrent requests, handled a gathering at a time: one call for the items that arrived together.

    gatherer = Gatherer(store_many, most=1000, executor=ThreadPoolExecutor(1))
    answer = await gatherer.submit(item)   # in a request handler: this item's own answer

A service's hot endpoint does the same blocking work for every request (the
supervisor verifies and queues an envelope, the ledger stores an uptime
report), and that work costs about as much for many items as for one: a
transaction, a Redis round trip, a hop to a worker thread. So the endpoint
hands its item here and awaits its answer. The first item is handled at once;
items that arrive while a gathering is being handled wait for the next, which
takes them all (up to `most`). Nothing waits for a timer when the service is
idle: alone, an item is handled as soon as it comes, and under load the
gatherings grow by themselves.

`handle(items)` returns one answer per item, in order (an exception as an
answer is the caller's to raise). If `handle` raises, every item of that
gathering gets the exception. Each gathering runs in a fresh context, so one
request's context (its request id in the log lines) does not leak into the
others'; the items carry what the work must know of their requests.

Tuning, chosen by measurement where each service is built:
- `executor`: where `handle` runs; None runs it on the event loop (for work
  shorter than the hop to a thread).
- `at_once`: gatherings handled concurrently (a database over the network
  takes the next group while the first waits on it).
- `linger`: a gathering smaller than the last one waits up to this many
  seconds for the rest: their clients' next requests are due.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Generic, TypeVar

Item = TypeVar("Item")
Answer = TypeVar("Answer")


class Gatherer(Generic[Item, Answer]):
    def __init__(
        self, handle: Callable[[list[Item]], Sequence[Answer]], *, most: int, executor: Executor | None = None,
        at_once: int = 1, linger: float = 0.0,
    ):
        self.handle, self.most, self.executor, self.at_once, self.linger = handle, most, executor, at_once, linger
        self._waiting: list[tuple[Item, asyncio.Future[Answer]]] = []
        self._handling = 0  # gatherings being handled now
        self._expected = 0  # how many the last gathering took: their clients' next requests are due
        self._enough: asyncio.Event | None = None  # set once that many wait

    async def submit(self, item: Item) -> Answer:
        """`item`'s answer, once its gathering is handled."""
        answer: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, answer))
        if self._enough is not None and len(self._waiting) >= self._expected:
            self._enough.set()
        if self._handling < self.at_once:
            self._handling += 1
            asyncio.create_task(self._handle_waiting(), context=contextvars.Context())
        return await answer

    async def _handle_waiting(self) -> None:
        try:
            while self._waiting:
                # One turn of the loop first: the requests it has already read join this gathering.
                await asyncio.sleep(0)
                if self.linger and len(self._waiting) < self._expected:
                    await self._wait_for_the_rest()
                gathered, self._waiting = self._waiting[: self.most], self._waiting[self.most :]
                if not gathered:
                    break  # another gathering took them while this one waited
                self._expected = len(gathered)
                items = [item for item, _ in gathered]
                try:
                    if self.executor is None:
                        answers = self.handle(items)
                    else:
                        answers = await asyncio.get_running_loop().run_in_executor(self.executor, self.handle, items)
                except Exception as exc:  # each request answers as the whole gathering does
                    for _, answer in gathered:
                        if not answer.done():
                            answer.set_exception(exc)
                    continue
                for (_, answer), outcome in zip(gathered, answers, strict=True):
                    if not answer.done():  # done: its client went away; its item was handled all the same
                        answer.set_result(outcome)
        except asyncio.CancelledError:  # the server stops: nobody is left waiting for good
            for _, answer in self._waiting:
                answer.cancel()
            self._waiting = []
            raise
        finally:
            self._handling -= 1

    async def _wait_for_the_rest(self) -> None:
        self._enough = asyncio.Event()
        try:
            await asyncio.wait_for(self._enough.wait(), self.linger)
        except TimeoutError:
            pass  # fewer came back: the next gathering expects fewer
        finally:
            self._enough = None
