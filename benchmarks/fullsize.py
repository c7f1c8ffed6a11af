"""Full-size SD 1.5 and SDXL pipelines with random weights, from the published architecture configs.

Speed does not depend on weight values, so these time like the real models without a
download. The configs are those of runwayml/stable-diffusion-v1-5 and
stabilityai/stable-diffusion-xl-base-1.0 (unet, vae, text encoders, scheduler); the tokenizer
is PICO's byte-level one (token ids stay inside the real vocabulary).
"""

from __future__ import annotations

from pathlib import Path

from pico.pipelines.models import SD1_MODEL, SDXL_FP16_VAE, SDXL_MODEL

CLIP_L = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_attention_heads=12,
              num_hidden_layers=12, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768,
              bos_token_id=49406, eos_token_id=49407, pad_token_id=1)
OPENCLIP_BIGG = dict(vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_attention_heads=20,
                     num_hidden_layers=32, max_position_embeddings=77, hidden_act="gelu", projection_dim=1280,
                     bos_token_id=49406, eos_token_id=49407, pad_token_id=1)
VAE = dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4, norm_num_groups=32,
           down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
           in_channels=3, out_channels=3)
SD15_UNET = dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, cross_attention_dim=768,
                 attention_head_dim=8, sample_size=64, in_channels=4, out_channels=4, norm_num_groups=32,
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
SDXL_UNET = dict(block_out_channels=(320, 640, 1280), layers_per_block=2, cross_attention_dim=2048,
                 attention_head_dim=(5, 10, 20), transformer_layers_per_block=(1, 2, 10), sample_size=128,
                 in_channels=4, out_channels=4, norm_num_groups=32, use_linear_projection=True,
                 addition_embed_type="text_time", addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=2816,
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"))
BETAS = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)


def write_full_size_models(root: Path, device: str = "cuda") -> list[str]:
    """Build SD 1.5, SDXL and an fp16-safe SDXL VAE with random float16 weights; save under ``root/<id>``."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        PNDMScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from pico.pipelines.base import quiet_libraries
    from pico.pipelines.tiny import write_tokenizer

    quiet_libraries()
    write_tokenizer(root / ".tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(root / ".tokenizer")
    written = []
    with torch.device(device):
        if not (root / SD1_MODEL / "model_index.json").exists():
            StableDiffusionPipeline(
                vae=AutoencoderKL(**VAE, sample_size=512, scaling_factor=0.18215),
                text_encoder=CLIPTextModel(CLIPTextConfig(**CLIP_L)),
                tokenizer=tokenizer,
                unet=UNet2DConditionModel(**SD15_UNET),
                scheduler=PNDMScheduler(**BETAS, skip_prk_steps=True),
                safety_checker=None, feature_extractor=None, requires_safety_checker=False,
            ).to(dtype=torch.float16).save_pretrained(root / SD1_MODEL, safe_serialization=True)
            written.append(SD1_MODEL)
        if not (root / SDXL_MODEL / "model_index.json").exists():
            StableDiffusionXLPipeline(
                vae=AutoencoderKL(**VAE, sample_size=1024, scaling_factor=0.13025, force_upcast=True),
                text_encoder=CLIPTextModel(CLIPTextConfig(**CLIP_L)),
                text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**OPENCLIP_BIGG)),
                tokenizer=tokenizer, tokenizer_2=tokenizer,
                unet=UNet2DConditionModel(**SDXL_UNET),
                scheduler=EulerDiscreteScheduler(**BETAS, timestep_spacing="leading"),
                force_zeros_for_empty_prompt=True, add_watermarker=False,
            ).to(dtype=torch.float16).save_pretrained(root / SDXL_MODEL, safe_serialization=True)
            written.append(SDXL_MODEL)
        if not (root / SDXL_FP16_VAE / "config.json").exists():
            AutoencoderKL(**VAE, sample_size=1024, scaling_factor=0.13025, force_upcast=False).to(
                dtype=torch.float16).save_pretrained(root / SDXL_FP16_VAE, safe_serialization=True)
            written.append(SDXL_FP16_VAE)
    return written
