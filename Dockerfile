# The zeronode image: every service (ledger, coord, supervisor, runner, identity) runs from it,
# chosen by the command. Build: docker build -t zeronode:dev .

# -- 1. rhai-py, our Rust binding of the Rhai engine, as a wheel -------------------------------
FROM rust:1-bookworm AS rhai-py
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-dev python3-venv \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /build && /build/bin/pip install --no-cache-dir 'maturin>=1.9,<2'
WORKDIR /src/rhai-py
COPY rhai-py/ ./
RUN /build/bin/maturin build --release --interpreter /build/bin/python --out /wheels

# -- 2. the runtime ---------------------------------------------------------------------------
FROM python:3.11-slim-bookworm
# btrfs-progs and libbtrfsutil: the storage SAL (btrfsutil 6.10 builds against Debian 12's library);
# qemu-utils: qemu-img, which turns qcow2 images into raw disks (image_pull). nftables: `nft`, the VM
# network's NAT and filter rules. qemu-system-x86: the hypervisor of the compose nodes' VMs (on the host's /dev/kvm).
RUN apt-get update \
 && apt-get install -y --no-install-recommends btrfs-progs libbtrfsutil-dev qemu-utils qemu-system-x86 nftables gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
COPY --from=rhai-py /wheels/ /wheels/
WORKDIR /opt/zeronode
COPY pyproject.toml README.md ./
COPY zeronode/ zeronode/
COPY supervisor/ supervisor/
COPY runner/ runner/
COPY sal/ sal/
COPY coord/ coord/
COPY ledger/ ledger/
COPY scripts/ scripts/
RUN pip install --no-cache-dir /wheels/*.whl '.[btrfs]' \
 && apt-get purge -y gcc libc6-dev && apt-get autoremove -y
# The node's state is the supervisor's (zeronode), 0700; the VMs' records root's, readable by the group zeronode
# (2750), and a new compose volume mounted on either takes its owner and mode from here.
RUN useradd --system --home /var/lib/zeronode zeronode \
 && install -d -o zeronode -g zeronode -m 0700 /var/lib/zeronode \
 && install -d -o root -g zeronode -m 2750 /var/lib/zeronode-vms \
 && install -d -o root -g root -m 0700 /var/lib/zeronode-pool
# Runners that manage btrfs volumes and VMs need root (and /dev/kvm); the other services do not.
USER zeronode
ENTRYPOINT []
CMD ["zeronode", "--help"]
