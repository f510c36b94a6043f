"""Every Redis key a node's queue uses beyond rq's own, spelled once.

rq keeps its jobs, queues and registries under `rq:`; zeronode's own keys for
a queue named Q live under `zeronode:Q:`, so two queues on one Redis never
share a key:

    zeronode:Q:replay:SIGNER:NONCE   an envelope's nonce, claimed until it expires
    zeronode:Q:owner:JOB             which (signer, nonce) a job id belongs to
    zeronode:Q:cancel:JOB            set while the job's cancellation is requested
    zeronode:Q:monitor-lock          held by the one monitor acting on the queue
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NodeKeys:
    queue: str  # the queue's name (settings.queue)

    @property
    def prefix(self) -> str:
        return f"zeronode:{self.queue}"

    @property
    def replay_prefix(self) -> str:
        """ReplayGuard's prefix: it appends SIGNER:NONCE."""
        return f"{self.prefix}:replay"

    def owner(self, job_id: str) -> str:
        return f"{self.prefix}:owner:{job_id}"

    @property
    def cancel_prefix(self) -> str:
        """The cancel flags' prefix: take.lua appends the job id."""
        return f"{self.prefix}:cancel:"

    def cancel(self, job_id: str) -> str:
        return f"{self.cancel_prefix}{job_id}"

    @property
    def monitor_lock(self) -> str:
        return f"{self.prefix}:monitor-lock"
