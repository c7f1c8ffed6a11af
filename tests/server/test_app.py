"""The app in-process, through WSGI, where a test needs what a live server cannot give it:
an unexpected failure on a --verbose server, and GPU-memory numbers on a machine without a GPU."""

from __future__ import annotations

import io
import json
from wsgiref.util import setup_testing_defaults

from prometheus_client.parser import text_string_to_metric_families

from pico.config import Settings
from pico.pipelines.engine import Engine
from pico.server.app import create_app


def call(app, method: str, path: str, body: dict | None = None) -> tuple[str, bytes]:
    """(status line, body) of one request to a WSGI app."""
    payload = json.dumps(body).encode() if body is not None else b""
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "CONTENT_TYPE": "application/json",
               "CONTENT_LENGTH": str(len(payload)), "wsgi.input": io.BytesIO(payload)}
    setup_testing_defaults(environ)
    answer = {}
    chunks = app(environ, lambda status, headers, exc_info=None: answer.update(status=status))
    return answer["status"], b"".join(chunks)


def test_verbose_puts_the_details_of_an_unexpected_failure_in_the_response(tiny_models):
    app = create_app(Settings(models_dir=tiny_models, device="cpu", verbose=True, faults="error:1"))
    status, body = call(app, "POST", "/api/v1/stable-diffusion", {"Phrase": "cat", "Steps": 2})
    error = json.loads(body)["Error"]
    assert status.startswith("500")
    assert (error["Code"], error["Message"]) == (
        "INTERNAL_SERVER_ERROR", "RuntimeError: injected fault: the pipeline failed")
    assert 'in at_step\n    raise RuntimeError("injected fault: the pipeline failed")' in error["Hint"]  # the traceback
    assert error["Hint"].rstrip().endswith("RuntimeError: injected fault: the pipeline failed")
    status, _ = call(app, "POST", "/api/v1/stable-diffusion", {"Phrase": "cat", "Steps": 2})
    assert status.startswith("200")


class ReportingEngine(Engine):
    """The real engine on the CPU, reporting the device memory a CUDA engine would."""

    def device_memory(self) -> tuple[int, int]:
        return 3 * 2**30, 5 * 2**30


def test_metrics_carry_gpu_memory_and_model_load_seconds_with_values(tiny_models):
    settings = Settings(models_dir=tiny_models, device="cpu")
    app = create_app(settings, engine=ReportingEngine(settings))
    assert call(app, "POST", "/api/v1/stable-diffusion", {"Phrase": "cat", "Steps": 2})[0].startswith("200")
    status, body = call(app, "GET", "/metrics")
    samples = {sample.name: sample for family in text_string_to_metric_families(body.decode())
               for sample in family.samples}
    assert status.startswith("200")
    assert samples["pico_gpu_memory_bytes"].value == 3 * 2**30
    assert samples["pico_gpu_memory_peak_bytes"].value == 5 * 2**30
    load = samples["pico_model_load_seconds"]
    assert load.labels == {"model": "stable-diffusion-v1-5/stable-diffusion-v1-5 (float32)"} and 0 < load.value < 120
