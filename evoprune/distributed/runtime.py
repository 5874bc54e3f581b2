"""Start a private Ray instance or join an existing cluster, and undo exactly what was started.

Ray is imported lazily so that a single-process run never needs it.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from typing import Any

from evoprune.errors import EvopruneError

LOCAL = "local"


STARTED, JOINED, REUSED = "started", "joined", "reused"


@dataclass(frozen=True)
class RaySession:
    """How this process got its Ray connection, which decides what closing it undoes."""

    address: str
    mode: str  # STARTED: our private instance, shut it down; JOINED: disconnect only; REUSED: leave it alone


def _quiet_environment() -> None:
    # Must be set before Ray spawns its processes: they inherit the environment.
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")


def _probe(host_port: str, timeout_s: float) -> None:
    """Fail fast on a dead address instead of letting `ray.init` retry for minutes (a stale cluster file)."""
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return
    except (OSError, ValueError) as exc:
        raise EvopruneError(
            f"no Ray cluster answers at {host_port} ({exc}). Start one with `ray start --head`, check the address, "
            "or drop --address to use a private local instance"
        ) from exc


def _resolve_join_address(address: str) -> str:
    """'auto' → the GCS address Ray would use (RAY_ADDRESS or the local cluster file); host:port unchanged."""
    if address != "auto":
        return address
    from ray._private import services

    found = services.canonicalize_bootstrap_address(address)
    if not found:
        raise EvopruneError("--address auto found no running Ray cluster on this machine: run `ray start --head` "
                            "(or `ray start --address=HEAD:6379`) here first")
    return found


def connect(address: str = LOCAL, *, num_cpus: int | None = None, num_gpus: int | None = None,
            verbose: bool = False, probe_timeout_s: float = 5.0, **init_kwargs: Any) -> RaySession:
    """`local`: a fresh private instance (never reads a cluster file); `auto`, `HOST:PORT`, `ray://HOST:PORT`: join."""
    _quiet_environment()
    import ray

    if ray.is_initialized():
        # The caller (a notebook, a test fixture) already connected: use that and leave it running on close.
        return RaySession(address=ray.get_runtime_context().gcs_address, mode=REUSED)
    level = logging.INFO if verbose else logging.ERROR
    common = {"logging_level": level, "log_to_driver": verbose, **init_kwargs}
    if address == LOCAL:
        # Only formula strings and result dicts travel, so a small object store is plenty (Ray's default takes
        # 30% of RAM). No dashboard: it is a web server we do not need on a private instance.
        local = {"object_store_memory": 256 * 1024**2, **common}
        ray.init(address=LOCAL, num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, **local)
        return RaySession(address=LOCAL, mode=STARTED)
    if address.startswith("ray://"):
        _probe(address.removeprefix("ray://"), probe_timeout_s)
        ray.init(address=address, **common)
        return RaySession(address=address, mode=JOINED)
    resolved = _resolve_join_address(address)
    _probe(resolved, probe_timeout_s)
    ray.init(address=resolved, **common)
    return RaySession(address=resolved, mode=JOINED)


def disconnect(session: RaySession) -> None:
    """Shut down a private instance; leave a joined cluster running (only this driver disconnects); REUSED: nothing."""
    import ray

    # On a joined cluster ray.shutdown() only ends this driver's job (and its actors); the nodes keep running.
    if session.mode != REUSED and ray.is_initialized():
        ray.shutdown()
