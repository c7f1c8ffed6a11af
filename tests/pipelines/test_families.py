"""SD 3.5 and FLUX.1 (schnell, dev) on every route, and the SDXL refiner: PICO against plain Diffusers by hand.

The hand-made calls load the same tiny model folders with ``from_pretrained`` and pass what a user
would: the same seed (one CPU generator per image), steps, size, guidance and max_sequence_length.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from pico.catalog.models import (
    FLUX_DEV_MODEL,
    FLUX_SCHNELL_MODEL,
    SD35_LARGE_MODEL,
    SD35_MEDIUM_MODEL,
    SDXL_MODEL,
    SDXL_REFINER_MODEL,
)
from pico.errors import InvalidRequest
from pico.pipelines.device import model_memory, pick_dtype, precision_name
from pico.schemas.requests import (
    FluxRequest,
    StableDiffusion3Request,
    StableDiffusionImageToImageRequest,
    StableDiffusionInpaintRequest,
    StableDiffusionRequest,
    StableDiffusionXlRequest,
)
from tests.pipelines.test_reproducibility import assert_same_image, diffusers_pipeline, pixels

MAX_PIXELS = 2048 * 2048
RED = Image.new("RGB", (64, 80), (200, 40, 40))
MASK = Image.new("L", (64, 80), 0)
MASK.paste(255, (32, 0, 64, 80))

# model -> (request type, its defaults: steps, guidance, max_sequence_length)
FAMILY_MODELS = {
    SD35_MEDIUM_MODEL: (StableDiffusion3Request, 40, 4.5, 512),
    FLUX_SCHNELL_MODEL: (FluxRequest, 4, 0.0, 256),
    FLUX_DEV_MODEL: (FluxRequest, 28, 3.5, 512),
}
IDS = ["sd35", "flux-schnell", "flux-dev"]



@pytest.fixture(scope="module")
def hand(tiny_models):
    """Each tiny model loaded once by hand, as a Diffusers user would."""
    loaded = {}

    def pipeline(model):
        if model not in loaded:
            loaded[model] = diffusers_pipeline(tiny_models, model)
        return loaded[model]

    return pipeline


def b64(image: Image.Image) -> str:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def parse(cls, **body):
    return cls.parse(body, MAX_PIXELS)


def seeds(*values: int) -> list[torch.Generator]:
    return [torch.Generator("cpu").manual_seed(v) for v in values]


def equal(ours, theirs) -> None:
    assert len(ours) == len(theirs)
    for mine, reference in zip(pixels(ours), pixels(theirs)):
        np.testing.assert_array_equal(mine, reference)


# ---- text to image -------------------------------------------------------------------------------

@pytest.mark.parametrize("model", list(FAMILY_MODELS), ids=IDS)
def test_text_to_image_equals_a_plain_diffusers_call(engine, hand, model):
    cls, _, guidance, length = FAMILY_MODELS[model]
    ours = engine.generate(parse(cls, Model=model, Phrase="ginger cat", NegativePhrase="blurry", Seed=21, Steps=3,
                                 Width=64, Height=80, Total=2, GuidanceScale=2.5))
    negative = {} if cls is FluxRequest else {"negative_prompt": "blurry"}  # FLUX: only with true CFG
    theirs = hand(model)(prompt="ginger cat", num_inference_steps=3, guidance_scale=2.5, width=64, height=80,
                         num_images_per_prompt=2, generator=seeds(21, 22), max_sequence_length=length,
                         **negative).images
    equal(ours.images, theirs)
    meta = ours.metadata[1]
    assert (meta["Seed"], meta["Quality"], meta["MaxSequenceLength"], meta["Scheduler"], meta["Precision"]) == (
        22, 3, length, "Euler", "full")
    assert ours.warnings[0] == "Precision 'bfloat16' is not available on the CPU; ran in float32 (Precision 'full')."


@pytest.mark.parametrize("model", list(FAMILY_MODELS), ids=IDS)
def test_without_steps_or_quality_the_family_defaults_apply(engine, model):
    cls, steps, guidance, length = FAMILY_MODELS[model]
    request = parse(cls, Model=model, Phrase="cat", Width=64, Height=64, Seed=1)
    assert (request.step_count(), request.guidance_scale, request.max_sequence_length, request.precision) == (
        steps, guidance, length, "bfloat16")
    assert engine.generate(request).metadata[0]["Quality"] == steps
    assert parse(cls, Model=model, Phrase="cat", Quality=0.2).step_count() == 50  # Quality keeps its meaning
    assert parse(StableDiffusionRequest, Phrase="cat").step_count() == 50  # SD: as Quality 0.2 always gave


def test_model_cards_override_their_family_defaults():
    large = parse(StableDiffusion3Request, Model=SD35_LARGE_MODEL, Phrase="cat")
    turbo = parse(StableDiffusion3Request, Model="stabilityai/stable-diffusion-3.5-large-turbo", Phrase="cat")
    assert (large.step_count(), large.guidance_scale) == (28, 3.5)
    assert (turbo.step_count(), turbo.guidance_scale) == (4, 0.0)
    finetune = parse(FluxRequest, Model="someone/portrait-finetune", Phrase="cat")  # the route's family: dev
    assert (finetune.step_count(), finetune.guidance_scale, finetune.max_sequence_length) == (28, 3.5, 512)


def test_flux_true_guidance_uses_the_negative_phrase_as_diffusers_does(engine, hand):
    body = dict(Model=FLUX_DEV_MODEL, Phrase="ginger cat", Seed=5, Steps=2, Width=64, Height=64)
    ours = engine.generate(parse(FluxRequest, **body, NegativePhrase="blurry", TrueGuidanceScale=4.0))
    theirs = hand(FLUX_DEV_MODEL)(prompt="ginger cat", negative_prompt="blurry", true_cfg_scale=4.0,
                                  num_inference_steps=2, guidance_scale=3.5, width=64, height=64,
                                  generator=seeds(5), max_sequence_length=512).images
    equal(ours.images, theirs)
    assert ours.metadata[0]["TrueGuidanceScale"] == 4.0
    without_true_cfg = engine.generate(parse(FluxRequest, **body, NegativePhrase="blurry"))
    plain = engine.generate(parse(FluxRequest, **body))
    equal(without_true_cfg.images, plain.images)  # the negative phrase was not used...
    assert without_true_cfg.warnings[-1] == (  # ...and the answer says so
        "NegativePhrase was not used: FLUX.1 follows a negative phrase only with true classifier-free guidance; "
        "set TrueGuidanceScale above 1 (e.g. 4, about twice the time).")
    assert not np.array_equal(*pixels([ours.images[0], plain.images[0]]))


def test_schnell_says_guidance_has_no_effect(engine):
    body = dict(Phrase="cat", Seed=5, Steps=2, Width=64, Height=64)
    guided = engine.generate(parse(FluxRequest, **body, GuidanceScale=6.0))
    equal(guided.images, engine.generate(parse(FluxRequest, **body)).images)
    assert guided.warnings[-1].startswith("GuidanceScale 6 has no effect on FLUX.1 schnell models")


def test_a1111_syntax_is_removed_with_a_warning_never_silently(engine):
    body = dict(Model=SD35_MEDIUM_MODEL, Seed=3, Steps=2, Width=64, Height=64)
    weighted = engine.generate(parse(StableDiffusion3Request, **body, Phrase="a (ginger:1.3) cat BREAK [sofa]"))
    plain = engine.generate(parse(StableDiffusion3Request, **body, Phrase="a ginger cat sofa"))
    equal(weighted.images, plain.images)
    assert weighted.warnings[-1] == (
        "Phrase uses AUTOMATIC1111 weights or BREAK, which SD 3 and FLUX do not apply: their brackets were removed "
        "and the words read at weight 1 (PromptSyntax 'literal' sends the text as it is).")
    assert plain.warnings == [weighted.warnings[0]]  # the CPU's precision note only
    literal = engine.generate(parse(StableDiffusion3Request, **body, Phrase="a (ginger:1.3) cat",
                                    PromptSyntax="literal"))
    assert len(literal.warnings) == 1 and not np.array_equal(*pixels([literal.images[0], plain.images[0]]))


def test_a_phrase_longer_than_max_sequence_length_is_cut_and_said(engine, hand):
    phrase = " ".join(["ginger cat on a sofa"] * 6)
    ours = engine.generate(parse(FluxRequest, Phrase=phrase, MaxSequenceLength=16, Seed=2, Steps=2, Width=64,
                                 Height=64))
    theirs = hand(FLUX_SCHNELL_MODEL)(prompt=phrase, num_inference_steps=2, guidance_scale=0.0, width=64, height=64,
                                      generator=seeds(2), max_sequence_length=16).images
    equal(ours.images, theirs)
    tokens = len(hand(FLUX_SCHNELL_MODEL).tokenizer_2(phrase).input_ids)
    assert ours.warnings[-1] == (f"Phrase is {tokens} T5 tokens long; the model read the first 16 "
                                 "(MaxSequenceLength, at most 512), the rest was ignored.")


def test_a_flow_sampler_equals_diffusers_with_that_scheduler(engine, hand):
    import diffusers

    ours = engine.generate(parse(StableDiffusion3Request, Phrase="cat", Scheduler="UniPC", Seed=8, Steps=3,
                                 Width=64, Height=64))
    pipe = hand(SD35_MEDIUM_MODEL)
    own = pipe.scheduler
    pipe.scheduler = diffusers.UniPCMultistepScheduler.from_config(
        own.config, use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=own.config.shift)
    try:
        theirs = pipe(prompt="cat", num_inference_steps=3, guidance_scale=4.5, width=64, height=64,
                      generator=seeds(8), max_sequence_length=512).images
    finally:
        pipe.scheduler = own
    equal(ours.images, theirs)
    assert ours.metadata[0]["Scheduler"] == "UniPC"


# ---- image to image, inpainting ------------------------------------------------------------------

def task_request(task: str, model: str, **body):
    if task == "image-to-image":
        return parse(StableDiffusionImageToImageRequest, Model=model, Phrase="oil painting", ImageBase64=b64(RED),
                     Strength=0.7, **body)
    return parse(StableDiffusionInpaintRequest, Model=model, Phrase="a hat", ImageBase64=b64(RED),
                 MaskImageBase64=b64(MASK), Strength=1.0, **body)


@pytest.mark.parametrize("task", ["image-to-image", "inpaint"])
@pytest.mark.parametrize("model", list(FAMILY_MODELS), ids=IDS)
def test_image_to_image_and_inpainting_equal_plain_diffusers(engine, hand, model, task):
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting

    _, _, guidance, length = FAMILY_MODELS[model]
    ours = engine.generate(task_request(task, model, Seed=30, Steps=4, Total=2))
    base = hand(model)
    common = dict(num_inference_steps=4, guidance_scale=guidance, num_images_per_prompt=2, generator=seeds(30, 31),
                  max_sequence_length=length, width=64, height=80, image=[RED, RED])  # a copy per image, by seed
    if task == "image-to-image":
        theirs = AutoPipelineForImage2Image.from_pipe(base)(prompt="oil painting", strength=0.7, **common).images
    else:
        theirs = AutoPipelineForInpainting.from_pipe(base)(prompt="a hat", mask_image=MASK, strength=1.0,
                                                           **common).images
    equal(ours.images, theirs)
    assert [meta["GuidanceScale"] for meta in ours.metadata] == [guidance] * 2  # the family's, not SD's 7.5


@pytest.mark.parametrize("task", ["text-to-image", "image-to-image", "inpaint"])
@pytest.mark.parametrize("model", [SD35_MEDIUM_MODEL, FLUX_DEV_MODEL], ids=["sd35", "flux-dev"])
def test_image_i_is_seed_plus_i_alone(engine, model, task):
    def run(**body):
        if task == "text-to-image":
            cls = FAMILY_MODELS[model][0]
            return engine.generate(parse(cls, Model=model, Phrase="cat", Steps=3, Width=64, Height=64, **body))
        return engine.generate(task_request(task, model, Steps=3, **body))

    batch, alone = run(Seed=40, Total=2), run(Seed=41)
    assert_same_image(pixels(batch.images)[1], pixels(alone.images)[0])
    assert not np.array_equal(*pixels(batch.images))


def test_an_input_image_off_the_16_pixel_grid_is_drawn_at_the_size_below(engine):
    odd = Image.new("RGB", (72, 90), (10, 200, 10))
    result = engine.generate(parse(StableDiffusionImageToImageRequest, Model=FLUX_SCHNELL_MODEL, Phrase="cat",
                                   ImageBase64=b64(odd), Steps=2))
    assert result.images[0].size == (64, 80)


# ---- what a family cannot do ---------------------------------------------------------------------

@pytest.mark.parametrize("cls, body, field, message", [
    (FluxRequest, {"Scheduler": "DPM++ 2M Karras"}, "Scheduler",
     "Scheduler 'DPM++ 2M Karras' does not fit FLUX.1 schnell models: they are flow-matching models, and the "
     "samplers that fit them are Euler, UniPC"),
    (StableDiffusion3Request, {"Width": 72, "Height": 64}, "Width",
     "Width must be a multiple of 16 for Stable Diffusion 3.x models, got 72"),
    (StableDiffusion3Request, {"VaeType": "mse"}, "VaeType",
     f"VaeType 'mse' does not fit Stable Diffusion 3.x model {SD35_MEDIUM_MODEL}: the ema and mse VAEs are for "
     "SD 1 and 2"),
    (FluxRequest, {"MaxSequenceLength": 513}, "MaxSequenceLength", "MaxSequenceLength must be between 1 and 512, "
                                                                   "got 513"),
    (StableDiffusionXlRequest, {"Refiner": SDXL_REFINER_MODEL, "RefinerSwitchAt": 0}, "RefinerSwitchAt",
     "RefinerSwitchAt must be above 0 and below 1 with a Refiner, got 0: at 0 the base would do nothing"),
])
def test_bad_combinations_are_refused_before_any_work(cls, body, field, message):
    with pytest.raises(InvalidRequest) as caught:
        parse(cls, Phrase="cat", **body)
    assert (caught.value.field, caught.value.message) == (field, message)


@pytest.mark.parametrize("cls, model, field, start", [
    (StableDiffusionRequest, FLUX_DEV_MODEL, "Model",
     f"Model {FLUX_DEV_MODEL} is a FLUX.1 model; stable-diffusion runs Stable Diffusion 1, 2 and XL models"),
    (FluxRequest, SD35_MEDIUM_MODEL, "Model",
     f"Model {SD35_MEDIUM_MODEL} is a Stable Diffusion 3 model; flux needs a FLUX.1 model"),
    (StableDiffusion3Request, SDXL_MODEL, "Model", f"Model {SDXL_MODEL} is a SDXL model; stable-diffusion-3 needs"),
])
def test_a_model_of_another_family_is_sent_to_its_route(engine, cls, model, field, start):
    with pytest.raises(InvalidRequest) as caught:
        engine.generate(parse(cls, Model=model, Phrase="cat", Steps=1, Width=64, Height=64))
    assert caught.value.field == field and caught.value.message.startswith(start)


def test_a_ddpm_sampler_on_image_to_image_with_a_flow_model_is_refused_when_loaded(engine):
    request = task_request("image-to-image", "someone/no-family-in-this-name", Scheduler="DPM++ 2M", Steps=2)
    request.model = FLUX_DEV_MODEL  # a fine-tune whose name did not tell its family at validation
    with pytest.raises(InvalidRequest) as caught:
        engine.generate(request)
    assert caught.value.field == "Scheduler" and "does not fit FLUX.1 models" in caught.value.message


def test_sd_fields_the_flow_families_lack_are_said_and_flow_fields_on_sd_too(engine):
    flux = engine.generate(parse(FluxRequest, Phrase="cat", ClipSkip=2, AttentionSlicing=True, Steps=1, Width=64,
                                 Height=64))
    assert "ClipSkip is not applied to FLUX.1 (it reads CLIP's pooled output only)." in flux.warnings
    assert ("AttentionSlicing was not applied: FLUX.1 computes attention with PyTorch's memory-efficient SDPA."
            in flux.warnings)
    sd = engine.generate(task_request("image-to-image", "runwayml/stable-diffusion-v1-5", Steps=2,
                                      MaxSequenceLength=77, TrueGuidanceScale=3))
    assert sd.warnings[1:] == ["MaxSequenceLength applies to SD 3 and FLUX models (T5); this model ignored it.",
                               "TrueGuidanceScale applies to FLUX models; this model guides with GuidanceScale."]


# ---- the SDXL refiner ----------------------------------------------------------------------------

def xl(**body):
    return parse(StableDiffusionXlRequest, **{"Phrase": "ginger cat", "Seed": 12, "Steps": 6, "Width": 64,
                                              "Height": 64, "Total": 2, **body})


@pytest.mark.parametrize("phrase", ["ginger cat", "a (ginger:1.2) [cat:dog:0.7]"], ids=["plain", "a1111"])
def test_the_refiner_split_equals_a_full_base_run_when_they_share_one_unet(engine, phrase):
    full = engine.generate(xl(Phrase=phrase))
    split = engine.generate(xl(Phrase=phrase, Refiner=SDXL_MODEL, RefinerSwitchAt=0.5))
    equal(split.images, full.images)
    assert (split.metadata[0]["Refiner"], split.metadata[0]["RefinerSwitchAt"]) == (SDXL_MODEL, 0.5)


def test_the_refiner_equals_diffusers_ensemble_of_experts(engine, hand):
    steps = []
    ours = engine.generate(xl(NegativePhrase="blurry", Refiner=SDXL_REFINER_MODEL),
                           on_step=lambda done, total: steps.append((done, total)))
    base, refiner = hand(SDXL_MODEL), hand(SDXL_REFINER_MODEL)
    generator = seeds(12, 13)
    latents = base(prompt="ginger cat", negative_prompt="blurry", num_inference_steps=6, guidance_scale=5.0,
                   width=64, height=64, num_images_per_prompt=2, generator=generator, denoising_end=0.8,
                   output_type="latent").images
    theirs = refiner(prompt="ginger cat", negative_prompt="blurry", num_inference_steps=6, guidance_scale=5.0,
                     num_images_per_prompt=2, generator=generator, image=latents, denoising_start=0.8).images
    equal(ours.images, theirs)
    assert steps == [(n, 6) for n in range(1, 7)]  # one count across the hand-over
    assert not np.array_equal(*pixels([ours.images[0], engine.generate(xl(NegativePhrase="blurry")).images[0]]))


def test_a_refiner_interrupted_before_the_switch_returns_the_base_latents_decoded(engine):
    result = engine.generate(xl(Refiner=SDXL_REFINER_MODEL, Total=1), on_step=lambda done, total: done >= 2)
    assert result.images[0].size == (64, 64) and result.metadata[0]["Quality"] == 2
    assert "Interrupted after 2 of 6 steps: the images are not fully denoised." in result.warnings


@pytest.mark.parametrize("body, field, message", [
    ({"Refiner": FLUX_DEV_MODEL}, "Refiner",
     f"Refiner {FLUX_DEV_MODEL} is not an SDXL refiner or base model (it is a FLUX.1 text-to-image model): it "
     "cannot continue from SDXL latents"),
    ({"Refiner": SDXL_REFINER_MODEL, "RefinerSwitchAt": 0.01, "Steps": 2}, "RefinerSwitchAt",
     "RefinerSwitchAt 0.01 with 2 steps leaves the base no denoising step"),  # timesteps 501, 1: none >= 990
    ({"Refiner": SDXL_REFINER_MODEL, "RefinerSwitchAt": 0.999, "Steps": 2}, "RefinerSwitchAt",
     "RefinerSwitchAt 0.999 with 2 steps leaves the refiner no denoising step"),  # none below 1
])
def test_a_refiner_that_cannot_continue_is_refused(engine, body, field, message):
    with pytest.raises(InvalidRequest) as caught:
        engine.generate(xl(**body))
    assert (caught.value.field, caught.value.message) == (field, message)


# ---- previews, memory, precision -----------------------------------------------------------------

@pytest.mark.parametrize("cls, model", [(StableDiffusion3Request, SD35_MEDIUM_MODEL), (FluxRequest, FLUX_DEV_MODEL)],
                         ids=["sd35", "flux-dev"])
def test_previews_form_for_both_families(engine, cls, model):
    previews = []
    engine.generate(parse(cls, Model=model, Phrase="cat", Steps=2, Width=64, Height=96, Total=2),
                    on_preview=lambda step, render: previews.append((step, render())))
    assert [step for step, _ in previews] == [1, 2]
    assert [image.size for image in previews[-1][1]] == [(8, 12), (8, 12)]  # one 1/8-size RGB image per image


def test_status_reports_what_each_loaded_model_holds(engine, hand):
    engine.generate(parse(FluxRequest, Phrase="cat", Steps=1, Width=64, Height=64))
    status = next(s for s in engine.model_status() if s["Model"] == FLUX_SCHNELL_MODEL)
    pipe = hand(FLUX_SCHNELL_MODEL)
    transformer = sum(p.numel() * p.element_size() for p in pipe.transformer.parameters()) + sum(
        b.numel() * b.element_size() for b in pipe.transformer.buffers())
    assert status["Components"]["transformer"] == transformer
    assert set(status["Components"]) == {"transformer", "vae", "text_encoder", "text_encoder_2"}
    assert status["Bytes"] == sum(status["Components"].values())
    assert status["Parameters"] == sum(p for p, _ in model_memory(pipe).values())
    assert (status["Precision"], status["Placement"]) == ("full", "cpu")


def test_bfloat16_is_a_precision_and_the_cpu_says_it_ran_float32():
    assert pick_dtype("bfloat16", torch.device("cuda")) == (torch.bfloat16, None)
    assert pick_dtype("half", torch.device("cuda")) == (torch.float16, None)
    assert pick_dtype("bfloat16", torch.device("cpu")) == (
        torch.float32, "Precision 'bfloat16' is not available on the CPU; ran in float32 (Precision 'full').")
    assert [precision_name(d) for d in (torch.bfloat16, torch.float16, torch.float32)] == ["bfloat16", "half", "full"]


# ---- LoRAs on the new families ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def family_loras(tiny_models, tmp_path_factory):
    """An engine whose LoRA folder holds a tiny LoRA for SD 3.5 and one for FLUX.1 dev (Diffusers format)."""
    from pico.config import Settings
    from pico.pipelines.engine import Engine
    from pico.pipelines.tiny_loras import write_tiny_lora

    folder = tmp_path_factory.mktemp("family-loras")
    files = {SD35_MEDIUM_MODEL: write_tiny_lora(tiny_models / SD35_MEDIUM_MODEL, folder / "sd35-style.safetensors",
                                                seed=4),
             FLUX_DEV_MODEL: write_tiny_lora(tiny_models / FLUX_DEV_MODEL, folder / "flux-style.safetensors", seed=5)}
    engine = Engine(Settings(models_dir=tiny_models, lora_dir=(folder,), device="cpu", max_models=4,
                             cache_dir=tmp_path_factory.mktemp("cache")))
    return engine, files


@pytest.mark.parametrize("model", [SD35_MEDIUM_MODEL, FLUX_DEV_MODEL], ids=["sd35", "flux-dev"])
def test_a_lora_draws_what_diffusers_draws_and_the_base_stays_as_it_was(family_loras, tiny_models, model):
    engine, files = family_loras
    cls = FAMILY_MODELS[model][0]
    body = dict(Model=model, Phrase="ginger cat", Seed=3, Steps=2, Width=64, Height=64, GuidanceScale=3.0)
    base = engine.generate(parse(cls, **body))
    styled = engine.generate(parse(cls, **body, Loras=[{"Name": files[model].stem, "Weight": 0.7}]))
    pipe = diffusers_pipeline(tiny_models, model)
    pipe.load_lora_weights(str(files[model]), adapter_name="style")
    pipe.set_adapters(["style"], [0.7])
    theirs = pipe(prompt="ginger cat", num_inference_steps=2, guidance_scale=3.0, width=64, height=64,
                  generator=seeds(3), max_sequence_length=FAMILY_MODELS[model][3]).images
    equal(styled.images, theirs)
    assert not np.array_equal(pixels(styled.images)[0], pixels(base.images)[0])
    equal(engine.generate(parse(cls, **body)).images, base.images)  # bit-identical base afterwards
    assert styled.metadata[0]["Loras"][0]["Name"] == files[model].name
