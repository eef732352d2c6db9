"""The pod network: a network namespace the lab creates, where every pod address is local.

A real ingress controller connects to the addresses in EndpointSlices. The lab gives pods
addresses in 198.18.0.0/16 (the API refuses loopback ones), which nothing on the host routes: on
the host they would go out of the default route. So pod processes and the ingress controller run
inside a namespace of their own whose only interface is `lo`, with `ip route add local
198.18.0.0/16 dev lo`: there every pod address is this host, and nothing can leave. Nothing is
added to the host's routes or addresses.

Crossing over is done by relays, never by routing. A relay listens on one side and dials the
other; a socket belongs to the namespace of the thread that created it, so a thread that has
entered the pod network (setns) makes the sockets of that side. Host-side dials are refused
unless they go to a loopback address, so no lab traffic can leave the machine by mistake.

    python -m stickyguard_lab.netns relay --netns /proc/PID/ns/net \
        --into 127.0.0.1:6443 --out 127.0.0.1:8000 --ready FILE

`--into` makes a host loopback service reachable at the same address inside the pod network
(the apiserver, as in-cluster clients see it); `--out` makes a service of the pod network
reachable at the same address on the host's loopback (the ingress entrypoint, for users).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ipaddress
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from stickyguard_lab.binaries import LabError
from stickyguard_lab.procs import Supervisor

POD_RANGE = "198.18.0.0/16"  # the node agent's IP_POOL
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)

Address = tuple[str, int]


class PodNetworkError(LabError):
    """The pod network could not be created or entered (needs root or CAP_SYS_ADMIN)."""


_CAP_SYS_ADMIN = 21


def require_privilege() -> None:
    """Fails at once, in one line, where no network namespace can be made (not root, no
    CAP_SYS_ADMIN), instead of after the control plane has started."""
    if os.geteuid() == 0:
        return
    try:
        status = Path("/proc/self/status").read_text()
        caps = next(
            int(line.split()[1], 16) for line in status.splitlines() if line.startswith("CapEff:")
        )
    except (OSError, StopIteration, ValueError):
        caps = 0
    if not caps >> _CAP_SYS_ADMIN & 1:
        raise PodNetworkError(
            "the lab's pod network (a network namespace where pods answer at their own IPs) "
            "needs root or CAP_SYS_ADMIN: run it as root, e.g. 'sudo make demo'"
        )


def enter(ns_path: str) -> None:
    """Moves the calling thread (only it) into the network namespace at ns_path."""
    fd = os.open(ns_path, os.O_RDONLY)
    try:
        if _libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise PodNetworkError(f"setns({ns_path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def parse_address(text: str) -> Address:
    host, port = text.rsplit(":", 1)
    return host, int(port)


def host_connect(addr: Address, timeout: float = 5.0) -> socket.socket:
    """Dials on the host side, loopback only: a pod address dialled from the host would leave
    through the default route."""
    if not ipaddress.ip_address(addr[0]).is_loopback:
        raise ValueError(f"refusing a host-side connection to non-loopback {addr[0]}")
    return socket.create_connection(addr, timeout=timeout)


def _listener(addr: Address) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(addr)
    s.listen(512)
    return s


@dataclass
class PodNetwork:
    """A handle on the pod network: run commands in it, dial into it, listen in it."""

    path: str  # /proc/PID/ns/net of the process holding it
    _pool: ThreadPoolExecutor | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def command(self, argv: Sequence[str | os.PathLike[str]]) -> list[str]:
        """argv run inside the pod network (nsenter execs it: same PID, same signals)."""
        return ["nsenter", f"--net={self.path}", "--", *(str(a) for a in argv)]

    def _run(self, fn: Callable[[], socket.socket]) -> socket.socket:
        with self._lock:
            if self._pool is None:
                # Worker threads that entered the namespace once and stay there.
                self._pool = ThreadPoolExecutor(
                    max_workers=4,
                    thread_name_prefix="podnet",
                    initializer=enter,
                    initargs=(self.path,),
                )
        return self._pool.submit(fn).result()

    def connect(self, addr: Address, timeout: float = 5.0) -> socket.socket:
        """A TCP connection made from inside the pod network."""
        return self._run(lambda: socket.create_connection(addr, timeout=timeout))

    def listen(self, addr: Address) -> socket.socket:
        """A listening socket inside the pod network."""
        return self._run(lambda: _listener(addr))

    def reachable(self, addr: Address) -> bool:
        try:
            self.connect(addr, timeout=0.5).close()
        except OSError:
            return False
        return True


def create_pod_network(sup: Supervisor, name: str = "pod-network") -> PodNetwork:
    """Starts a process that holds a new network namespace with the pod range local on `lo`;
    the namespace lives as long as that process (and whatever runs in it)."""
    marker = sup.state_dir / f"{name}.ready"
    marker.unlink(missing_ok=True)
    script = (
        f"ip link set lo up && ip route add local {POD_RANGE} dev lo && "
        f"touch {marker} && exec sleep infinity"
    )
    holder = sup.start(name, ["unshare", "--net", "sh", "-c", script])
    sup.wait_until(holder, marker.exists, "the pod network", timeout=15)
    return PodNetwork(f"/proc/{holder.popen.pid}/ns/net")


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        # Pass the half-close on, so request/response protocols see EOF as they would.
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


class Forward:
    """Accepts on `listener` and joins each connection with one made by `dial`."""

    def __init__(self, listener: socket.socket, dial: Callable[[], socket.socket]) -> None:
        self.listener, self.dial = listener, dial
        self._stop = threading.Event()

    def start(self) -> Forward:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._join, args=(conn,), daemon=True).start()

    def _join(self, conn: socket.socket) -> None:
        try:
            upstream = self.dial()
        except OSError:
            conn.close()  # as an unreachable backend would: the client sees a reset/EOF
            return
        upstream.settimeout(None)
        back = threading.Thread(target=_pump, args=(upstream, conn), daemon=True)
        back.start()
        _pump(conn, upstream)
        back.join()
        conn.close()
        upstream.close()

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()


def forward_into(net: PodNetwork, addr: Address) -> Forward:
    """A host loopback service made reachable at the same address inside the pod network."""
    return Forward(net.listen(addr), lambda: host_connect(addr)).start()


def forward_out(net: PodNetwork, addr: Address, target: Address | None = None) -> Forward:
    """A pod-network service (`target`, default the same address) made reachable at `addr` on
    the host's loopback."""
    if not ipaddress.ip_address(addr[0]).is_loopback:
        raise ValueError(f"host-side relay addresses must be loopback, not {addr[0]}")
    to = target or addr
    return Forward(_listener(addr), lambda: net.connect(to)).start()


def start_relay(
    sup: Supervisor,
    net: PodNetwork,
    name: str,
    into: Sequence[Address] = (),
    out: Sequence[Address] = (),
) -> None:
    """Starts a relay process for these addresses and waits until all of them listen."""
    ready = sup.state_dir / f"{name}.ready"
    ready.unlink(missing_ok=True)
    argv = ["-m", "stickyguard_lab.netns", "relay", f"--netns={net.path}", f"--ready={ready}"]
    argv += [f"--into={h}:{p}" for h, p in into] + [f"--out={h}:{p}" for h, p in out]
    child = sup.start(name, [sys.executable, *argv])
    sup.wait_until(child, ready.exists, f"relay {name}", timeout=15)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m stickyguard_lab.netns", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("relay", help="relay loopback services into/out of the pod network")
    r.add_argument("--netns", required=True, help="/proc/PID/ns/net of the pod network")
    r.add_argument("--into", action="append", default=[], help="HOST:PORT (host loopback)")
    r.add_argument("--out", action="append", default=[], help="HOST:PORT (pod network)")
    r.add_argument("--ready", type=Path, help="file created once every relay listens")
    args = p.parse_args(argv)
    net = PodNetwork(args.netns)
    forwards = [forward_into(net, parse_address(a)) for a in args.into]
    forwards += [forward_out(net, parse_address(a)) for a in args.out]
    if args.ready:
        args.ready.touch()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    while not done.wait(1.0):
        pass
    for f in forwards:
        f.stop()


if __name__ == "__main__":
    main()
