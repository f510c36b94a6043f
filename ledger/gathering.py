"""Single uptime reports that arrive together are stored together: one transaction for a group.

Each `POST /v1/nodes/{id}/uptime` is checked on its own (signature, node,
body) and then handed to the app's ReportGatherer, which waits for it to be
stored before it answers. The gatherer takes every report the event loop has
in hand at that moment and ingests them as one group (ledger.uptime.ingest:
one read of the rows, one executemany, one commit), while the reports that
arrive meanwhile wait for the next group. A group is what one report used to
cost, so the database's cost per report falls as the load rises, and nothing
waits for a timer: a lone report is stored at once.

Each report is judged as if it had come alone, in the order they arrived (a
node's two reports in one group are judged one after the other), and each is
answered only after its group's transaction committed: nothing is answered
accepted before it is stored. bench/ledger.py's client, 3,000 nodes, 16
connections, SQLite, on a busy 2-core machine: one transaction a report,
809/615/504 reports/s; gathered, 2,039/2,360/2,268.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor


from ledger import rollouts, uptime
from ledger.database import Database
from zeronode.api.errors import Refused
from zeronode.api.gathering import Gatherer
from zeronode.api.ledger import UptimeAccepted, UptimeReport

log = logging.getLogger("zeronode.ledger")

Answer = UptimeAccepted | Refused
Report = tuple[str, UptimeReport]  # a node's id and its report
ReportGatherer = Gatherer[Report, Answer]
# Groups stored at once on PostgreSQL. bench/ledger.py, one ledger process, 16 connections, 3,000 nodes (busy
# machine): 1 group at a time 1,151/1,048/1,455/1,890 reports/s, 4 at a time 1,458/1,708/1,488/1,306.
POSTGRES_GROUPS = 4


def ingest_with_releases(db: Database, reports: Sequence[tuple[str, UptimeReport]], now: float, skew: float) -> list[Answer]:
    """Reports stored, each accepted one answered with the release its node should run (ledger.rollouts)."""
    farms: dict[str, str] = {}
    answers = uptime.ingest(db, reports, now=now, skew=skew, farms=farms)
    for index, ((node_id, report), answer) in enumerate(zip(reports, answers, strict=True)):
        if isinstance(answer, UptimeAccepted):
            release = rollouts.after_report(db, node_id, farms[node_id], report, now)
            if release is not None:
                answers[index] = answer.model_copy(update={"release": release})
    return answers


def report_gatherer(db: Database, *, skew: float, clock: Callable[[], float], most: int = 1000) -> ReportGatherer:
    """Where single reports go to be stored in groups (see the module's docstring; zeronode.api.gathering).

    On SQLite the group is stored inline on the event loop: SQLite writes one
    at a time anyway, and a group takes less than the hop to a worker thread.
    On PostgreSQL a group waits on the network, so in a thread, and up to
    POSTGRES_GROUPS groups at a time: the next ones gather and go while the
    first waits (concurrent groups lock their rows in id order: no deadlock).
    """
    def store(reports: list[Report]) -> list[Answer]:
        return ingest_with_releases(db, reports, clock(), skew)

    if db.is_sqlite:
        return Gatherer(store, most=most)
    threads = ThreadPoolExecutor(max_workers=POSTGRES_GROUPS, thread_name_prefix="reports")
    return Gatherer(store, most=most, executor=threads, at_once=POSTGRES_GROUPS)
