"""The root of every error zeronode raises on purpose, and the whole tree under it.

Each error is defined beside the code that raises it (the module in the right
column); this drawing is the one place that shows them all, and
tests/test_architecture.py holds it to the code in both directions.

    ZeronodeError
    ├── SettingsError                 zeronode.settings: a settings file or variable is invalid
    ├── KeyFileError                  zeronode.protocol.errors: a key file is missing, unsafe or not a key
    ├── VerificationError             zeronode.protocol.errors: an envelope or signed request refused (reason, http_status)
    │   ├── MalformedEnvelope
    │   │   └── InvalidJSON
    │   ├── UnsupportedVersion
    │   ├── UnknownAlgorithm
    │   ├── MalformedKey
    │   ├── BadSignature
    │   ├── Expired
    │   ├── NotYetValid
    │   ├── WrongAudience
    │   ├── ScriptTooLarge
    │   ├── Replayed
    │   ├── NotAuthorized
    │   ├── PolicyNotMet
    │   ├── WrongNode                 not among the targets, and no placement ticket says so
    │   └── BadTicket                 zeronode.protocol.ticket: a placement ticket no trusted placer signed for this
    ├── ServiceError                  zeronode.api.errors: a request a service did not serve (status, reason, message)
    │   ├── Refused                   4xx: the caller's fault; raised by a service, and by a client reading its answer
    │   │   ├── NotFound              404
    │   │   ├── Conflict              409
    │   │   └── RateLimited           coord.limits: 429, with Retry-After
    │   └── Unavailable               5xx, or never reached: try again later
    ├── AuthorizedKeysError           zeronode.node.authorizer: a bad line in a node's authorized_keys
    ├── SnapshotError                 zeronode.node.rights: a node's saved ledger rights are not readable
    ├── VolatileQueue                 zeronode.node.queue.durability: the node's Redis is not append-only, and that is not allowed
    ├── AlreadyRunning                zeronode.identity_manager.lock: another identity manager reports for this node
    ├── ReleaseError                  zeronode.release.manifest: a release that cannot be built, trusted or installed
    │   ├── BadArtifact               its digest, size, a file's digest or a member is not what was published
    │   ├── SignaturesRefused         fewer than the threshold of trusted release keys signed it
    │   ├── ReleaseBuildError         zeronode.release.build: pip or maturin failed
    │   ├── InstallError              zeronode.identity_manager.install: the venv or pip failed, the wrong interpreter
    │   ├── RestartFailed             zeronode.identity_manager.services: the node's services did not come back
    │   ├── CheckFailed               zeronode.identity_manager.checks: the new version failed a health check
    │   └── Refusal                   zeronode.identity_manager.updates: not installed, and a retry would not change that
    ├── ClusterError                  zeronode.dev.cluster: `zeronode up` could not start
    ├── GuestBuildError               zeronode.dev.guest: the tiny test guest could not be built (apt, cpio)
    ├── LoopStorageError              zeronode.dev.loop_storage: `zeronode up`'s loop-mounted btrfs failed
    ├── SchemaTooNew                  ledger.schema: the database was migrated by a newer ledger
    ├── BadAnswer                     coord.supervisors: a supervisor's answer coord does not read (too large, not its shape)
    ├── Unreachable                   coord.supervisors: no answer from a supervisor (refused, reset, timed out, not HTTP)
    └── SalError                      sal.errors: a SAL refused or failed an operation; the script sees its message
        ├── JobInterrupted            sal.errors: a long SAL call stopped: its job was cancelled or out of time
        ├── OverCommitted             sal.capacity: a VM or volume beyond the node's capacity, its allocation ratios applied
        ├── StorageError              sal.storage.base
        │   ├── InvalidName
        │   ├── VolumeNotFound
        │   ├── VolumeExists
        │   └── VolumeShared          sal.storage.owned: a deployer tried to change a shared volume (an image for everyone)
        ├── NetworkError              sal.network.base
        │   ├── PeerExists
        │   ├── PeerNotFound
        │   ├── MalformedEndpoint
        │   ├── MalformedAddress
        │   └── ReplyTimeout
        ├── ImageError                sal.images.base: pulling, naming or deleting an image
        │   ├── InvalidImageName
        │   ├── ImageNotFound
        │   ├── ImageExists           the name points at another digest
        │   ├── ImageNotOwned         another signer pulled it under that name
        │   ├── ImageInUse            VM root disks were cloned from it
        │   ├── ImageTooLarge         over max_image_bytes
        │   ├── ImageDiskFull         the pool filled up
        │   ├── BadImage              not an image of its format (a qcow2 with a backing file, a bad bundle...)
        │   ├── DigestMismatch
        │   ├── SignatureRefused
        │   └── DownloadError         a bad URL, an unreachable server, an error status
        │       ├── DownloadInterrupted   stopped short: the part is kept, to resume
        │       └── UnsafeRedirect
        ├── VmNotFound                sal.hypervisor.base
        ├── VmExists
        ├── InvalidVmName
        ├── CloudInitError            sal.hypervisor.cloud_init: a VM's cloud_init map it cannot boot with
        ├── VmNetworkError            sal.vmnet: no VM network, an address taken, netlink or nft refused
        └── HypervisorError           sal.hypervisor.base: the VMM refused or failed (status, messages)
            ├── VmmUnreachable
            │   └── VmmExiting        the guest powered off and its VMM is on its way out: a stopped VM
            ├── VmNotCreated
            ├── InvalidVmState
            ├── InvalidVmConfig
            ├── DeviceConflict
            ├── VmmFailure
            └── Unsupported           the driver lacks that feature (its fingerprint does not list it)

Foreign errors become these where they enter, each kind in one table:

| foreign error                                   | becomes                                   | where |
|-------------------------------------------------|-------------------------------------------|-------|
| httpx transport errors (refused, reset, timeout) | Unavailable                               | zeronode.api.errors.unreachable |
| aiohttp errors and timeouts of coord's requests to supervisors | Unreachable                 | coord.supervisors.SupervisorClients.exchange |
| an error answer from a zeronode service          | Refused / NotFound / Conflict / Unavailable | zeronode.api.errors.from_response (REFUSALS) |
| redis, SQLAlchemy errors inside a service        | HTTP 503 with a reason                    | zeronode.api.handlers.FOREIGN |
| pydantic validation errors                       | 422 malformed / VerificationError         | zeronode.api.bodies.parse_body, zeronode.protocol.envelope |
| btrfsutil errors, `btrfs` exit codes             | StorageError                              | sal.storage.drivers.btrfs |
| cloud-hypervisor's HTTP statuses and messages    | the HypervisorError family                | sal.hypervisor.drivers.cloud_hypervisor.client (ERRORS, MESSAGES) |
| QEMU's QMP errors (qemu.qmp)                     | the HypervisorError family                | sal.hypervisor.drivers.qemu.monitor (ERRORS) |
| pyroute2's NetlinkError, `nft` exit codes         | VmNetworkError                            | sal.vmnet.netlink, sal.vmnet.firewall |
| mycelium's HTTP statuses                         | the NetworkError family                   | sal.network.drivers.mycelium |
| httpx errors and statuses of an image download   | DownloadError, DownloadInterrupted         | sal.images.download |
| `qemu-img` exit codes, tar and gzip errors       | BadImage, ImageDiskFull                   | sal.images.unpack |
| Rhai's errors                                    | a job's ScriptError                       | runner.executor.script_error |

Services answer every error as `{"reason": ..., "message": ...}`
(zeronode.api.handlers); the CLI prints any of them as one line.
"""

from __future__ import annotations


class ZeronodeError(Exception):
    """Base of every error zeronode raises on purpose."""
