"""Slow clients cannot starve the others (control_plane/guarded_worker.py).

One worker with two threads, so that a handful of slow connections would take every thread if they could: ones that
say nothing, stop halfway through their TLS ClientHello, or trickle a request head and never finish it are held by
the worker's main loop, not by threads, and closed after the head timeout; a body that stalls or trickles holds a
thread for the request I/O timeout at most and gets 408 RequestTimeout.
"""

from __future__ import annotations

import http.client
import io
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from requests.structures import CaseInsensitiveDict

from control_plane.config import Settings, SettingsError
from tests.conftest import assert_arm_error
from tests.support import servers
from tests.test_cli import run_cli

THREADS = 2
HEAD_TIMEOUT = 3
IO_TIMEOUT = 2
PACE = 0.5  # seconds between the bytes of a trickle; also how often a held connection checks it was closed


@pytest.fixture(scope="module")
def slow_service(tmp_path_factory):
    svc = servers.make_service(tmp_path_factory.mktemp("slow-clients"), None, "local", {
        "CONTROL_PLANE_LOCATIONS": "eastus",
        "CONTROL_PLANE_REQUEST_HEAD_TIMEOUT": str(HEAD_TIMEOUT),
        "CONTROL_PLANE_REQUEST_IO_TIMEOUT": str(IO_TIMEOUT),
    })
    svc.init = svc.cli_json("init")
    svc.start(workers=1, threads=THREADS)
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture(scope="module")
def token(slow_service) -> str:
    svc = slow_service
    return requests.post(f"{svc.url}/{svc.tenant_id}/oauth2/v2.0/token", verify=svc.ca, timeout=30, data={
        "grant_type": "client_credentials", "client_id": svc.init["clientId"],
        "client_secret": svc.init["clientSecret"], "scope": "https://management.azure.com/.default",
    }).json()["access_token"]


def _port(svc) -> int:
    return int(svc.url.rsplit(":", 1)[1])


def _tcp(svc) -> socket.socket:
    return socket.create_connection(("127.0.0.1", _port(svc)), timeout=5)


def _tls(svc) -> ssl.SSLSocket:
    return ssl.create_default_context(cafile=svc.ca).wrap_socket(_tcp(svc), server_hostname="127.0.0.1")


def _half_a_client_hello(svc) -> bytes:
    outgoing = ssl.MemoryBIO()
    tls = ssl.create_default_context(cafile=svc.ca).wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname="127.0.0.1")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    assert hello[0] == 0x16 and len(hello) > 100  # a TLS handshake record
    return hello[: len(hello) // 2]


def _hold(sock: socket.socket, drip: bytes, until: float) -> tuple[bytes, float]:
    """Sends `drip` one byte every PACE seconds and reads whatever comes until the server closes the connection.
    Returns what the server sent and when it closed; fails if it is still open at `until`."""
    received = bytearray()
    sent = 0
    with sock:
        sock.settimeout(PACE)
        while time.monotonic() < until:
            try:
                if sent < len(drip):
                    sock.sendall(drip[sent:sent + 1])
                    sent += 1
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:  # reset, broken pipe, TLS layer cut off: closed too
                return bytes(received), time.monotonic()
            if not data:
                return bytes(received), time.monotonic()
            received += data
    raise AssertionError(f"the server kept the connection open; it sent {bytes(received)[:200]!r}")


def _as_response(raw: bytes) -> requests.Response:
    class _Socket:
        def makefile(self, *args, **kwargs):
            return io.BytesIO(raw)

    answer = http.client.HTTPResponse(_Socket())  # type: ignore[arg-type]
    answer.begin()
    response = requests.Response()
    response.status_code = answer.status
    response.headers = CaseInsensitiveDict(answer.getheaders())
    response._content = answer.read()
    return response


def test_slow_handshakes_and_heads_hold_no_thread_and_are_closed_after_the_head_timeout(slow_service, token):
    svc = slow_service
    hello = _half_a_client_hello(svc)
    trickled_head = (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100)
    started = time.monotonic()
    held = []
    for _ in range(THREADS + 2):  # more of each kind than there are threads
        held.append((_tcp(svc), b""))  # connects and says nothing
        partial = _tcp(svc)
        partial.sendall(hello)
        held.append((partial, b""))  # stops halfway through its ClientHello
        held.append((_tls(svc), trickled_head))  # TLS done, then a head a byte at a time, never finished
    until = started + HEAD_TIMEOUT + 6
    with ThreadPoolExecutor(len(held)) as pool:
        closings = [pool.submit(_hold, sock, drip, until) for sock, drip in held]
        time.sleep(2 * PACE)  # every slow client has sent its first bytes
        for path in ("/readyz", f"/subscriptions/{svc.subscription_id}/resourcegroups?api-version=2025-04-01"):
            asked = time.monotonic()
            response = requests.get(svc.url + path, headers={"Authorization": f"Bearer {token}"}, verify=svc.ca,
                                    timeout=HEAD_TIMEOUT)
            assert response.status_code == 200, response.text
            assert time.monotonic() - asked < HEAD_TIMEOUT / 2
        assert not any(c.done() for c in closings), "served while every slow connection was still open"
        results = [c.result() for c in closings]
    for received, closed in results:
        assert received == b""  # closed without an answer: there was no request to answer
        assert started + HEAD_TIMEOUT <= closed < started + HEAD_TIMEOUT + 3


def test_a_stalled_or_trickled_body_gets_408_and_holds_a_thread_for_the_io_timeout_at_most(slow_service, token):
    svc = slow_service
    group = f"/subscriptions/{svc.subscription_id}/resourcegroups/rg-slow?api-version=2025-04-01"
    start_of_body = b'{"location": "eastus", "tags": {"a": "'

    def head(method: str, path: str, content_type: str, auth: bool = True) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{_port(svc)}", f"Content-Type: {content_type}",
                 "Content-Length: 1000"]
        if auth:
            lines.append(f"Authorization: Bearer {token}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    stalled_json = _tls(svc)
    stalled_json.sendall(head("PUT", group, "application/json") + start_of_body)
    stalled_form = _tls(svc)  # the token endpoint reads its body as a form, not through json_body()
    stalled_form.sendall(head("POST", f"/{svc.tenant_id}/oauth2/v2.0/token", "application/x-www-form-urlencoded",
                              auth=False) + b"grant_type=client_credentials&client_id=")
    trickled = _tls(svc)  # a byte every PACE, well within the per-read timeout: only the total budget stops it
    trickled.sendall(head("PUT", group, "application/json"))
    started = time.monotonic()
    held = [(stalled_json, b""), (stalled_form, b""), (trickled, start_of_body + b"x" * 900)]
    with ThreadPoolExecutor(len(held)) as pool:
        answers = [pool.submit(_hold, sock, drip, started + 3 * IO_TIMEOUT + 5) for sock, drip in held]
        time.sleep(PACE)
        # Three bodies hold both threads, one queued: a thread is free again after IO_TIMEOUT.
        asked = time.monotonic()
        response = requests.get(f"{svc.url}/readyz", verify=svc.ca, timeout=30)
        assert response.status_code == 200
        assert time.monotonic() - asked < IO_TIMEOUT + 1.5
        results = [a.result() for a in answers]
    for received, closed in results:
        response = _as_response(received)
        assert_arm_error(response, 408, "RequestTimeout")
        assert response.headers["Connection"] == "close"
        assert started + IO_TIMEOUT - 0.5 <= closed < started + 2 * IO_TIMEOUT + 2
    assert requests.get(svc.url + group, headers={"Authorization": f"Bearer {token}"}, verify=svc.ca,
                        timeout=30).status_code == 404  # none of the cut-off PUTs created the group


def test_clients_that_never_close_after_connection_close_do_not_stall_the_others(slow_service):
    """The server lingers after `Connection: close` until the client closes too (so the answer is not cut by a
    reset); gunicorn's gthread does that with a blocking read of up to 2 s in its main loop, each."""
    svc = slow_service
    held = []
    for _ in range(THREADS + 2):
        sock = _tls(svc)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        held.append(sock)
    try:
        time.sleep(PACE)  # all answered; the server now waits for each client to close
        asked = time.monotonic()
        assert requests.get(f"{svc.url}/healthz", verify=svc.ca, timeout=30).status_code == 200
        assert time.monotonic() - asked < 1
        for sock in held:
            received, _ = _hold(sock, b"", time.monotonic() + 5)  # the answer whole, then the server's FIN
            assert _as_response(received).status_code == 200
    finally:
        for sock in held:
            sock.close()


@pytest.mark.parametrize("name", ["REQUEST_HEAD_TIMEOUT", "REQUEST_IO_TIMEOUT", "WORKER_CONNECTIONS"])
def test_slow_client_settings_are_checked(name):
    assert Settings.from_env({}).request_head_timeout == 10
    assert Settings.from_env({}).request_io_timeout == 30
    assert Settings.from_env({}).worker_connections == 1000
    assert getattr(Settings.from_env({f"CONTROL_PLANE_{name}": "7"}), name.lower()) == 7
    for bad in ("0", "-3", "1.5", "ten"):
        with pytest.raises(SettingsError, match=f"CONTROL_PLANE_{name}"):
            Settings.from_env({f"CONTROL_PLANE_{name}": bad})


def test_serve_refuses_a_bad_slow_client_setting_cleanly(tmp_path):
    svc = servers.make_service(tmp_path, None, "local", {"CONTROL_PLANE_REQUEST_HEAD_TIMEOUT": "soon"})
    result = run_cli(svc.env, "serve", "--port", str(servers.free_port()))
    assert result.returncode == 2
    assert "CONTROL_PLANE_REQUEST_HEAD_TIMEOUT must be an integer" in result.stderr
    assert "Traceback" not in result.stderr


# -- registry blob uploads: a time allowance in proportion to their size ---------------------------------------

UPLOAD_RATE = 1024 * 1024  # the default CONTROL_PLANE_UPLOAD_MIN_BYTES_PER_SECOND
PIECE = 64 * 1024


def _registry_with_admin(svc, token: str) -> tuple[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    base = f"{svc.url}/subscriptions/{svc.subscription_id}/resourceGroups/rg-slow"
    requests.put(f"{base}?api-version=2022-09-01", json={"location": "eastus"}, headers=headers, verify=svc.ca,
                 timeout=30).raise_for_status()
    name = f"slow{int(time.time() * 1000) % 10**9}"
    url = f"{base}/providers/Microsoft.ContainerRegistry/registries/{name}"
    requests.put(f"{url}?api-version=2023-07-01", headers=headers, verify=svc.ca, timeout=30, json={
        "location": "eastus", "sku": {"name": "Standard"}, "properties": {"adminUserEnabled": True}},
    ).raise_for_status()
    deadline = time.monotonic() + 30
    while requests.get(f"{url}?api-version=2023-07-01", headers=headers, verify=svc.ca, timeout=30).json()[
            "properties"]["provisioningState"] != "Succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    password = requests.post(f"{url}/listCredentials?api-version=2023-07-01", headers=headers, verify=svc.ca,
                             timeout=30).json()["passwords"][0]["value"]
    return name, password


def _paced(total: int, per_second: float, stall_after: int | None = None):
    """`total` bytes in PIECE-sized pieces at `per_second`; with `stall_after`, a pause longer than any budget."""
    sent = 0
    while sent < total:
        if stall_after is not None and sent >= stall_after:
            time.sleep(3 * IO_TIMEOUT + 2)
        piece = min(PIECE, total - sent)
        yield b"u" * piece
        sent += piece
        time.sleep(piece / per_second)


def _patch(svc, name: str, password: str, body, length: int | None) -> tuple[int | None, float]:
    """PATCH a new upload session of `name` with `body`; (status or None when the connection was cut, seconds)."""
    auth = requests.auth._basic_auth_str(name, password)
    location = requests.post(f"{svc.url}/v2/{name}/slow/app/blobs/uploads/", headers={"Authorization": auth},
                             verify=svc.ca, timeout=30).headers["Location"]
    connection = http.client.HTTPSConnection("127.0.0.1", _port(svc), timeout=30,
                                             context=ssl.create_default_context(cafile=svc.ca))
    headers = {"Authorization": auth, "Content-Type": "application/octet-stream"}
    if length is not None:
        headers["Content-Length"] = str(length)
    started = time.monotonic()
    try:
        connection.request("PATCH", location, body=body, headers=headers, encode_chunked=length is None)
        status = connection.getresponse().status
    except OSError:
        status = None
    finally:
        connection.close()
    return status, time.monotonic() - started


def test_uploads_at_a_normal_speed_outlast_the_io_timeout_while_stalled_ones_are_cut(slow_service, token):
    svc = slow_service
    name, password = _registry_with_admin(svc, token)
    size = 4 * UPLOAD_RATE  # ~2.7 s at 1.5 MiB/s: longer than IO_TIMEOUT, far inside IO_TIMEOUT + size/rate
    status, took = _patch(svc, name, password, _paced(size, 1.5 * UPLOAD_RATE), size)
    assert status == 202 and took > IO_TIMEOUT, (status, took)
    status, took = _patch(svc, name, password, _paced(size, 1.5 * UPLOAD_RATE), None)  # chunked: no length
    assert status == 202 and took > IO_TIMEOUT, (status, took)
    # A stall after a good start (longer than the allowance): the server has cut the connection (or answered 408)
    # by the time the client sends again.
    for length in (size, None):
        status, _ = _patch(svc, name, password, _paced(size, 1.5 * UPLOAD_RATE, stall_after=PIECE), length)
        assert status in (408, None), status
