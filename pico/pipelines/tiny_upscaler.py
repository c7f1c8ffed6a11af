"""A tiny Stable Diffusion x4 upscaler (StableDiffusionUpscalePipeline) of random weights, for tests and --demo."""

from __future__ import annotations

from pathlib import Path


def tiny_upscaler(scratch: Path):
    """The real classes at toy sizes: a VAE that scales by 4, a UNet reading 4 latent + 3 image channels
    and a noise-level class embedding, CLIP text encoder, DDIM, and DDPM to noise the input."""
    from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, StableDiffusionUpscalePipeline

    from pico.pipelines.tiny import clip_text_encoder, clip_tokenizer, tiny_unet

    vae = AutoencoderKL(
        block_out_channels=(32, 32, 32), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=32,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        layers_per_block=1, sample_size=64, scaling_factor=0.08333,
    )
    return StableDiffusionUpscalePipeline(
        vae=vae,
        text_encoder=clip_text_encoder(),
        tokenizer=clip_tokenizer(scratch),
        unet=tiny_unet(in_channels=7, num_class_embeds=1000),
        low_res_scheduler=DDPMScheduler(beta_start=0.0001, beta_end=0.02, beta_schedule="linear"),
        scheduler=DDIMScheduler(beta_start=0.0001, beta_end=0.02, beta_schedule="scaled_linear",
                                prediction_type="v_prediction", clip_sample=False, set_alpha_to_one=False,
                                steps_offset=1),
        max_noise_level=350,
    )
