"""A client of the OpenAI multipart routes that hangs up mid-generation frees its slot, as JSON clients do."""

from __future__ import annotations

import io
import socket
import time

from PIL import Image


def multipart(fields: dict[str, str], files: dict[str, bytes], boundary: str = "pico-boundary") -> bytes:
    """A multipart/form-data body as the OpenAI SDK sends it."""
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, data in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}.png"\r\n'
                     f"Content-Type: image/png\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (90, 120, 200)).save(out, format="PNG")
    return out.getvalue()


def test_an_edits_client_that_hangs_up_frees_the_slot(server):
    body = multipart({"prompt": "cat", "steps": "250", "model": "sd15"}, {"image": png()})
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(b"POST /v1/images/edits HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Type: multipart/form-data; boundary=pico-boundary\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body) + body)
    deadline = time.monotonic() + 30
    job = None
    while job is None and time.monotonic() < deadline:
        running = [j for j in server.get("/api/v1/status").json["Jobs"] if j["State"] == "running" and j["Step"] >= 1]
        job = running[0] if running else None
    assert job is not None, "the edit never started"
    sock.close()
    server.wait_for_health("Idle", timeout=10)
    assert server.get(f"/api/v1/jobs/{job['Id']}").json["State"] == "cancelled"
