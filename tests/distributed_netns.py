"""Network isolation check and a two-node local Ray cluster for the Ray tests.

Ray registers the machine's interface address, not loopback, so the Ray tests run only inside a network namespace
whose sole interface is `lo` (see docs/distributed.md for the exact command). Outside one they skip, saying why.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import signal
import socket
import struct
import subprocess
import time

_SIOCGIFFLAGS, _IFF_UP = 0x8913, 0x1
# The head declares a silent node dead after ~5 s instead of Ray's default ~16 s (not less: a loaded CI box must
# not lose a healthy node), so the node-loss test stays quick.
_FAST_FAILURE_DETECTION = '{"health_check_period_ms": 1000, "health_check_failure_threshold": 5}'
# One token for every Ray instance of this pytest process: Ray's C++ token loader caches the first one it reads.
TEST_TOKEN = secrets.token_hex(32)
NETNS_COMMAND = "unshare -n bash -c 'ip link set lo up; python -m pytest -m ray tests/test_distributed*.py'"


def _is_up(name: str) -> bool:
    # ioctl on a socket answers for THIS process's network namespace; /sys/class/net would show the host's
    # interfaces inside `unshare -n` (sysfs keeps the namespace it was mounted in).
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        packed = fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, struct.pack("16sH", name.encode()[:15], 0))
    return bool(struct.unpack("16sH", packed)[1] & _IFF_UP)


def isolation_problem() -> str | None:
    """None inside a loopback-only namespace; otherwise the reason the Ray tests must not run here."""
    up = [name for _, name in socket.if_nameindex() if _is_up(name)]
    others = [name for name in up if name != "lo"]
    if others:
        return f"network interface(s) {', '.join(others)} are up: Ray tests run only in a loopback-only namespace"
    if "lo" not in up:
        return "loopback is down in this namespace: run `ip link set lo up` first"
    return None


def _ray(*args: str, env: dict[str, str]) -> subprocess.Popen:
    # --block keeps `ray start` in the foreground: SIGTERM to it stops exactly that node's processes, no global
    # `ray stop` (which would also kill other Ray processes visible in the PID namespace).
    return subprocess.Popen(["ray", "start", "--block", "--disable-usage-stats", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _wait_for_port(address: str, proc: subprocess.Popen, timeout_s: float = 60.0) -> None:
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the Ray head did not open {address} (exit code {proc.poll()})")


class TwoNodeCluster:
    """`ray start --head` (1 CPU) + a second node (1 CPU, custom resource `node2`), both on 127.0.0.1.

    The constructor returns once both nodes are alive, with this process NOT connected to Ray (so a pool under
    test joins by itself). `node_ids` / `node2_id` are the nodes' Ray ids.
    """

    def __init__(self, port: int, temp_dir: str, env: dict[str, str]) -> None:
        self.address = f"127.0.0.1:{port}"
        self.head = _ray("--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                         f"--temp-dir={temp_dir}", f"--system-config={_FAST_FAILURE_DETECTION}", env=env)
        self.worker: subprocess.Popen | None = None
        try:
            _wait_for_port(self.address, self.head)
            self.worker = _ray(f"--address={self.address}", "--num-cpus=1", '--resources={"node2": 1}', env=env)
            nodes = self._alive_nodes(2)
        except BaseException:
            self.stop()
            raise
        self.node_ids = {n["NodeID"] for n in nodes}
        self.node2_id = next(n["NodeID"] for n in nodes if "node2" in n["Resources"])

    def _alive_nodes(self, count: int, timeout_s: float = 60.0) -> list[dict]:
        import ray

        ray.init(address=self.address, logging_level="ERROR", log_to_driver=False)
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                nodes = [n for n in ray.nodes() if n["Alive"]]
                if len(nodes) >= count:
                    return nodes
                time.sleep(0.3)
            raise RuntimeError(f"the local Ray cluster did not reach {count} nodes in {timeout_s:.0f} s")
        finally:
            ray.shutdown()

    def crash_worker(self) -> None:
        """Lose the second node for good, like a machine dying: SIGKILL every process of its session at once.

        (Its actor processes have their own process groups but share the session `ray start` leads.) Nothing else
        offers `node2`'s place: the head's only CPU is taken, so its actors cannot be restarted anywhere.
        """
        if self.worker is not None:
            _kill_session(self.worker.pid)
            self.worker.wait(timeout=10)
            self.worker = None

    def stop(self) -> None:
        """Stop both nodes: SIGTERM (`ray start --block` then stops its node), then SIGKILL any straggler."""
        for proc in (self.worker, self.head):
            if proc is not None:
                _stop(proc)
        self.worker = None


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to `ray start --block` stops its node cleanly; then SIGKILL whatever of its group is left."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    _kill_session(proc.pid)


def _kill_session(sid: int) -> None:
    """SIGKILL every process of session `sid` (ours: start_new_session made `ray start` its leader)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == sid:
                    os.kill(int(entry), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
