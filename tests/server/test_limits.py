"""Limits a client without a key can reach, over real HTTP: metric labels, png-info, slow clients, link hosts."""

from __future__ import annotations

import base64
import http.client
import re
import socket
import statistics
import time
from pathlib import Path

import pytest

from tests.live import LiveServer
from tests.png_files import chunk, huge_png

HEADER_TIMEOUT = 2  # seconds the limits server gives a request head (PICO_HEADER_TIMEOUT)
KNOWN_METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE", "OTHER"}


@pytest.fixture(scope="module")
def limited(serve):
    """A server with the defaults but a short head deadline (set through the environment, as an operator could)."""
    return serve(env={"PICO_HEADER_TIMEOUT": str(HEADER_TIMEOUT)})


# 13: /metrics labels come from fixed sets


def test_invented_methods_share_one_metric_label(limited):
    for number in range(30):
        assert limited.request(f"INVENTED{number}", "/api/v1/health").status == 405
    assert limited.request("BREW", f"/no/such/path/{number}").status in (404, 405)
    text = limited.get("/metrics").body.decode()
    series = re.findall(r'^pico_requests_total\{(.*)\}', text, re.MULTILINE)
    labels = [dict(re.findall(r'(\w+)="([^"]*)"', s)) for s in series]
    methods = {label["method"] for label in labels}
    assert "OTHER" in methods
    assert methods <= KNOWN_METHODS
    assert {label["route"] for label in labels if label["method"] == "OTHER"} == {"unmatched"}
    assert all(label["status"].isdigit() for label in labels)


# 14: png-info reads text chunks without decoding pixels


def _server_usage(pid: int) -> tuple[float, int]:
    """(CPU seconds, peak resident kB) of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    peak = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("VmHWM:"))
    return ticks / 100, peak


def test_png_info_refuses_a_huge_png_without_decoding_it(limited):
    data = huge_png()  # 12000x12000, about half a megabyte
    body = {"image": base64.b64encode(data).decode()}
    limited.post("/sdapi/v1/png-info", {"image": base64.b64encode(huge_png(64, 64)).decode()})  # warm the route
    cpu_before, peak_before = _server_usage(limited.process.pid)
    reply = limited.post("/sdapi/v1/png-info", body)
    cpu_after, peak_after = _server_usage(limited.process.pid)
    assert reply.status == 422
    assert reply.json["error"] == "INVALID_REQUEST"
    assert "12000x12000" in reply.json["detail"]
    assert cpu_after - cpu_before < 0.5
    assert peak_after - peak_before < 50_000  # kB: the pixels alone would be 432 MB


@pytest.mark.parametrize("data", [b"not an image at all", b"\x89PNG\r\n\x1a\n", huge_png(64, 64)[:-20],
                                  b"GIF89a" + bytes(100)], ids=["text", "signature-only", "truncated", "gif"])
def test_png_info_of_garbage_is_422(limited, data):
    reply = limited.post("/sdapi/v1/png-info", {"image": base64.b64encode(data).decode()})
    assert reply.status == 422
    assert reply.json["error"] == "INVALID_REQUEST"


def test_png_info_reads_text_after_the_pixels(limited):
    text = chunk(b"tEXt", b"parameters\0ginger cat\nSteps: 2, Sampler: Euler a, CFG scale: 5, Seed: 7")
    data = huge_png(64, 64, after=[text])
    reply = limited.post("/sdapi/v1/png-info", {"image": base64.b64encode(data).decode()})
    assert reply.status == 200
    assert reply.json["parameters"]["Prompt"] == "ginger cat"
    assert reply.json["parameters"]["Seed"] == "7"


# 15: slow clients hold no worker thread


def _health_seconds(server: LiveServer) -> float:
    started = time.perf_counter()
    reply = server.get("/api/v1/health", timeout=5)
    assert reply.status == 200
    return time.perf_counter() - started


def _open_slow(server: LiveServer, start: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(start)
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    try:
        while chunk_ := sock.recv(4096):
            received += chunk_
    except ConnectionResetError:
        pass
    return received


def _read_one_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """One whole response off a kept-alive connection (it may come in several packets): status line, body."""
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(4096)
    head, body = received.split(b"\r\n\r\n", 1)
    length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1))
    while len(body) < length:
        body += sock.recv(4096)
    return head.split(b"\r\n", 1)[0], body


def test_more_slow_clients_than_worker_threads_leave_health_answering(limited):
    workers = 1 + 0 + 8  # --threadsmax 1, --queue 0, the spare threads
    starts = [b"", b"GE", b"GET /api/v1/health HTTP/1.1\r\n", b"POST /sdapi/v1/png-info HTTP/1.1\r\nHost: x\r\n"]
    slow = [_open_slow(limited, starts[i % len(starts)]) for i in range(workers + 6)]
    try:
        first = [_health_seconds(limited) for _ in range(5)]
        for sock in slow:
            sock.sendall(b"X")  # a trickle: one more byte of head on every connection
        second = [_health_seconds(limited) for _ in range(5)]
        assert statistics.median(first + second) < 0.1
        assert max(first + second) < 0.5
    finally:
        for sock in slow:
            sock.close()


def test_a_trickling_head_is_cut_at_the_deadline(limited):
    sock = _open_slow(limited, b"GET /api/v1/health HTTP/1.1\r\n")
    started = time.monotonic()
    closed = False
    try:
        while time.monotonic() - started < HEADER_TIMEOUT + 3:
            try:
                sock.sendall(b"X-Slow: 1\r\n")  # never a quiet second: only a total deadline stops this
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            sock.settimeout(0.3)
            try:
                if sock.recv(4096, socket.MSG_PEEK):
                    closed = True
                    break
            except TimeoutError:
                continue
            except ConnectionResetError:
                closed = True
                break
        elapsed = time.monotonic() - started
        assert closed, "the server let a trickling head run past its deadline"
        assert HEADER_TIMEOUT - 0.5 <= elapsed <= HEADER_TIMEOUT + 2
        sock.settimeout(2)
        answer = _read_until_closed(sock)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408 ")
    finally:
        sock.close()


def test_an_idle_connection_is_closed_at_the_deadline(limited):
    sock = _open_slow(limited, b"")
    started = time.monotonic()
    try:
        answer = _read_until_closed(sock)
        assert HEADER_TIMEOUT - 0.5 <= time.monotonic() - started <= HEADER_TIMEOUT + 2
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert b'"REQUEST_TIMEOUT"' in answer
    finally:
        sock.close()


def test_an_oversized_head_is_431_and_the_server_goes_on(limited):
    reply = limited.get("/api/v1/health", headers={"X-Big": "a" * 70_000})
    assert reply.status == 431
    assert reply.json["Error"]["Code"] == "HEADERS_TOO_LARGE"
    openai = limited.get("/v1/models", headers={f"X-Part-{i}": "b" * 1000 for i in range(70)})
    assert openai.status == 431
    assert openai.json["error"]["code"] == "headers_too_large"
    assert limited.get("/api/v1/health" + "?x=" + "a" * 70_000).status == 414
    assert limited.get("/api/v1/health", headers={"X-Fine": "a" * 60_000}).status == 200


def test_keep_alive_and_pipelined_requests_still_work(limited):
    connection = http.client.HTTPConnection("127.0.0.1", limited.port, timeout=5)
    try:
        for _ in range(3):  # one connection, three requests
            connection.request("GET", "/api/v1/health")
            assert connection.getresponse().read() == b'{"Status": "Idle"}'
    finally:
        connection.close()
    one = b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n"
    sock = _open_slow(limited, one + one[:10])  # a whole request and the start of the next
    try:
        sock.settimeout(5)
        assert _read_one_response(sock) == (b"HTTP/1.1 200 OK", b'{"Status": "Idle"}')
        assert _health_seconds(limited) < 0.5  # the half-sent second request holds no worker
        sock.sendall(one[10:].replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n"))
        assert _read_until_closed(sock).startswith(b"HTTP/1.1 200 ")
    finally:
        sock.close()


def test_a_body_after_a_complete_head_is_read(limited):
    data = huge_png(64, 64)
    body = b'{"image": "' + base64.b64encode(data) + b'"}'
    head = (f"POST /sdapi/v1/png-info HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    sock = _open_slow(limited, head + body[:5])  # the head and the body's first bytes in one packet
    try:
        sock.sendall(body[5:])
        sock.settimeout(5)
        assert _read_until_closed(sock).startswith(b"HTTP/1.1 200 ")
    finally:
        sock.close()


# 18: response_format=url links trust forwarded headers only when told to


SPOOFED = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}
URL_REQUEST = {"prompt": "cat", "size": "64x64", "response_format": "url", "steps": 2}


def _link(server: LiveServer, headers: dict[str, str]) -> str:
    reply = server.post("/v1/images/generations", URL_REQUEST, headers=headers)
    assert reply.status == 200, reply.body
    return reply.json["data"][0]["url"]


def test_links_ignore_forwarded_headers_by_default(limited):
    link = _link(limited, SPOOFED)
    assert link.startswith(f"http://127.0.0.1:{limited.port}/v1/images/files/")
    assert limited.get(link.split(str(limited.port), 1)[1]).status == 200


def test_links_use_the_host_the_client_connected_with(limited):
    assert _link(limited, {"Host": "pico.lan:8080"}).startswith("http://pico.lan:8080/v1/images/files/")
    reply = limited.post("/v1/images/generations", URL_REQUEST, headers={"Host": "evil.example/x?"})
    assert reply.status == 400
    assert reply.json["error"]["message"].startswith("The Host header is not a host name and port: 'evil.example/x?'")


def test_links_trust_forwarded_headers_with_trust_proxy(fresh_server):
    live = fresh_server("--trust-proxy")
    assert _link(live, SPOOFED).startswith("https://evil.example/v1/images/files/")
    assert _link(live, {}).startswith(f"http://127.0.0.1:{live.port}/v1/images/files/")


def test_links_start_with_the_public_url(fresh_server):
    live = fresh_server("--public-url", "https://images.example.com/pico/", "--trust-proxy")
    link = _link(live, SPOOFED)
    assert re.fullmatch(r"https://images\.example\.com/pico/v1/images/files/[\w-]+\.png", link)


def test_a_public_url_that_is_not_one_stops_the_server_at_start(fresh_server):
    with pytest.raises(RuntimeError, match="public-url"):
        fresh_server("--public-url", "images.example.com")
