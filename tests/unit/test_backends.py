"""The local engine and the Ray front door answer the same calls, and batch the same requests together."""

from __future__ import annotations

import inspect

import pytest

from pico.backend import Backend
from pico.pipelines.engine import Engine
from pico.schemas.requests import StableDiffusionRequest

pytest.importorskip("ray")
from pico.ray.backend import RayBackend  # noqa: E402

MEMBERS = sorted(name for name in vars(Backend) if not name.startswith("_")) + ["resolver"]


def test_the_protocol_names_what_the_transports_call():
    assert MEMBERS == ["batch_key", "close", "device", "device_memory", "generate", "generate_batch",
                       "is_loaded", "leave_a_core_free", "load_times", "loaded_models", "model_status", "plan",
                       "replicas", "warm_up", "resolver"]


@pytest.mark.parametrize("implementation", [Engine, RayBackend])
def test_each_backend_has_every_call_with_the_same_parameters(implementation):
    init = inspect.getsource(implementation.__init__)
    for name in MEMBERS:
        ours, theirs = getattr(Backend, name, None), getattr(implementation, name, None)
        assert theirs is not None or f"self.{name} = " in init, f"{implementation.__name__} lacks {name}"
        if callable(ours):
            assert list(inspect.signature(theirs).parameters)[:len(inspect.signature(ours).parameters)] == \
                list(inspect.signature(ours).parameters), name


def body(**fields) -> StableDiffusionRequest:
    return StableDiffusionRequest.parse({"Phrase": "cat", "Seed": 1, "Steps": 2, **fields}, 2048 * 2048)


def test_the_front_door_batches_only_requests_a_replica_can_run_in_one_call():
    front = RayBackend.__new__(RayBackend)  # batch_key reads no cluster
    plain = front.batch_key(body())
    assert plain == front.batch_key(body(Seed=9, Phrase="dog"))
    assert front.batch_key(body(Loras=[{"Name": "detail", "Weight": 0.5}])) != plain
    assert front.batch_key(body(Loras=[{"Name": "detail", "Weight": 0.5}])) == \
        front.batch_key(body(Phrase="dog", Loras=[{"Name": "detail", "Weight": 0.5}]))
    assert front.batch_key(body(Phrase="(cat:1.3)")) == plain  # weights are per phrase
    assert front.batch_key(body(Phrase="cat :0.5")) != plain  # A1111's sub-prompt weight scales guidance
    assert front.batch_key(body(Phrase="cat " * 40)) is None  # its chunk count needs a replica's tokenizer
    assert front.batch_key(body(Phrase="cat " * 40, PromptSyntax="literal")) == front.batch_key(body(PromptSyntax="literal"))


def test_both_backends_key_a_request_the_same(engine):
    front = RayBackend.__new__(RayBackend)
    for request in (body(), body(Loras=[{"Name": "detail", "Weight": 0.5}]), body(Phrase="cat :0.5"),
                    body(Phrase="cat " * 40, PromptSyntax="literal")):
        assert front.batch_key(request) == engine.batch_key(request)
