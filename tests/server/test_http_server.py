"""PicoServer in-process with one worker thread and an echo app: heads gathered off the worker, bytes in order."""

from __future__ import annotations

import re
import socket
import threading
import time

import pytest

from pico.server.http_server import PicoServer

LIMIT = 4096


def echo(environ, start_response):
    """Answers the method, path and body it was sent."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    reply = f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']} ".encode() + body
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(reply)))])
    return [reply]


@pytest.fixture
def server():
    """One worker thread, a 4 KiB head limit and a 2 s head deadline."""
    live = PicoServer(("127.0.0.1", 0), echo, numthreads=1, timeout=30, max_header_bytes=LIMIT, header_timeout=2)
    live.prepare()
    thread = threading.Thread(target=live.serve, daemon=True)
    thread.start()
    yield live
    live.stop()
    thread.join(10)


def connect(server: PicoServer, data: bytes = b"") -> socket.socket:
    sock = socket.create_connection(server.bind_addr[:2], timeout=5)
    if data:
        sock.sendall(data)
    return sock


def read_all(sock: socket.socket) -> bytes:
    received = b""
    while part := sock.recv(65536):
        received += part
    return received


def request(path: str = "/", body: bytes = b"", close: bool = True) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
    return (head + ("Connection: close\r\n" if close else "") + "\r\n").encode() + body


def test_the_one_worker_answers_while_slow_clients_send_their_heads(server):
    slow = [connect(server, b"POST /slow HTTP/1.1\r\nHost: x\r\n") for _ in range(5)]
    try:
        started = time.perf_counter()
        assert read_all(connect(server, request("/quick"))).endswith(b"\r\n\r\nPOST /quick ")
        assert time.perf_counter() - started < 0.5
        for sock in slow:  # the slow ones finish their heads and bodies: each is answered
            sock.sendall(b"Content-Length: 3\r\nConnection: close\r\n\r\nabc")
        assert [read_all(sock).rsplit(b"\r\n\r\n", 1)[1] for sock in slow] == [b"POST /slow abc"] * 5
    finally:
        for sock in slow:
            sock.close()


def test_a_head_sent_byte_by_byte_with_its_body_arrives_whole_and_in_order(server):
    data = request("/bytes", b"0123456789" * 500)
    sock = connect(server)
    for byte in data[:200]:
        sock.sendall(bytes([byte]))
    sock.sendall(data[200:])
    assert read_all(sock).endswith(b"\r\n\r\nPOST /bytes " + b"0123456789" * 500)


def test_pipelined_requests_in_one_packet_are_answered_in_order(server):
    sock = connect(server, request("/one", b"1", close=False) + request("/two", b"22", close=False)
                   + request("/three", b"333"))
    answers = read_all(sock)
    assert answers.count(b"HTTP/1.1 200 OK\r\n") == 3
    assert re.findall(rb"POST /\w+ \d+", answers) == [b"POST /one 1", b"POST /two 22", b"POST /three 333"]


def test_a_head_at_the_limit_passes_and_one_byte_more_is_431(server):
    base = request("/", close=True)
    filler = LIMIT - len(base) - len("X-Fill: \r\n")
    exact = base.replace(b"\r\n\r\n", b"\r\nX-Fill: " + b"a" * filler + b"\r\n\r\n")
    assert len(exact) == LIMIT
    assert read_all(connect(server, exact)).startswith(b"HTTP/1.1 200 ")
    over = exact.replace(b"X-Fill: ", b"X-Fill: a")
    answer = read_all(connect(server, over))
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert answer.endswith(b'"Message": "The request line and headers are over 4 KiB (--max-header-kb)", '
                           b'"Hint": "Send fewer or shorter headers (cookies?)."}}')


def test_a_request_line_over_the_limit_is_414(server):
    answer = read_all(connect(server, b"GET /" + b"a" * LIMIT + b" HTTP/1.1\r\n\r\n"))
    assert answer.startswith(b"HTTP/1.1 414 ")
    assert b'"URI_TOO_LONG"' in answer


def test_a_head_with_bare_line_feeds_is_refused_at_once_not_at_the_deadline(server):
    started = time.perf_counter()
    answer = read_all(connect(server, b"GET / HTTP/1.1\nHost: x\n\n"))
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert time.perf_counter() - started < 1


def test_clients_that_leave_mid_head_leave_the_server_serving(server):
    for _ in range(20):
        connect(server, b"GET / HT").close()
    assert read_all(connect(server, request("/after"))).endswith(b"POST /after ")
