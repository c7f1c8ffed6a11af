"""Full-size pipelines with random weights, from the published architecture configs.

Speed does not depend on weight values, so these time like the real models without a
download: SD 1.5, SD 2.1 (768 px, v-prediction), SDXL base, SD 1.5 inpainting (9-channel
UNet), the image-variation model (CLIP ViT-L/14 image encoder), the ema/mse VAEs and the
fp16-safe SDXL VAE. The tokenizer is PICO's byte-level one (token ids stay inside the real
vocabulary).

The flow-matching families (``--families``) are built in bfloat16, as they are published and run:
SD 3.5 Medium (MMDiT-X, 2.5 B), FLUX.1 dev and schnell (12 B each, schnell without the guidance
embedder), with CLIP-L, OpenCLIP bigG and T5 v1.1 XXL (4.7 B) at their real sizes. SD 3.5 links to
FLUX.1 dev's T5 (the real repos carry identical copies), and FLUX.1 schnell is FLUX.1 dev's folder with
links: its own configs (no guidance embedder, no dynamic shift) over dev's weights, whose guidance
embedder it leaves unread. Speed depends on the architecture, not the values: about 41 GB on disk
instead of 80, which fits the lent machines' 64 GiB disk.

    python benchmarks/fullsize.py --root /tmp/pico-full            # build and save (GPU: ~1 min)
    python benchmarks/fullsize.py --root /tmp/pico-full --families # SD 3.5 Medium, FLUX.1 dev, schnell
    python benchmarks/fullsize.py --check                          # CPU: build each, one 64 px step
    python benchmarks/fullsize.py --check --families               # CPU: the families' configs, scaled down
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pico.catalog.models import (  # noqa: E402
    FLUX_DEV_MODEL,
    FLUX_SCHNELL_MODEL,
    SD1_INPAINT_MODEL,
    SD35_MEDIUM_MODEL,
    SD1_MODEL,
    SD2_MODEL,
    SDXL_FP16_VAE,
    SDXL_MODEL,
    VAE_MODELS,
    VARIATION_MODEL,
)

CLIP_L = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_attention_heads=12,
              num_hidden_layers=12, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768,
              bos_token_id=49406, eos_token_id=49407, pad_token_id=1)
OPENCLIP_H = dict(CLIP_L, hidden_size=1024, intermediate_size=4096, num_attention_heads=16,
                  num_hidden_layers=23, hidden_act="gelu", projection_dim=512)
OPENCLIP_BIGG = dict(CLIP_L, hidden_size=1280, intermediate_size=5120, num_attention_heads=20,
                     num_hidden_layers=32, hidden_act="gelu", projection_dim=1280)
CLIP_L_VISION = dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=24,
                     image_size=224, patch_size=14, projection_dim=768, hidden_act="quick_gelu")
VAE = dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4, norm_num_groups=32,
           down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
           in_channels=3, out_channels=3)
SD15_UNET = dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, cross_attention_dim=768,
                 attention_head_dim=8, sample_size=64, in_channels=4, out_channels=4, norm_num_groups=32,
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
SD21_UNET = dict(SD15_UNET, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
                 use_linear_projection=True, sample_size=96)
SDXL_UNET = dict(block_out_channels=(320, 640, 1280), layers_per_block=2, cross_attention_dim=2048,
                 attention_head_dim=(5, 10, 20), transformer_layers_per_block=(1, 2, 10), sample_size=128,
                 in_channels=4, out_channels=4, norm_num_groups=32, use_linear_projection=True,
                 addition_embed_type="text_time", addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=2816,
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"))
# The flow-matching families, from the published configs (transformer/config.json of each repo).
SD35_MEDIUM_TRANSFORMER = dict(sample_size=128, patch_size=2, in_channels=16, out_channels=16, num_layers=24,
                               attention_head_dim=64, num_attention_heads=24, joint_attention_dim=4096,
                               caption_projection_dim=1536, pooled_projection_dim=2048, pos_embed_max_size=384,
                               qk_norm="rms_norm", dual_attention_layers=tuple(range(13)))
FLUX_TRANSFORMER = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                        num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
                        guidance_embeds=True, axes_dims_rope=(16, 56, 56))
T5_XXL = dict(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
              feed_forward_proj="gated-gelu", relative_attention_num_buckets=32, is_gated_act=True)
FLOW_VAE = dict(VAE, latent_channels=16, use_quant_conv=False, use_post_quant_conv=False)
SHARED_FROM_DEV = ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2")  # FLUX.1 schnell's links
DONE = ".pico-full-size"  # written after a model is saved in full
BETAS = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)


def _vae(size: int, scaling_factor: float = 0.18215, force_upcast: bool = True):
    from diffusers import AutoencoderKL

    return AutoencoderKL(**VAE, sample_size=size, scaling_factor=scaling_factor, force_upcast=force_upcast)


def _sd(tokenizer, *, unet: dict, text: dict, size: int, inpaint: bool = False, v_prediction: bool = False):
    from diffusers import (
        DDIMScheduler,
        PNDMScheduler,
        StableDiffusionInpaintPipeline,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    if v_prediction:
        scheduler = DDIMScheduler(**BETAS, prediction_type="v_prediction", clip_sample=False,
                                  set_alpha_to_one=False)
    else:
        scheduler = PNDMScheduler(**BETAS, skip_prk_steps=True)
    cls = StableDiffusionInpaintPipeline if inpaint else StableDiffusionPipeline
    return cls(
        vae=_vae(size), text_encoder=CLIPTextModel(CLIPTextConfig(**text)), tokenizer=tokenizer,
        unet=UNet2DConditionModel(**dict(unet, in_channels=9 if inpaint else 4)), scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def _sdxl(tokenizer):
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    return StableDiffusionXLPipeline(
        vae=_vae(1024, scaling_factor=0.13025),
        text_encoder=CLIPTextModel(CLIPTextConfig(**CLIP_L)),
        text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**OPENCLIP_BIGG)),
        tokenizer=tokenizer, tokenizer_2=tokenizer,
        unet=UNet2DConditionModel(**SDXL_UNET),
        scheduler=EulerDiscreteScheduler(**BETAS, timestep_spacing="leading"),
        force_zeros_for_empty_prompt=True, add_watermarker=False,
    )


def _variation(_tokenizer):
    from diffusers import PNDMScheduler, StableDiffusionImageVariationPipeline, UNet2DConditionModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    return StableDiffusionImageVariationPipeline(
        vae=_vae(512),
        image_encoder=CLIPVisionModelWithProjection(CLIPVisionConfig(**CLIP_L_VISION)),
        unet=UNet2DConditionModel(**SD15_UNET),
        scheduler=PNDMScheduler(**BETAS, skip_prk_steps=True),
        safety_checker=None, feature_extractor=CLIPImageProcessor(crop_size=224, size=224),
        requires_safety_checker=False,
    )


# model id -> (builder taking the tokenizer, native size in pixels or None for a lone VAE)
BUILDERS: dict[str, tuple[Callable[[Any], Any], int | None]] = {
    SD1_MODEL: (lambda tok: _sd(tok, unet=SD15_UNET, text=CLIP_L, size=512), 512),
    SD2_MODEL: (lambda tok: _sd(tok, unet=SD21_UNET, text=OPENCLIP_H, size=768, v_prediction=True), 768),
    SDXL_MODEL: (_sdxl, 1024),
    SD1_INPAINT_MODEL: (lambda tok: _sd(tok, unet=SD15_UNET, text=CLIP_L, size=512, inpaint=True), 512),
    VARIATION_MODEL: (_variation, 512),
    **{vae_id: (lambda _tok: _vae(256), None) for vae_id in VAE_MODELS.values()},
    SDXL_FP16_VAE: (lambda _tok: _vae(1024, scaling_factor=0.13025, force_upcast=False), None),
}


def _t5_tokenizer(root: Path):
    """The tiny models' T5-style tokenizer (its ids stay inside T5's vocabulary of 32128)."""
    from pico.pipelines.tiny_families import write_t5_tokenizer

    return write_t5_tokenizer(root / ".t5-tokenizer")


def _flow_scheduler(dev: bool, sd3: bool = False):
    from diffusers import FlowMatchEulerDiscreteScheduler

    if sd3:
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0 if dev else 1.0,
                                           use_dynamic_shifting=dev, base_image_seq_len=256, max_image_seq_len=4096,
                                           base_shift=0.5, max_shift=1.15)


def flux_full(tokenizer, t5_tokenizer, dev: bool = True, scale: float = 1.0):
    """FLUX.1 dev (or schnell: no guidance embedder) at its published size; ``scale`` < 1 shrinks it for --check."""
    from diffusers import AutoencoderKL, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    transformer, t5, clip_l = dict(FLUX_TRANSFORMER, guidance_embeds=dev), dict(T5_XXL), dict(CLIP_L)
    if scale < 1:  # fewer layers and heads; the widths the components pass each other stay real
        transformer.update(num_layers=1, num_single_layers=1, num_attention_heads=2)
        t5.update(d_ff=64, num_layers=1, num_heads=2)
        clip_l.update(num_hidden_layers=1)
    return FluxPipeline(
        transformer=FluxTransformer2DModel(**transformer), scheduler=_flow_scheduler(dev),
        vae=AutoencoderKL(**FLOW_VAE, scaling_factor=0.3611, shift_factor=0.1159),
        text_encoder=CLIPTextModel(CLIPTextConfig(**clip_l)), tokenizer=tokenizer,
        text_encoder_2=T5EncoderModel(T5Config(**t5)), tokenizer_2=t5_tokenizer,
    )


def sd35_medium_full(tokenizer, t5_tokenizer, scale: float = 1.0):
    """SD 3.5 Medium at its published size (MMDiT-X: dual attention in its first 13 layers)."""
    from diffusers import AutoencoderKL, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    transformer, t5, clip_l, clip_g = dict(SD35_MEDIUM_TRANSFORMER), dict(T5_XXL), dict(CLIP_L), dict(OPENCLIP_BIGG)
    if scale < 1:  # fewer layers and heads; the widths the components pass each other stay real
        transformer.update(num_layers=2, num_attention_heads=2, caption_projection_dim=128,
                           dual_attention_layers=(0,))
        t5.update(d_ff=64, num_layers=1, num_heads=2)
        clip_l.update(num_hidden_layers=1)
        clip_g.update(num_hidden_layers=1)
    return StableDiffusion3Pipeline(
        transformer=SD3Transformer2DModel(**transformer), scheduler=_flow_scheduler(False, sd3=True),
        vae=AutoencoderKL(**FLOW_VAE, scaling_factor=1.5305, shift_factor=0.0609),
        text_encoder=CLIPTextModelWithProjection(CLIPTextConfig(**clip_l)), tokenizer=tokenizer,
        text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**clip_g)), tokenizer_2=tokenizer,
        text_encoder_3=T5EncoderModel(T5Config(**t5)), tokenizer_3=t5_tokenizer,
    )


# model id -> builder(CLIP tokenizer, T5 tokenizer), in build order (dev first: the others link to it);
# None: made of links to FLUX.1 dev (link_schnell)
FAMILY_BUILDERS: dict[str, Callable[[Any, Any], Any] | None] = {
    FLUX_DEV_MODEL: lambda tok, t5: flux_full(tok, t5, dev=True),
    FLUX_SCHNELL_MODEL: None,
    SD35_MEDIUM_MODEL: sd35_medium_full,
}
# what each links to instead of saving its own copy: component -> (model, component)
FAMILY_LINKS = {
    SD35_MEDIUM_MODEL: {"text_encoder_3": (FLUX_DEV_MODEL, "text_encoder_2"),
                        "tokenizer_3": (FLUX_DEV_MODEL, "tokenizer_2")},
}


def link_schnell(root: Path) -> None:
    """FLUX.1 schnell as links to FLUX.1 dev: schnell's own transformer and scheduler configs over dev's files."""
    import json
    import os
    import shutil

    dev, schnell = root / FLUX_DEV_MODEL, root / FLUX_SCHNELL_MODEL
    if schnell.exists():
        shutil.rmtree(schnell)
    (schnell / "transformer").mkdir(parents=True)
    (schnell / "scheduler").mkdir()
    shutil.copy(dev / "model_index.json", schnell / "model_index.json")
    for name in ("vae", *SHARED_FROM_DEV):
        os.symlink(os.path.relpath(dev / name, schnell), schnell / name)
    for weights in (dev / "transformer").iterdir():
        if weights.name != "config.json":
            os.symlink(os.path.relpath(weights, schnell / "transformer"), schnell / "transformer" / weights.name)
    config = json.loads((dev / "transformer" / "config.json").read_text("utf-8"))
    (schnell / "transformer" / "config.json").write_text(json.dumps({**config, "guidance_embeds": False}), "utf-8")
    scheduler = json.loads((dev / "scheduler" / "scheduler_config.json").read_text("utf-8"))
    scheduler.update(shift=1.0, use_dynamic_shifting=False)
    (schnell / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler), "utf-8")


def write_family_models(root: Path, device: str = "cuda", only: list[str] | None = None) -> list[str]:
    """Build SD 3.5 Medium, FLUX.1 dev and schnell in bfloat16 and save them under ``root/<id>``.

    Components that the real repos share (T5, CLIP-L, tokenizers) are saved once and linked, so the
    three fit a 64 GB disk. The models are built one at a time on ``device``. Returns the ids written now.
    """
    import os

    import torch

    from pico.pipelines.device import quiet_libraries
    from pico.pipelines.tiny_families import save_pipeline

    quiet_libraries()
    from diffusers import FluxPipeline, StableDiffusion3Pipeline  # noqa: F401  (outside the device context)

    tokenizer, t5_tokenizer = _tokenizer(root), _t5_tokenizer(root)
    written = []
    for model_id, build in FAMILY_BUILDERS.items():
        if (only is not None and model_id not in only) or (root / model_id / DONE).exists():
            continue
        started = time.perf_counter()
        if build is None:
            link_schnell(root)
            (root / model_id / DONE).touch()
            written.append(model_id)
            continue
        torch.manual_seed(0)
        with torch.device(device):
            model = build(tokenizer, t5_tokenizer)
        links = FAMILY_LINKS.get(model_id, {})
        for name in links:  # saved by the model it links to: not written twice
            setattr(model, name, None)
        model.to(dtype=torch.bfloat16)
        save_pipeline(model, root / model_id)
        for name, (source, component) in links.items():
            target = root / model_id / name
            if target.exists() or target.is_symlink():
                target.unlink() if target.is_symlink() else None
            os.symlink(os.path.relpath(root / source / component, root / model_id), target)
        _restore_index(root / model_id, model_id, links)
        (root / model_id / DONE).touch()
        del model
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
        print(f"built {model_id} in {time.perf_counter() - started:.1f} s", flush=True)
        written.append(model_id)
    return written


def _restore_index(folder: Path, model_id: str, links: dict[str, tuple[str, str]]) -> None:
    """model_index.json names the linked components again (they were left out of the save)."""
    import json

    if not links:
        return
    index_file = folder / "model_index.json"
    index = json.loads(index_file.read_text("utf-8"))
    source_index = {}
    for name, (source, component) in links.items():
        source_index.setdefault(source, json.loads((folder.parent.parent / source / "model_index.json")
                                                   .read_text("utf-8")))
        index[name] = source_index[source][component]
    index_file.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", "utf-8")


def _tokenizer(root: Path):
    from transformers import CLIPTokenizer

    from pico.pipelines.tiny import write_tokenizer

    write_tokenizer(root / ".tokenizer")
    return CLIPTokenizer.from_pretrained(root / ".tokenizer")


def write_full_size_models(root: Path, device: str = "cuda", only: list[str] | None = None) -> list[str]:
    """Build the full-size models with random float16 weights and save each under ``root/<id>``.

    Models already saved there are kept. Returns the ids written now.
    """
    import torch

    from pico.pipelines.device import quiet_libraries

    quiet_libraries()
    # Diffusers imports lazily; import here, not inside the device context below.
    from diffusers import (  # noqa: F401
        StableDiffusionImageVariationPipeline,
        StableDiffusionInpaintPipeline,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
    )

    tokenizer = _tokenizer(root)
    written = []
    for model_id, (build, _size) in BUILDERS.items():
        if only is not None and model_id not in only:
            continue
        if (root / model_id / DONE).exists():
            continue
        started = time.perf_counter()
        torch.manual_seed(0)
        with torch.device(device):
            model = build(tokenizer)
        model.to(dtype=torch.float16).save_pretrained(root / model_id, safe_serialization=True)
        (root / model_id / DONE).touch()  # a save cut short is built again on the next run
        del model
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
        print(f"built {model_id} in {time.perf_counter() - started:.1f} s", flush=True)
        written.append(model_id)
    return written


def check(scratch: Path) -> None:
    """Build each full-size model on the CPU and run one 64 px step: proves the configs fit together."""
    import torch
    from PIL import Image

    from pico.pipelines.device import quiet_libraries

    quiet_libraries()
    tokenizer = _tokenizer(scratch)
    image = Image.new("RGB", (64, 64), (200, 120, 60))
    for model_id, (build, size) in BUILDERS.items():
        started = time.perf_counter()
        torch.manual_seed(0)
        model = build(tokenizer)
        if size is None:
            out = model.decode(torch.zeros(1, 4, 8, 8)).sample
            assert out.shape == (1, 3, 64, 64), out.shape
        else:
            kwargs: dict[str, Any] = dict(num_inference_steps=1, height=64, width=64, output_type="np")
            name = type(model).__name__
            if "Variation" in name:
                kwargs["image"] = image
            else:
                kwargs["prompt"] = "ginger cat"
            if "Inpaint" in name:
                kwargs.update(image=image, mask_image=Image.new("L", (64, 64), 255))
            with torch.inference_mode():
                out = model(**kwargs).images
            assert out.shape == (1, 64, 64, 3), out.shape
        params = sum(p.numel() for m in model.components.values() if hasattr(m, "parameters")
                     for p in m.parameters()) if size else sum(p.numel() for p in model.parameters())
        print(f"ok {model_id}: {params / 1e6:.0f} M parameters, {time.perf_counter() - started:.1f} s", flush=True)
        del model
        gc.collect()


def check_families(scratch: Path) -> None:
    """The families' builders, scaled down, on the CPU: build, save with links, load back, one 64 px step."""
    import torch
    from diffusers import DiffusionPipeline

    global FAMILY_BUILDERS
    full = FAMILY_BUILDERS
    FAMILY_BUILDERS = {
        FLUX_DEV_MODEL: lambda tok, t5: flux_full(tok, t5, dev=True, scale=0.01),
        FLUX_SCHNELL_MODEL: None,
        SD35_MEDIUM_MODEL: lambda tok, t5: sd35_medium_full(tok, t5, scale=0.01),
    }
    try:
        write_family_models(scratch, device="cpu")
    finally:
        FAMILY_BUILDERS = full
    for model_id in FAMILY_BUILDERS:
        pipe = DiffusionPipeline.from_pretrained(scratch / model_id, dtype=torch.float32, use_safetensors=True)
        out = pipe("ginger cat", num_inference_steps=1, height=64, width=64, output_type="np").images
        assert out.shape == (1, 64, 64, 3), out.shape
        if model_id == FLUX_SCHNELL_MODEL:
            assert not pipe.transformer.config.guidance_embeds and not pipe.scheduler.config.use_dynamic_shifting
        print(f"ok {model_id}: {type(pipe).__name__}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/pico-full"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--check", action="store_true", help="CPU: build each and run one step; save nothing")
    parser.add_argument("--families", action="store_true", help="SD 3.5 Medium, FLUX.1 dev and schnell")
    args = parser.parse_args()
    if args.check:
        check_families(args.root) if args.families else check(args.root)
    elif args.families:
        write_family_models(args.root, args.device)
    else:
        write_full_size_models(args.root, args.device)


if __name__ == "__main__":
    main()
