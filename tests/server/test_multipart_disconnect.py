"""A client of the OpenAI multipart routes that hangs up mid-generation frees its slot, as JSON clients do.

The generation is held open at its first step (``server.held()``), so the client hangs up while it
surely runs, whatever this machine's speed.
"""

from __future__ import annotations

import io
import socket

import pytest
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


@pytest.mark.parametrize("route, fields, pipeline", [
    ("/v1/images/edits", {"prompt": "cat", "steps": "50", "model": "sd15"}, "stable-diffusion-image-to-image"),
    ("/v1/images/variations", {"steps": "50"}, "stable-diffusion-image-variation"),
], ids=["edits", "variations"])
def test_a_multipart_client_that_hangs_up_mid_generation_frees_the_slot(server, route, fields, pipeline):
    body = multipart(fields, {"image": png()})
    with server.held() as hold:
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(f"POST {route} HTTP/1.1\r\nHost: x\r\n".encode() +
                     b"Content-Type: multipart/form-data; boundary=pico-boundary\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body)
        [job] = server.wait_for_jobs("running")  # held at its first step
        assert job["Pipeline"] == pipeline
        sock.close()
        hold.release()
        server.wait_for_health("Idle", timeout=60)
    ended = server.get(f"/api/v1/jobs/{job['Id']}").json
    # It stops where it was held, or at the next step: a job reports its step just before it looks at its client.
    assert (ended["State"], ended["Step"]) == ("cancelled", 2), ended  # held at step 1, stopped at the next
    assert ended["Error"].endswith("its client disconnected"), ended
