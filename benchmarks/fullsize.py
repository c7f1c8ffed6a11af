"""Full-size pipelines with random weights, from the published architecture configs.

Speed does not depend on weight values, so these time like the real models without a
download: SD 1.5, SD 2.1 (768 px, v-prediction), SDXL base, SD 1.5 inpainting (9-channel
UNet), the image-variation model (CLIP ViT-L/14 image encoder), the ema/mse VAEs and the
fp16-safe SDXL VAE. The tokenizer is PICO's byte-level one (token ids stay inside the real
vocabulary).

    python benchmarks/fullsize.py --root /tmp/pico-full            # build and save (GPU: ~1 min)
    python benchmarks/fullsize.py --check                          # CPU: build each, one 64 px step
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
    SD1_INPAINT_MODEL,
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/pico-full"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--check", action="store_true", help="CPU: build each and run one step; save nothing")
    args = parser.parse_args()
    if args.check:
        check(args.root)
    else:
        write_full_size_models(args.root, args.device)


if __name__ == "__main__":
    main()
