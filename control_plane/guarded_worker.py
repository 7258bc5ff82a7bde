"""gunicorn's threaded worker, hardened so that slow clients cannot take every thread.

gunicorn's gthread worker hands each new connection to a thread, which then reads the TLS handshake and the request
head with blocking calls. A client that sends a few bytes and then nothing more, or trickles its headers a byte at a
time, keeps that thread forever; `workers x threads` such connections (8 by default) stop the service. gthread only
defers connections that send nothing at all, and only after 5 s.

`GuardedThreadWorker` never gives a connection to a thread before its request head is complete. The worker's main
loop (one thread, the selector gthread already has) does the TLS handshake and reads the head without blocking,
buffering it until the blank line that ends it, for every new connection and for every kept-alive one that becomes
readable. A connection gets `Settings.request_head_timeout` seconds for that, then is closed; a head larger than
gunicorn's own header limits would allow is closed at once. The buffered bytes go to gunicorn's parser as if just
read (as gthread does for an h2c preface), so the thread parses without waiting on the client.

Bodies and responses are still read and written by the thread, so those are bounded instead of taken off it: each
socket operation waits `Settings.request_io_timeout` seconds at most, and the whole request body must arrive within
that time after its first read that has to wait (`_BudgetUnreader`; registry blob uploads get more, in proportion to
their size). A stalled body therefore holds a thread for that long at most; the application answers 408
RequestTimeout and the connection is closed (`control_plane/arm/http.py`, `control_plane/oci/http.py`).

gthread also closes connections with a "lingering close" (half-close, then read until the client closes, up to 2 s)
on the main loop with a blocking read, so a client that does not close its side stalls every connection of the worker
for 2 s; here that linger is non-blocking too.

Connections of all kinds (in a thread, kept alive, sending their head, lingering) count against gunicorn's
`worker_connections` (`Settings.worker_connections`): past it the worker stops accepting until some close.

The guard covers HTTP/1.1, the only protocol `control-plane serve` configures. With HTTP/2, the uwsgi protocol or
the PROXY protocol turned on in gunicorn's configuration, the worker logs a warning and behaves as plain gthread.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import ssl
import time
from functools import partial

from gunicorn import http, util
from gunicorn import sock as gunicorn_sock
from gunicorn.http.message import DEFAULT_MAX_HEADERFIELD_SIZE, MAX_HEADERS, MAX_REQUEST_LINE
from gunicorn.http.unreader import SocketUnreader
from gunicorn.workers.gthread import TConn, ThreadWorker

from control_plane.tls import HostCertificates

# How long a closing connection is drained for the client's FIN, and how much of it is read (gunicorn's
# util.close_graceful values): enough for the last response to arrive whole instead of being cut by a reset.
LINGER_SECONDS = 2.0
LINGER_MAX_BYTES = 65536

_RECV_SIZE = 65536

# What one step of reading a head came to.
_WAIT, _READY, _CLOSE = "wait", "ready", "close"


class _BudgetUnreader(SocketUnreader):
    """gunicorn's socket reader, with one time budget for everything read from the network during a request.

    A per-operation socket timeout alone does not bound a body trickled one byte every few seconds, and gunicorn's
    body readers loop until they have the size asked for, so the application cannot bound it either: the budget
    has to be enforced here, on each recv. The clock starts at the first read that goes to the network (heads
    are already buffered, so in practice: the body), not when the request starts, so the application's own time
    before it reads the body costs the client nothing.

    Registry blob uploads (`POST`/`PATCH`/`PUT` under `/v2/…/blobs/uploads`) may be gigabytes: they get the budget
    plus the time their announced length takes at `min_rate` bytes per second, and a chunked one (no length) a
    deadline that moves on as its bytes arrive at that rate. A stalled upload is still cut off; one arriving at a
    normal speed never is.
    """

    def __init__(self, sock, budget: float, min_rate: float = 0.0):
        super().__init__(sock)
        self.budget = budget
        self.min_rate = min_rate
        self.deadline: float | None = None
        self.message = None  # the request being read: told to close its connection if its body times out
        self.started = 0.0
        self.received = 0
        self.streaming = False  # an upload without a length: the deadline follows the bytes received

    def new_request(self) -> None:
        self.deadline = None
        self.message = None

    def _start(self, now: float) -> None:
        self.started, self.received, self.streaming = now, 0, False
        self.deadline = now + self.budget
        if self.min_rate > 0 and _is_upload(self.message):
            length = _content_length(self.message)
            if length is None:
                self.streaming = True
            else:
                self.deadline += length / self.min_rate

    def chunk(self, size_hint=None):
        now = time.monotonic()
        if self.deadline is None:
            self._start(now)
        remaining = self.deadline - now
        previous = self.sock.gettimeout()
        try:
            if remaining <= 0:
                raise TimeoutError("the request body did not arrive in time")
            if previous is None or 0 < remaining < previous:
                self.sock.settimeout(remaining)
            data = super().chunk(size_hint)
        except TimeoutError:
            # The answer (408 from the application) says `Connection: close`: where the next request would start
            # on this connection is unknown now.
            if self.message is not None:
                self.message.force_close()
            raise
        finally:
            if self.sock.gettimeout() != previous:
                self.sock.settimeout(previous)
        if self.streaming:
            self.received += len(data)
            self.deadline = max(self.deadline, self.started + self.budget + self.received / self.min_rate)
        return data


def _is_upload(message) -> bool:
    """A registry blob upload, whose body may be large (control_plane/oci/routes.py)."""
    return (message is not None and getattr(message, "method", None) in ("POST", "PATCH", "PUT")
            and str(getattr(message, "path", "")).startswith("/v2/")
            and "/blobs/uploads" in str(getattr(message, "path", "")))


def _content_length(message) -> int | None:
    for name, value in getattr(message, "headers", ()):
        if name == "CONTENT-LENGTH":
            return int(value) if value.isdigit() else None
    return None


class GuardedConn(TConn):
    """A connection whose request heads the worker's main loop reads before a thread sees them."""

    def __init__(self, cfg, sock, client, server, io_timeout: float, linger):
        super().__init__(cfg, sock, client, server)
        self.io_timeout = io_timeout
        self.linger = linger
        self.handshaking = False
        self.head: bytearray | None = None
        self.scanned = 0  # how far `head` has been searched for line ends
        self.events = 0  # what the selector waits for on this socket (0: not registered)
        self.wanted = 0  # what it should wait for next (the TLS layer may need to write before it can read)
        self.drained = 0  # bytes read while lingering
        self.deadline = 0.0  # when the head (or the lingering close) must be done

    def init(self):
        """Runs in the thread before each request is parsed: the parser already exists (made by the main loop)."""
        self.initialized = True
        self.sock.settimeout(self.io_timeout)
        self.parser.unreader.new_request()

    def close(self, graceful=False):
        if graceful:
            self.linger(self)
        else:
            util.close(self.sock)


class GuardedThreadWorker(ThreadWorker):
    """gthread with request heads read in the main loop, and deadlines on everything a client can stall."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        settings = self.app.settings
        self.head_timeout = float(settings.request_head_timeout)
        self.io_timeout = float(settings.request_io_timeout)
        self.upload_min_rate = float(settings.upload_min_bytes_per_second)
        self.max_head = _max_head_bytes(self.cfg)
        self.guard = _guard_applies(self.cfg)
        # Insertion-ordered sets: every entry gets the same timeout when added, so the first one expires first.
        self.heads: dict[GuardedConn, None] = {}
        self.lingering: dict[GuardedConn, None] = {}
        self._ssl_context = None
        self._ssl_files_seen = None
        self._host_certificates = None
        if settings.tls == "auto" and settings.tls_cert_file is None:  # the local CA's certificate is served
            certificates = HostCertificates(settings.data_dir / "tls", settings.login_server_suffix,
                                            self._context_with)
            self._host_certificates = certificates if certificates.applies() else None

    def init_process(self):
        if not self.guard:
            self.log.warning("HTTP/2, uwsgi or the PROXY protocol is configured: slow clients are not guarded "
                             "against (control_plane/guarded_worker.py)")
        super().init_process()

    # --- new connections and kept-alive ones: read the head in the main loop ---

    def accept(self, listener):
        if not self.guard:
            return super().accept(listener)
        try:
            client, address = listener.accept()
        except OSError as exc:
            if isinstance(exc, (BlockingIOError, ConnectionAbortedError, InterruptedError)):
                return
            raise
        self.nr_conns += 1
        conn = GuardedConn(self.cfg, client, address, listener.getsockname(), self.io_timeout, self._linger)
        if self.cfg.is_ssl:
            try:
                conn.sock = self._tls_context().wrap_socket(
                    conn.sock, server_side=True, do_handshake_on_connect=False,
                    suppress_ragged_eofs=self.cfg.suppress_ragged_eofs)
            except OSError as exc:  # the client is gone already
                self.log.debug("dropping %s before its TLS handshake: %s", address, exc)
                self._drop(conn)
                return
            conn.handshaking = True
        self._start_head(conn)

    def enqueue_req(self, conn):
        """gthread calls this for a new connection, a kept-alive one that became readable, and one whose previous
        request left bytes behind (pipelining): all of them read their next head in the main loop first."""
        if not self.guard:
            return super().enqueue_req(conn)
        self._start_head(conn)

    def _start_head(self, conn: GuardedConn) -> None:
        left_over = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        conn.head = bytearray(left_over)
        conn.scanned = 0
        conn.deadline = time.monotonic() + self.head_timeout
        if conn.sock.gettimeout() != 0.0:
            # Only after pipelining: gthread leaves kept-alive sockets non-blocking already. Every syscall the main
            # loop makes lets a busy thread take the GIL, for up to sys.getswitchinterval() (5 ms): spare one.
            conn.sock.setblocking(False)
        verdict = self._scan(conn) if left_over else None
        self._settle(conn, verdict or self._read_head(conn))

    def _on_head_event(self, conn: GuardedConn, _fileobj) -> None:
        self._settle(conn, self._read_head(conn))

    def _read_head(self, conn: GuardedConn) -> str:
        """Progress without blocking: the TLS handshake, then the head, until it is complete or the socket has
        nothing more for now. OpenSSL may hold decrypted bytes the selector does not see: read until it says so."""
        try:
            if conn.handshaking:
                conn.sock.do_handshake()
                conn.handshaking = False
            while True:
                data = conn.sock.recv(_RECV_SIZE)
                if not data:
                    return _CLOSE  # the client left before finishing its request: nobody to answer
                conn.head += data
                verdict = self._scan(conn)
                if verdict:
                    return verdict
        except ssl.SSLWantWriteError:
            conn.wanted = selectors.EVENT_WRITE
        except (ssl.SSLWantReadError, BlockingIOError):
            conn.wanted = selectors.EVENT_READ
        except OSError as exc:  # a failed handshake (ssl.SSLError), a reset
            self.log.debug("closing %s while reading its request head: %s", conn.client, exc)
            return _CLOSE
        return _WAIT

    def _scan(self, conn: GuardedConn) -> str | None:
        """_READY once the head ends (a blank line), or once gunicorn's parser can refuse it without reading more
        (a bare LF: it answers 400 at once); _CLOSE past the largest head gunicorn's limits accept. Only bytes not
        searched yet are searched, so a head trickled a byte at a time costs linear time."""
        head = conn.head
        end = head.find(b"\n", conn.scanned)
        while end >= 0:
            if end == 0 or head[end - 1] != 0x0D:
                return _READY
            if head[end - 3:end - 1] == b"\r\n":
                return _READY
            end = head.find(b"\n", end + 1)
        conn.scanned = len(head)
        if len(head) > self.max_head:
            self.log.debug("closing %s: its request head passed %d bytes", conn.client, self.max_head)
            return _CLOSE
        return None

    def _settle(self, conn: GuardedConn, verdict: str) -> None:
        try:
            if verdict == _WAIT:
                callback = partial(self._on_head_event, conn)
                if not conn.events:
                    self.poller.register(conn.sock, conn.wanted, callback)
                    self.heads[conn] = None
                elif conn.events != conn.wanted:
                    self.poller.modify(conn.sock, conn.wanted, callback)
                conn.events = conn.wanted
                return
            self._forget(conn, self.heads)
            if verdict == _READY:
                self._hand_over(conn)
            else:
                self._drop(conn)
        except Exception:  # never let one connection take the main loop (and every other connection) down
            self.log.exception("closing %s after an error while reading its request head", conn.client)
            self._forget(conn, self.heads)
            self._drop(conn)

    def _hand_over(self, conn: GuardedConn) -> None:
        """The head is all there: give it to gunicorn's parser as if just read, and the connection to a thread."""
        if conn.parser is None:
            conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
            conn.parser.unreader = _BudgetUnreader(conn.sock, self.io_timeout, self.upload_min_rate)
        conn.parser.unreader.unread(bytes(conn.head))
        conn.head = None
        conn.data_ready = True  # gthread's own 5 s wait for a first byte has nothing left to wait for
        ThreadWorker.enqueue_req(self, conn)

    # --- in the thread: bounded reads and writes ---

    def handle_request(self, req, conn):
        if self.guard:
            conn.parser.unreader.message = req
        try:
            return super().handle_request(req, conn)
        except TimeoutError:
            # A response write that waited request_io_timeout (the client does not read), or a body read past its
            # budget that the application did not catch. gthread would log a traceback for it.
            self.log.info("closing the connection of %s: it stopped sending or receiving", conn.client)
            return False

    # --- closing: lingering without blocking, and expiry of heads and lingers ---

    def _linger(self, conn: GuardedConn) -> None:
        """gunicorn's close_graceful (half-close, drain until the client's FIN), with the drain on the selector."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)  # an SSLSocket drops its TLS layer here, as in close_graceful
            conn.sock.setblocking(False)
        except OSError:
            util.close(conn.sock)
            return
        conn.head = None
        conn.drained = 0
        if self._drain(conn):
            util.close(conn.sock)
            return
        try:
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_linger_event, conn))
        except (OSError, ValueError, KeyError):
            util.close(conn.sock)
            return
        conn.events = selectors.EVENT_READ
        conn.deadline = time.monotonic() + LINGER_SECONDS
        self.lingering[conn] = None
        self.nr_conns += 1  # gthread has stopped counting it; it still holds a socket

    def _on_linger_event(self, conn: GuardedConn, _fileobj) -> None:
        if self._drain(conn):
            self._forget(conn, self.lingering)
            self._drop(conn)

    @staticmethod
    def _drain(conn: GuardedConn) -> bool:
        """True when the linger is over: the client closed, failed, or sent more than we care to read."""
        try:
            while conn.drained < LINGER_MAX_BYTES:
                data = conn.sock.recv(_RECV_SIZE)
                if not data:
                    return True
                conn.drained += len(data)
        except BlockingIOError:
            return False
        except OSError:
            return True
        return True

    def murder_keepalived(self, force=False):
        """gthread calls this on every turn of its loop (and with force=True when it stops): the place to close
        heads and lingering closes whose time is up, oldest first."""
        super().murder_keepalived(force)
        now = time.monotonic()
        for table in (self.heads, self.lingering):
            while table:
                conn = next(iter(table))
                if conn.deadline > now and not force:
                    break
                if table is self.heads:
                    self.log.debug("closing %s: no complete request head within %.0f s", conn.client,
                                   self.head_timeout)
                self._forget(conn, table)
                self._drop(conn)

    def _forget(self, conn: GuardedConn, table: dict) -> None:
        table.pop(conn, None)
        if conn.events:
            conn.events = 0
            with contextlib.suppress(OSError, KeyError, ValueError):
                self.poller.unregister(conn.sock)

    def _drop(self, conn: GuardedConn) -> None:
        self.nr_conns -= 1
        util.close(conn.sock)

    # --- TLS ---

    def _tls_context(self) -> ssl.SSLContext:
        """gunicorn builds a context (reading the certificate and key files) for every connection, which would now
        cost the main loop ~1 ms each. One is kept per worker instead, rebuilt when either file changes."""
        try:
            seen = tuple(os.stat(f).st_mtime_ns for f in (self.cfg.certfile, self.cfg.keyfile) if f)
        except OSError:
            seen = None  # let gunicorn's own code report the missing file
        if seen is None or seen != self._ssl_files_seen or self._ssl_context is None:
            self._ssl_context = gunicorn_sock.ssl_context(self.cfg)
            self._ssl_files_seen = seen
            if self._host_certificates is not None:
                self._ssl_context.sni_callback = self._host_certificates.sni_callback
        return self._ssl_context

    def _context_with(self, cert_file: str, key_file: str) -> ssl.SSLContext:
        """A context configured like gunicorn's, with another certificate (a registry host's, tls.HostCertificates)."""
        cfg = self.cfg
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=cfg.ca_certs)
        context.load_cert_chain(certfile=cert_file, keyfile=key_file)
        context.verify_mode = cfg.cert_reqs
        if cfg.ciphers:
            context.set_ciphers(cfg.ciphers)
        return context


def _guard_applies(cfg) -> bool:
    return ("h2" not in (cfg.http_protocols or ()) and cfg.http2_cleartext == "off"
            and getattr(cfg, "protocol", "http") == "http" and cfg.proxy_protocol == "off")


def _max_head_bytes(cfg) -> int:
    """The largest head gunicorn's parser can accept with these limits (request line, header fields and their
    count, normalised as gunicorn.http.message does): anything longer it would refuse anyway."""
    line = cfg.limit_request_line
    if line < 0 or line >= MAX_REQUEST_LINE:
        line = MAX_REQUEST_LINE
    elif line == 0:
        line = 1024 * 1024  # "unlimited": gunicorn's fast parser uses this bound too
    fields = cfg.limit_request_fields
    if fields <= 0 or fields > MAX_HEADERS:
        fields = MAX_HEADERS
    field_size = cfg.limit_request_field_size
    if field_size <= 0:
        field_size = DEFAULT_MAX_HEADERFIELD_SIZE
    return 2 + line + 2 + fields * (field_size + 2) + 4
