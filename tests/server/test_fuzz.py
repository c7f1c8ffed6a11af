"""Schemathesis fuzzes every documented operation of a live server: no 5xx, no off-schema response.

Bounded for CI: a fixed number of examples per operation and mode, derandomized so a run
is reproducible. It runs on the shared server with a queue (so sequential calls never see 503)
and a small pixel limit (so sizes stay cheap), and puts back the default model it may switch.
Valid bodies are made cheap before sending (few steps, few images), since those are tested
elsewhere and would only cost time here.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES = 12
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance, status_code_conformance]
# Numbers a fuzzer may set as high as the schema allows, and their cheap ceilings.
CHEAP = {"Steps": 2, "steps": 2, "Quality": 0.008, "Total": 2, "n": 2, "batch_size": 2, "n_iter": 1}


def cheapen(case) -> None:
    """Lower the cost of a generated body without making a valid one invalid."""
    if isinstance(case.body, dict):
        for key, ceiling in CHEAP.items():
            value = case.body.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > ceiling:
                case.body[key] = ceiling
        if "Phrase" in case.body and "Width" not in case.body and "Height" not in case.body:
            case.body.update(Width=64, Height=64)  # FLUX.1 draws 1024² by default: 16 s on the tiny model


def operations_of(url: str):
    schema = schemathesis.openapi.from_url(url)
    return [result.ok() for result in schema.get_all_operations()]


def generations_so_far(server) -> float:
    metrics = server.get("/metrics").body.decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("pico_generation_images_count"))


def test_no_operation_answers_5xx_or_off_schema(operations):
    failures = []
    generated_before = generations_so_far(operations)
    default_model = operations.get("/sdapi/v1/options").json["sd_model_checkpoint"]
    try:
        for operation in operations_of(f"http://127.0.0.1:{operations.port}/openapi.json"):
            for mode in GenerationMode:
                @given(case=operation.as_strategy(generation_mode=mode))
                @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
                def fuzz(case):
                    cheapen(case)
                    case.call_and_validate(checks=CHECKS, timeout=60)

                try:
                    fuzz()
                except Unsatisfiable:
                    assert mode is GenerationMode.NEGATIVE  # nothing to negate in a bodiless route: fine
                except Exception as failure:  # collect every operation's failure, then report them together
                    failures.append(f"{operation.label} ({mode.value}): {failure}"[:2000])
    finally:  # the fuzzer may have switched the default model through A1111's options
        operations.post("/sdapi/v1/options", {"sd_model_checkpoint": default_model})
    assert not failures, "\n\n".join(failures)
    assert operations.get("/api/v1/health").json == {"Status": "Idle"}
    assert generations_so_far(operations) > generated_before, \
        "the fuzzer never got a generation through: it tested only the error paths"
