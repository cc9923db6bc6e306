"""Lets the lab's pods reach the lab's servers: ports on the node's address forwarded to the same ports on loopback.

`python -m lab.bridge --netns /var/run/netns/NAME --listen NODE_IP --ports P1,P2,...` opens its listening sockets
inside the node's network namespace (on the node's lab-made address, which hostNetwork pods and pods on the lab's
bridge both reach), then returns to the lab's own namespace, where it connects each accepted connection to
127.0.0.1 on the same port. So PostgreSQL, moto_server and the Kafka brokers keep listening on loopback only, and a
pod uses `NODE_IP:port` where a host client uses `127.0.0.1:port`. Nothing else is reachable through it: only the
ports it was given, only to loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import socket
import sys
from collections.abc import Iterable

CLONE_NEWNET = 0x40000000
CONNECT_TIMEOUT_S = 5.0
CHUNK = 64 * 1024


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


def listen_in(netns: str, host: str, ports: Iterable[int]) -> list[socket.socket]:
    """Listening sockets on host:port for each port, created inside the namespace at `netns`; this thread then
    returns to the namespace it started in (a socket stays in the namespace it was created in)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(netns, os.O_RDONLY)
    sockets = []
    try:
        _setns(target)
        try:
            for port in ports:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((host, port))
                sock.listen(128)
                sock.setblocking(False)
                sockets.append(sock)
        finally:
            _setns(own)
    finally:
        os.close(own)
        os.close(target)
    return sockets


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


def _handler(port: int):  # type: ignore[no-untyped-def]
    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError):
            writer.close()
            return
        up_reader, up_writer = upstream
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    return forward


async def serve(sockets: list[socket.socket]) -> None:
    servers = [await asyncio.start_server(_handler(s.getsockname()[1]), sock=s) for s in sockets]
    await asyncio.gather(*(server.serve_forever() for server in servers))


def parse_ports(text: str) -> list[int]:
    """`P1,P2,...` as port numbers; ValueError names a bad one (pure)."""
    ports = []
    for part in text.split(","):
        if not part.strip().isdigit() or not 1 <= int(part) <= 65535:
            raise ValueError(f"port {part!r} is not a TCP port (1-65535)")
        ports.append(int(part))
    return ports


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab.bridge", description=__doc__.splitlines()[0])
    p.add_argument("--netns", required=True, help="the node's namespace, e.g. /var/run/netns/drtopo-1234abcd")
    p.add_argument("--listen", required=True, help="the node's address inside that namespace")
    p.add_argument("--ports", required=True, help="comma-separated ports, forwarded to the same ports on 127.0.0.1")
    args = p.parse_args(argv)
    try:
        ports = parse_ports(args.ports)
    except ValueError as exc:
        p.error(str(exc))
    sockets = listen_in(args.netns, args.listen, ports)
    print(f"bridge: {args.listen}:{{{','.join(map(str, ports))}}} -> 127.0.0.1", flush=True)
    asyncio.run(serve(sockets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
