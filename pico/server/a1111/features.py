"""What PICO does with each field of A1111's txt2img and img2img that it does not simply honour.

Every field of A1111 1.10's API models is declared in ``schemas.py``. Most are honoured;
these are answered with a warning in ``info`` (the feature is not applied, the image is still
made) when a request uses them, and scripts PICO lacks are refused as A1111 refuses them.
"""

from __future__ import annotations

from pico.catalog.samplers import find_a1111_sampler
from pico.errors import InvalidRequest
from pico.server.a1111.sampling import Sampling
from pico.server.a1111.schemas import Img2ImgRequest, ProcessingRequest, Txt2ImgRequest

SD_UPSCALE = "sd upscale"  # the one script PICO runs (img2img)


def refuse_script(request: ProcessingRequest, allowed: tuple[str, ...] = ()) -> None:
    """A1111 answers 422 for a script it does not have; PICO has only img2img's "SD upscale"."""
    name = (request.script_name or "").strip()
    if name and name.lower() not in allowed:
        scripts = f"; PICO has {', '.join(repr(s) for s in allowed)}" if allowed else "; PICO has none here"
        raise InvalidRequest(f"Script '{name}' not found{scripts}", field="script_name",
                             hint="GET /sdapi/v1/scripts lists the scripts.")


def unsupported(request: ProcessingRequest, sampling: Sampling) -> list[str]:
    """A warning for each feature the request asks for that PICO does not apply."""
    notes = []
    sampler = sampling.sampler

    def note(condition: bool, text: str) -> None:
        if condition:
            notes.append(text)

    note(bool(request.styles), f"styles {', '.join(map(str, request.styles or []))} were not applied: PICO has no "
                               "prompt styles.")
    note(request.subseed_strength > 0, "subseed and subseed_strength (variation seeds) were not applied.")
    note(request.seed_resize_from_w > 0 or request.seed_resize_from_h > 0,
         "seed_resize_from_w and _h were not applied.")
    note(bool(request.restore_faces), "restore_faces was not applied: PICO has no face restoration.")
    note(bool(request.tiling), "tiling was not applied: PICO makes no seamless tiles.")
    own = _diffusers_eta(sampler)
    if request.eta is not None and own is not None and request.eta != own and not sampling.eta_applied:
        notes.append(f"eta {request.eta:g} was not applied: {sampler} ran with Diffusers' eta, {own:g}.")
    note(bool(request.s_churn), "s_churn (and s_tmin, s_tmax) were not applied.")
    note(request.s_noise not in (None, 1.0), "s_noise was not applied.")
    note(bool(request.s_min_uncond), "s_min_uncond was not applied.")
    note(bool(request.firstpass_image), "firstpass_image was not applied.")
    note(request.save_images, "save_images: PICO saves nothing on the server; the images are in the answer.")
    note(bool(request.alwayson_scripts),
         f"alwayson_scripts {', '.join(request.alwayson_scripts or {})} were not run: PICO has no extensions.")
    note(bool(request.infotext), "infotext was not applied: send the fields themselves.")
    if isinstance(request, Txt2ImgRequest) and request.enable_hr:
        note((request.hr_checkpoint_name or "").strip().lower() not in ("", "use same checkpoint"),
             "hr_checkpoint_name was not applied: the hires pass uses the same checkpoint.")
    if isinstance(request, Img2ImgRequest):
        note(len(request.init_images or []) > 1, "Only the first of init_images was used.")
        note(request.resize_mode == 3, "resize_mode 3 (latent upscale) ran as 0 (just resize).")
        note(request.mask is not None and not request.mask_round, "mask_round false was not applied: the mask "
                                                                  "is rounded to 0 or 1 in latent space.")
        note(request.mask is not None and request.inpainting_fill in (2, 3),
             "inpainting_fill 2 and 3 (latent noise, latent nothing) ran as 1 (original).")
        note(request.initial_noise_multiplier not in (None, 1.0), "initial_noise_multiplier was not applied.")
        note(bool(request.latent_mask), "latent_mask was not applied.")
        note(request.mask is not None and request.mask_blur is None and request.mask_blur_x != request.mask_blur_y,
             f"mask_blur_x and _y differ; the mask was blurred by {max(request.mask_blur_x, request.mask_blur_y)} "
             "both ways.")
    return notes


def _diffusers_eta(sampler: str) -> float | None:
    """The eta Diffusers' scheduler for ``sampler`` amounts to: 1 for ancestral and SDE ones, 0 for DDIM;
    None for the samplers eta does not touch (in A1111 either)."""
    if sampler == "DDIM":
        return 0.0
    found = find_a1111_sampler(sampler)
    options = found.options if found else {}
    return 1.0 if options.get("uses_ensd") or options.get("brownian_noise") else None
