"""supervisor.gathering: concurrent one-envelope submits go to submit_many together, each answered alone."""

import asyncio
import threading

import pytest

from supervisor.gathering import SubmitGatherer


class HeldSupervisor:
    """submit_many's stand-in: records each call, answers each envelope with its text and request id,
    and holds the first call until released, so that others arrive while it runs."""

    def __init__(self, fail: bool = False):
        self.calls: list[list] = []
        self.release = threading.Event()
        self.fail = fail

    def submit_many(self, raws, tickets, request_ids):
        self.calls.append(list(raws))
        if len(self.calls) == 1:
            self.release.wait(10)
        if self.fail:
            raise RuntimeError("a bug")
        return [f"{raw}:{ticket}:{request_id}" for raw, ticket, request_id in zip(raws, tickets, request_ids, strict=True)]


def test_envelopes_that_arrive_during_a_gathering_go_together_in_the_next():
    supervisor = HeldSupervisor()

    async def scenario():
        gatherer = SubmitGatherer(supervisor)  # type: ignore[arg-type]
        first = asyncio.create_task(gatherer.submit("e0", None, "r0"))
        while not supervisor.calls:
            await asyncio.sleep(0.001)
        others = [asyncio.create_task(gatherer.submit(f"e{i}", f"t{i}", f"r{i}")) for i in range(1, 6)]
        await asyncio.sleep(0.01)
        supervisor.release.set()
        return await first, await asyncio.gather(*others)

    first, others = asyncio.run(scenario())
    assert supervisor.calls == [["e0"], ["e1", "e2", "e3", "e4", "e5"]]
    assert first == "e0:None:r0"
    assert others == [f"e{i}:t{i}:r{i}" for i in range(1, 6)]  # each its own answer, ticket and request id


def test_a_gathering_is_bounded():
    supervisor = HeldSupervisor()

    async def scenario():
        gatherer = SubmitGatherer(supervisor, max_gathered=2)  # type: ignore[arg-type]
        first = asyncio.create_task(gatherer.submit("e0", None, None))
        while not supervisor.calls:
            await asyncio.sleep(0.001)
        others = [asyncio.create_task(gatherer.submit(f"e{i}", None, None)) for i in range(1, 6)]
        await asyncio.sleep(0.01)
        supervisor.release.set()
        await asyncio.gather(first, *others)

    asyncio.run(scenario())
    assert [len(call) for call in supervisor.calls] == [1, 2, 2, 1]


def test_a_failing_submit_fails_each_of_its_requests_and_not_the_next():
    supervisor = HeldSupervisor(fail=True)

    async def scenario():
        gatherer = SubmitGatherer(supervisor)  # type: ignore[arg-type]
        supervisor.release.set()
        with pytest.raises(RuntimeError):
            await gatherer.submit("e0", None, None)
        supervisor.fail = False
        return await gatherer.submit("e1", None, None)

    assert asyncio.run(scenario()) == "e1:None:None"


def test_gatherings_handled_at_once_overlap_and_each_item_keeps_its_answer():
    """zeronode.api.gathering with at_once=2 (the ledger on PostgreSQL): a second gathering is handled while
    the first waits, and the items that came meanwhile form it."""
    from concurrent.futures import ThreadPoolExecutor

    from zeronode.api.gathering import Gatherer

    first_held = threading.Event()
    calls: list[list[int]] = []

    def handle(items):
        calls.append(items)
        if len(calls) == 1:
            first_held.wait(10)
        return [item * 10 for item in items]

    async def scenario():
        gatherer = Gatherer(handle, most=10, executor=ThreadPoolExecutor(2), at_once=2)
        first = asyncio.create_task(gatherer.submit(1))
        while not calls:
            await asyncio.sleep(0.001)
        others = [asyncio.create_task(gatherer.submit(i)) for i in (2, 3)]
        while len(calls) < 2:  # handled while the first is still held
            await asyncio.sleep(0.001)
        first_held.set()
        return await first, await asyncio.gather(*others)

    first, others = asyncio.run(scenario())
    assert calls == [[1], [2, 3]]
    assert (first, others) == (10, [20, 30])
