"""A loopback TCP proxy that can cut the network between clients and one server.

``TcpProxy(port)`` listens on a free 127.0.0.1 port and forwards every connection to
``127.0.0.1:port``. One thread moves the bytes with non-blocking sockets. Faults:

- ``blackhole()``: nothing moves any more, either way, on any connection; new
  connections are accepted but not forwarded. Bytes already sent wait in the socket
  buffers, as they would in TCP retransmission during a partition: a client that keeps
  waiting sees its request answered after ``heal()``; from a client that gave up and
  closed its socket, the server still receives, after ``heal()``, what it had sent and
  then the close (late requests are what fencing must refuse).
- ``reset()``: every open connection is closed with a TCP RST on both sides, and while
  the fault lasts, new connections are reset as soon as they are accepted.
- ``heal()``: back to forwarding; connections held during a blackhole go on.

Everything runs on 127.0.0.1; ``close()`` stops the thread and closes every socket.
"""

from __future__ import annotations

import selectors
import socket
import struct
import threading
from dataclasses import dataclass, field
from enum import Enum
from types import TracebackType

_CHUNK = 65536
_BUFFER_LIMIT = 1 << 20
_TICK_S = 0.02


class Mode(str, Enum):
    PASS = "pass"
    BLACKHOLE = "blackhole"
    RESET = "reset"


@dataclass(eq=False)
class _Pair:
    client: socket.socket
    server: socket.socket | None = None
    to_server: bytearray = field(default_factory=bytearray)
    to_client: bytearray = field(default_factory=bytearray)
    closed: bool = False


def _rst(sock: socket.socket | None) -> None:
    """Close ``sock`` with a TCP RST (linger on, timeout zero)."""
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class TcpProxy:
    """Forwards ``127.0.0.1:<self.port>`` to ``127.0.0.1:<upstream_port>``, faults on demand."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(256)
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._mode = Mode.PASS
        self._lock = threading.Lock()
        self._pairs: list[_Pair] = []
        self._stop = threading.Event()
        self.connections = 0
        """Connections accepted so far."""
        self.resets = 0
        """Connections closed with a RST by ``reset()``."""
        self._thread = threading.Thread(target=self._run, name=f"tcp-proxy-{self.port}", daemon=True)
        self._thread.start()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def mode(self) -> Mode:
        return self._mode

    def blackhole(self) -> None:
        """Stop moving bytes on every connection, old and new, until ``heal()``."""
        with self._lock:
            self._mode = Mode.BLACKHOLE

    def reset(self) -> None:
        """RST every open connection, and every new one until ``heal()``."""
        with self._lock:
            self._mode = Mode.RESET

    def heal(self) -> None:
        """Forward again."""
        with self._lock:
            self._mode = Mode.PASS

    def close(self) -> None:
        """Stop the proxy and close every socket."""
        self._stop.set()
        self._thread.join(timeout=5)
        for pair in self._pairs:
            self._close(pair)
        self._listener.close()

    # --- the pump ------------------------------------------------------------------------

    def _run(self) -> None:
        with selectors.DefaultSelector() as sel:
            while not self._stop.is_set():
                with self._lock:
                    mode = self._mode
                if mode is Mode.RESET:
                    for pair in self._pairs:
                        self.resets += 1
                        _rst(pair.client)
                        _rst(pair.server)
                        pair.closed = True
                if mode is Mode.PASS:
                    for pair in self._pairs:
                        if pair.server is None and not pair.closed:
                            self._connect(pair)
                self._pairs = [p for p in self._pairs if not p.closed]
                self._register(sel, mode)
                for key, events in sel.select(_TICK_S):
                    if key.data is None:
                        self._accept(mode)
                    else:
                        self._pump(key.data, key.fileobj, events)
                for key in list(sel.get_map().values()):
                    sel.unregister(key.fileobj)

    def _register(self, sel: selectors.BaseSelector, mode: Mode) -> None:
        sel.register(self._listener, selectors.EVENT_READ, None)
        if mode is not Mode.PASS:
            return
        for pair in self._pairs:
            if pair.server is None:
                continue
            for sock, inbox, outbox in (
                (pair.client, pair.to_server, pair.to_client),
                (pair.server, pair.to_client, pair.to_server),
            ):
                events = 0
                if len(inbox) < _BUFFER_LIMIT:
                    events |= selectors.EVENT_READ
                if outbox:
                    events |= selectors.EVENT_WRITE
                if events:
                    sel.register(sock, events, pair)

    def _accept(self, mode: Mode) -> None:
        try:
            client, _ = self._listener.accept()
        except OSError:
            return
        self.connections += 1
        if mode is Mode.RESET:
            self.resets += 1
            _rst(client)
            return
        client.setblocking(False)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pair = _Pair(client)
        self._pairs.append(pair)
        if mode is Mode.PASS:
            self._connect(pair)

    def _connect(self, pair: _Pair) -> None:
        try:
            server = socket.create_connection(self.upstream, timeout=2)
        except OSError:
            _rst(pair.client)
            pair.closed = True
            return
        server.setblocking(False)
        server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pair.server = server

    def _pump(self, pair: _Pair, sock: object, events: int) -> None:
        if pair.closed:
            return
        from_client = sock is pair.client
        inbox = pair.to_server if from_client else pair.to_client
        outbox = pair.to_client if from_client else pair.to_server
        assert isinstance(sock, socket.socket)
        try:
            if events & selectors.EVENT_WRITE and outbox:
                sent = sock.send(outbox)
                del outbox[:sent]
            if events & selectors.EVENT_READ:
                data = sock.recv(_CHUNK)
                if not data:
                    self._close(pair)
                    return
                inbox.extend(data)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(pair)

    def _close(self, pair: _Pair) -> None:
        if pair.closed:
            return
        pair.closed = True
        for sock in (pair.client, pair.server):
            if sock is not None:
                sock.close()
