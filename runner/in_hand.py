"""What a runner has in hand, in a file its pool reads when the runner dies: the job running now,
and the jobs of its batch not started yet.

A runner takes quick jobs several at a time (runner.worker). When it dies (kill -9, the kernel's
OOM killer, its memory ceiling), its pool reads this file and knows which job was running (the
only one its memory ceiling can blame) and which had not started: those go back to the head of
the queue (runner.pool), never to be failed as their runner's. One write a job, never fsynced:
a runner's death leaves the file as it was written; a power cut may not, and then nothing is
read from it (the pool that reads it is gone too), and the monitor recovers every started job
as a dead runner's.

    run JOB EXECUTION        the job running now (at most one line)
    wait JOB EXECUTION       a job of the batch, started in Redis, its script not started
    end                      the lines after it are older writes'
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def in_hand_path(state_dir: Path, runner_name: str) -> Path:
    return state_dir / "runners" / f"{runner_name}.in-hand"


@dataclass
class Held:
    """A dead runner's jobs, as its file told: each a (job id, execution id)."""

    running: tuple[str, str] | None = None
    waiting: list[tuple[str, str]] = field(default_factory=list)


class InHand:
    """The file one runner writes (runner.worker)."""

    def __init__(self, path: Path):
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        self.write(None, [])

    def write(self, running: tuple[str, str] | None, waiting: list[tuple[str, str]]) -> None:
        lines = [f"run {running[0]} {running[1]}\n"] if running else []
        lines += [f"wait {job_id} {execution_id}\n" for job_id, execution_id in waiting]
        lines.append("end\n")
        os.pwrite(self._fd, "".join(lines).encode(), 0)

    def close(self) -> None:
        """On a runner's own exit: nothing in hand."""
        os.close(self._fd)
        self.path.unlink(missing_ok=True)


def read_in_hand(path: Path) -> Held | None:
    """What the file at `path` says; None when there is none (a runner from before, or one that ended)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return None
    held = Held()
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "end":
            break
        job_id, _, execution_id = rest.partition(" ")
        if not job_id or not execution_id or " " in execution_id:
            return None  # not a file this module wrote
        if kind == "run":
            held.running = (job_id, execution_id)
        elif kind == "wait":
            held.waiting.append((job_id, execution_id))
        else:
            return None
    return held
