"""Facts about the machine the core runs on."""
from __future__ import annotations

import os


def physical_cores() -> int:
    """Physical cores this process may run on (hyper-threads share a core's execution units,
    so matmul gains nothing from them). Falls back to the logical count where the kernel
    does not say which threads share a core."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
    cores = set()
    for cpu in cpus:
        topology = f"/sys/devices/system/cpu/cpu{cpu}/topology/"
        try:
            with open(topology + "physical_package_id") as pkg, open(topology + "core_id") as core:
                cores.add((pkg.read().strip(), core.read().strip()))
        except OSError:
            return max(1, len(cpus))
    return max(1, len(cores))


def available_memory() -> int | None:
    """Bytes the kernel reckons can be allocated without swapping (MemAvailable), or None
    where /proc/meminfo does not say (not Linux)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
