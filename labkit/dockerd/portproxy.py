"""Published ports (`docker run -p 127.0.0.1:8080:80`): a userland proxy, as docker-proxy.

A container's port 80 is on its own address (172.18.0.2:80), reachable from the host through
the bridge. Publishing makes it reachable at a HOST address too. Docker does it two ways at
once: DNAT rules in the kernel (iptables/nftables: packets for host:8080 are rewritten to go
to 172.18.0.2:80), and a userland proxy, `docker-proxy`, one process per published port, that
accepts connections on the host port and opens its own to the container.

labkit uses the proxy alone. The kernel way needs host-wide settings: forwarding between
interfaces (net.ipv4.ip_forward=1), and, for 127.0.0.1 — which a DNAT'd packet may not leave
the host with — route_localnet on the loopback interface; a teaching engine must not flip
those on a student's machine behind their back. The proxy needs nothing: it is an ordinary
program that connects to the container through the bridge, as any host process can.
(The price: the container sees the proxy's address, the bridge's, as its client, not the real
one; and every byte is copied twice, through the proxy.)

How a port is published (`publish`):

    dockerd                                   the proxy (python -m labkit.dockerd.portproxy)
    bind + listen on HOST_IP:HOST_PORT ─┐
      (errors here: "port is already    │ the socket is handed over as an inherited fd
      allocated", reported to the user) ├──────────────▶ accept ─▶ connect CONTAINER_IP:PORT
    spawn the proxy, close our copy ────┘                  └─ copy both ways, half-closes too

dockerd binds the port itself, before the proxy exists: a port in use fails `docker start`
with Docker's message at once, HostPort 0 (`-P`, `-p 80`) gets a free port from the kernel
that dockerd can report in `docker port`, and connections that arrive before the proxy runs
wait in the listen backlog instead of being refused.

One proxy per published port and protocol (tcp or udp), stopped when the container stops, at
its removal, after a failed start, and by a restarted daemon for containers that no longer
run. Their pids are in the container's directory (ports.json); each proxy's command line
carries the container's directory (`--owner`), so only a process that really is that proxy
is ever signalled — never a stranger that reused the pid.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

UDP_IDLE = 90.0        # seconds a UDP "connection" (a client address) lives without traffic
STOP_WAIT = 3.0        # seconds a proxy gets to exit after SIGTERM


@dataclass
class Proxy:
    """One published port, as ports.json keeps it."""
    proto: str           # tcp | udp
    host_ip: str         # 0.0.0.0, 127.0.0.1, ...
    host_port: int
    container_ip: str
    container_port: int
    pid: int = 0


# ---------------------------------------------------------------- dockerd's side

_children: dict[int, subprocess.Popen] = {}   # proxies this daemon started: reaped on stop


def bind(proto: str, host_ip: str, host_port: int) -> socket.socket:
    """The host socket of a published port, bound (and listening, for tcp). OSError with
    Docker's wording when the port is taken."""
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(family, kind)
    try:
        if proto == "tcp":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host_ip, host_port))
        if proto == "tcp":
            sock.listen(128)
    except OSError as e:
        sock.close()
        raise OSError(e.errno, f"driver failed programming external connectivity: Bind for "
                               f"{host_ip}:{host_port} failed: port is already allocated"
                      if e.errno == 98 else f"cannot bind {host_ip}:{host_port}/{proto}: "
                                            f"{e.strerror}") from None
    return sock


def publish(owner: Path, proxy: Proxy, log: Path) -> Proxy:
    """Bind the host side, start the proxy with the socket, return `proxy` with its actual
    host port and pid."""
    sock = bind(proxy.proto, proxy.host_ip, proxy.host_port)
    try:
        proxy.host_port = sock.getsockname()[1]
        argv = [sys.executable, "-m", "labkit.dockerd.portproxy", "--owner", str(owner),
                "--fd", str(sock.fileno()), "--proto", proxy.proto,
                "--container-ip", proxy.container_ip,
                "--container-port", str(proxy.container_port)]
        with open(log, "ab") as out:
            child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                     pass_fds=(sock.fileno(),), start_new_session=True)
    finally:
        sock.close()   # the proxy has its own copy now
    _children[child.pid] = child
    proxy.pid = child.pid
    return proxy


def is_ours(pid: int, owner: Path) -> bool:
    """Whether `pid` is a proxy of `owner` (its command line names it)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"labkit.dockerd.portproxy" in argv and str(owner).encode() in argv


def stop(pid: int, owner: Path) -> None:
    """SIGTERM proxy `pid` (if it still is one of `owner`'s) and wait for it to go."""
    child = _children.pop(pid, None)
    if is_ours(pid, owner):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    if child is not None:
        try:
            child.wait(STOP_WAIT)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        return
    # an earlier daemon's child: not ours to reap, so watch it go
    deadline = time.monotonic() + STOP_WAIT
    while is_ours(pid, owner) and time.monotonic() < deadline:
        time.sleep(0.02)
    if is_ours(pid, owner):
        os.kill(pid, signal.SIGKILL)


def load(path: Path) -> list[Proxy]:
    try:
        return [Proxy(**p) for p in json.loads(path.read_text())]
    except (OSError, ValueError, TypeError):
        return []


def save(path: Path, proxies: list[Proxy]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([asdict(p) for p in proxies]))
    os.replace(tmp, path)


# ---------------------------------------------------------------- the proxy process

async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()     # pass the half-close on: the other side may still answer
    except (ConnectionError, OSError):
        writer.close()


async def _serve_tcp(sock: socket.socket, ip: str, port: int) -> None:
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            backend_r, backend_w = await asyncio.open_connection(ip, port)
        except OSError:
            client_w.close()   # the container does not listen (yet): refuse, as Docker does
            return
        await asyncio.gather(_pipe(client_r, backend_w), _pipe(backend_r, client_w))
        for w in (client_w, backend_w):
            w.close()

    server = await asyncio.start_server(handle, sock=sock)
    async with server:
        await server.serve_forever()


class _UDPFront(asyncio.DatagramProtocol):
    """The host side: one connected socket to the container per client address."""

    def __init__(self, ip: str, port: int) -> None:
        self.target = (ip, port)
        self.back: dict[tuple, tuple[asyncio.DatagramTransport, list[float]]] = {}

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, client: tuple) -> None:
        asyncio.ensure_future(self._forward(data, client))

    async def _forward(self, data: bytes, client: tuple) -> None:
        loop = asyncio.get_running_loop()
        if client not in self.back:
            front = self.transport
            seen = [loop.time()]

            class Back(asyncio.DatagramProtocol):
                def datagram_received(self, reply: bytes, _addr) -> None:
                    seen[0] = loop.time()
                    front.sendto(reply, client)

            transport, _ = await loop.create_datagram_endpoint(Back, remote_addr=self.target)
            self.back[client] = (transport, seen)
        transport, seen = self.back[client]
        seen[0] = loop.time()
        transport.sendto(data)

    async def expire(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(UDP_IDLE / 3)
            for client, (transport, seen) in list(self.back.items()):
                if loop.time() - seen[0] > UDP_IDLE:
                    transport.close()
                    del self.back[client]


async def _serve_udp(sock: socket.socket, ip: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    _, front = await loop.create_datagram_endpoint(lambda: _UDPFront(ip, port), sock=sock)
    await front.expire()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="labkit-proxy", description="one published port")
    p.add_argument("--owner", required=True, help="the container's directory (identifies us)")
    p.add_argument("--fd", type=int, required=True, help="the bound host socket, inherited")
    p.add_argument("--proto", choices=("tcp", "udp"), required=True)
    p.add_argument("--container-ip", required=True)
    p.add_argument("--container-port", type=int, required=True)
    args = p.parse_args(argv)
    sock = socket.socket(fileno=args.fd)
    sock.setblocking(False)
    serve = _serve_tcp if args.proto == "tcp" else _serve_udp

    async def run() -> None:
        task = asyncio.ensure_future(serve(sock, args.container_ip, args.container_port))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
