"""A1111's settings (/sdapi/v1/options) and command-line flags (/sdapi/v1/cmd-flags).

Options round-trip: whatever a client writes it reads back. Four take effect on generations:
``sd_model_checkpoint`` (the default model), ``sd_vae`` (PICO's VaeType), ``CLIP_stop_at_last_layers``
(clip skip, on SD 1 only as in A1111) and ``samples_format`` (how answers encode images); the
others are kept and listed in ``pico_options_without_effect``. ``override_settings`` in a request
applies the same for that request only, unless it asks for them to stay.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pico import __version__
from pico.catalog.families import family_of
from pico.catalog.models import VAE_MODELS
from pico.errors import InvalidRequest, NotFound
from pico.pipelines.prompt_embeds import clip_skip_from_a1111
from pico.schemas.fields import lenient_value
from pico.server.a1111.checkpoints import current_title, find_checkpoint
from pico.server.a1111.schemas import SDVaeItem

if TYPE_CHECKING:
    from pico.config import Settings
    from pico.server.a1111.schemas import ProcessingRequest
    from pico.server.service import Service

HONOURED = ("sd_model_checkpoint", "sd_vae", "CLIP_stop_at_last_layers", "samples_format")
# A1111's image encodings for answers -> PICO's; others fall back to PNG with a warning.
SAMPLES_FORMATS = {"png": "png", "jpg": "jpeg", "jpeg": "jpeg", "webp": "webp"}
# A1111's names of the ft-EMA and ft-MSE VAEs (its files, and the Diffusers repos) -> VaeType.
VAE_NAMES = {
    "ema": ("sd-vae-ft-ema", "vae-ft-ema-560000-ema-pruned"),
    "mse": ("sd-vae-ft-mse", "vae-ft-mse-840000-ema-pruned"),
}
NO_VAE = ("automatic", "none", "")
# A1111 1.10's settings and their defaults (modules/shared_options.py), as GET /sdapi/v1/options lists them.
DEFAULTS: dict[str, Any] = {
    "samples_save": True, "samples_format": "png", "samples_filename_pattern": "", "save_images_add_number": True,
    "grid_save": True, "grid_format": "png", "grid_extended_filename": False, "grid_only_if_multiple": True,
    "n_rows": -1, "enable_pnginfo": True, "save_txt": False, "save_images_before_face_restoration": False,
    "save_images_before_highres_fix": False, "save_images_before_color_correction": False, "save_mask": False,
    "save_mask_composite": False, "jpeg_quality": 80, "webp_lossless": False, "export_for_4chan": True,
    "img_downscale_threshold": 4.0, "target_side_length": 4000, "img_max_size_mp": 200,
    "use_original_name_batch": True, "save_init_img": False, "save_incomplete_images": False,
    "outdir_samples": "", "save_to_dirs": True, "grid_save_to_dirs": True, "directories_filename_pattern": "[date]",
    "ESRGAN_tile": 192, "ESRGAN_tile_overlap": 8, "upscaler_for_img2img": None,
    "face_restoration": False, "face_restoration_model": "CodeFormer", "code_former_weight": 0.5,
    "sd_checkpoints_limit": 1, "sd_checkpoints_keep_in_cpu": True, "sd_unet": "Automatic",
    "enable_emphasis": True, "enable_batch_seeds": True, "comma_padding_backtrack": 20,
    "CLIP_stop_at_last_layers": 1, "upcast_attn": False, "randn_source": "GPU", "tiling": False,
    "sdxl_crop_top": 0, "sdxl_crop_left": 0, "sdxl_refiner_low_aesthetic_score": 2.5,
    "sdxl_refiner_high_aesthetic_score": 6.0, "sd_vae_checkpoint_cache": 0, "sd_vae": "Automatic",
    "sd_vae_overrides_per_model_preferences": True, "auto_vae_precision": True, "sd_vae_encode_method": "Full",
    "sd_vae_decode_method": "Full", "inpainting_mask_weight": 1.0, "initial_noise_multiplier": 1.0,
    "img2img_extra_noise": 0.0, "img2img_color_correction": False, "img2img_fix_steps": False,
    "img2img_background_color": "#ffffff", "return_mask": False, "return_mask_composite": False,
    "cross_attention_optimization": "Automatic", "s_min_uncond": 0.0, "token_merging_ratio": 0.0,
    "token_merging_ratio_img2img": 0.0, "token_merging_ratio_hr": 0.0, "pad_cond_uncond": False,
    "persistent_cond_cache": True, "batch_cond_uncond": True, "use_old_emphasis_implementation": False,
    "use_old_karras_scheduler_sigmas": False, "no_dpmpp_sde_batch_determinism": False,
    "use_old_hires_fix_width_height": False, "hires_fix_use_firstpass_conds": False, "use_old_scheduling": False,
    "extra_networks_default_multiplier": 1.0, "sd_hypernetwork": "None", "localization": "None",
    "return_grid": True, "do_not_show_images": False, "send_seed": True, "send_size": True,
    "add_model_hash_to_info": True, "add_model_name_to_info": True, "add_version_to_infotext": True,
    "show_progressbar": True, "live_previews_enable": True, "live_previews_image_format": "png",
    "show_progress_every_n_steps": 10, "show_progress_type": "Approx NN", "live_preview_content": "Prompt",
    "hide_samplers": [], "eta_ddim": 0.0, "eta_ancestral": 1.0, "ddim_discretize": "uniform", "s_churn": 0.0,
    "s_tmin": 0.0, "s_tmax": 0.0, "s_noise": 1.0, "k_sched_type": "Automatic", "sigma_min": 0.0, "sigma_max": 0.0,
    "rho": 0.0, "eta_noise_seed_delta": 0, "always_discard_next_to_last_sigma": False, "uni_pc_variant": "bh1",
    "uni_pc_skip_type": "time_uniform", "uni_pc_order": 3, "uni_pc_lower_order_final": True,
    "sd_noise_schedule": "Default", "beta_dist_alpha": 0.6, "beta_dist_beta": 0.6,
    "postprocessing_enable_in_main_ui": [], "postprocessing_operation_order": [], "upscaling_max_images_in_cache": 5,
    "disabled_extensions": [], "disable_all_extensions": "none", "sd_checkpoint_hash": "",
}
_lock = threading.Lock()


def options(service: "Service") -> dict[str, Any]:
    """What GET /sdapi/v1/options answers: A1111's defaults, what clients wrote, and the current checkpoint."""
    with _lock:
        stored = dict(service.a1111_options)
    return {**DEFAULTS, **stored, "sd_model_checkpoint": current_title(service),
            "pico_options_without_effect": sorted(key for key in {**DEFAULTS, **stored} if key not in HONOURED)}


def set_options(service: "Service", update: Any) -> None:
    """POST /sdapi/v1/options: check the settings PICO acts on, switch the checkpoint, keep everything."""
    if not isinstance(update, dict):
        raise InvalidRequest("The options body must be a JSON object", field="options")
    checked = {key: check_option(service, key, value) for key, value in update.items()}
    model = checked.pop("sd_model_checkpoint", None)
    checked.pop("pico_options_without_effect", None)
    with _lock:
        service.a1111_options.update(checked)
        if model is not None:
            service.default_model = model


def check_option(service: "Service", key: str, value: Any) -> Any:
    """Refuse a value PICO cannot act on for the settings it honours; the value to store."""
    if key == "sd_model_checkpoint":
        if not isinstance(value, str):
            raise InvalidRequest("sd_model_checkpoint must be a string", field=key)
        return find_checkpoint(service, value, key)
    if key == "sd_vae":
        if not isinstance(value, str):
            raise InvalidRequest("sd_vae must be a string", field=key)
        vae_type(service, value, key)
    if key == "CLIP_stop_at_last_layers":
        value = lenient_value(value, int) if isinstance(value, str) else value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 <= value <= 12 \
                or int(value) != value:
            raise InvalidRequest(f"CLIP_stop_at_last_layers must be an integer between 1 and 12, got {value!r}",
                                 field=key)
        return int(value)
    if key == "samples_format" and not isinstance(value, str):
        raise InvalidRequest("samples_format must be a string", field=key)
    return value


def vae_type(service: "Service", name: str, field_name: str = "sd_vae") -> str:
    """PICO's VaeType for an A1111 sd_vae value: "original" for Automatic and None, "ema" or "mse"."""
    wanted = name.strip().lower().removesuffix(".safetensors").removesuffix(".ckpt").removesuffix(".pt")
    if wanted in NO_VAE:
        return "original"
    for kind, names in VAE_NAMES.items():
        if wanted in (VAE_MODELS[kind].lower(), *names):
            return kind
    known = ", ".join(["Automatic", "None", *(item.model_name for item in vae_items(service))])
    raise NotFound(f"VAE {name!r} not found; available: {known}", field=field_name,
                   hint="GET /sdapi/v1/sd-vae lists the VAEs.")


def vae_items(service: "Service") -> list[SDVaeItem]:
    """The sd-vae list: the ft-EMA and ft-MSE VAEs the models directory holds (their ids as file names)."""
    items = []
    for kind, model in VAE_MODELS.items():
        try:
            local = service.engine.resolver.resolve(model).local
        except Exception:  # noqa: BLE001 - not allowed: not listed
            local = False
        if local:
            items.append(SDVaeItem(model_name=VAE_NAMES[kind][0], filename=model))
    return items


@dataclass
class Effective:
    """The settings one generation runs with: stored options, then its override_settings."""

    model: str
    vae_type: str = "original"
    clip_stop: int = 1
    samples_format: str = "png"
    warnings: list[str] = field(default_factory=list)

    def clip_skip(self) -> int | None:
        """PICO's ClipSkip: A1111's count on SD 1; None elsewhere (A1111's SD 2 and SDXL ignore it)."""
        return self.clip_stop if clip_skip_from_a1111(self.clip_stop, family_of(self.model)) else None


def effective(service: "Service", request: "ProcessingRequest", model: str) -> Effective:
    """The settings for ``request`` on ``model``: stored options under its override_settings."""
    overrides = dict(request.override_settings or {})
    overrides.pop("sd_model_checkpoint", None)  # checkpoint_for() resolved it into ``model``
    checked = {key: check_option(service, key, value) for key, value in overrides.items()}
    with _lock:
        stored = dict(service.a1111_options)
        if not request.override_settings_restore_afterwards:
            service.a1111_options.update(checked)
    settings = {**DEFAULTS, **stored, **checked}
    result = Effective(model=model, clip_stop=int(settings["CLIP_stop_at_last_layers"]))
    result.vae_type = vae_type(service, str(settings["sd_vae"] or ""))
    if result.vae_type != "original" and family_of(model) not in ("sd1", "sd2"):
        result.warnings.append(f"sd_vae {settings['sd_vae']!r} is an SD 1/2 VAE; {model} used its own.")
        result.vae_type = "original"
    fmt = str(settings["samples_format"]).strip().lower()
    result.samples_format = SAMPLES_FORMATS.get(fmt, "png")
    if fmt not in SAMPLES_FORMATS:
        result.warnings.append(f"samples_format {settings['samples_format']!r} is not one PICO encodes "
                               f"({', '.join(SAMPLES_FORMATS)}); the images are PNG.")
    idle = sorted(key for key in checked if key not in HONOURED)
    if idle:
        result.warnings.append(f"override_settings {', '.join(idle)} have no effect in PICO.")
    return result


def effective_format(service: "Service") -> str:
    """The encoding the stored samples_format asks for (extras have no override_settings)."""
    with _lock:
        fmt = str(service.a1111_options.get("samples_format", "png")).strip().lower()
    return SAMPLES_FORMATS.get(fmt, "png")


def cmd_flags(settings: "Settings") -> dict[str, Any]:
    """GET /sdapi/v1/cmd-flags: A1111's command-line flags, as this server's settings amount to them."""
    offload = settings.offload
    return {
        "f": False, "update_all_extensions": False, "skip_python_version_check": False, "skip_torch_cuda_test": False,
        "reinstall_xformers": False, "reinstall_torch": False, "update_check": False, "tests": None, "no_tests": False,
        "skip_install": True, "data_dir": None, "config": None, "ckpt": None, "ckpt_dir": None, "vae_dir": None,
        "gfpgan_dir": None, "gfpgan_model": None, "no_half": False, "no_half_vae": False,
        "no_progressbar_hiding": False, "max_batch_count": 10, "embeddings_dir": None,
        "textual_inversion_templates_dir": None, "hypernetwork_dir": None, "localizations_dir": None,
        "allow_code": False, "medvram": offload == "model", "medvram_sdxl": False, "lowvram": offload == "sequential",
        "lowram": False, "always_batch_cond_uncond": False, "unload_gfpgan": False, "precision": "autocast",
        "upcast_sampling": False, "share": False, "ngrok": None, "ngrok_region": "us", "ngrok_options": None,
        "enable_insecure_extension_access": False, "codeformer_models_path": None, "gfpgan_models_path": None,
        "esrgan_models_path": None, "bsrgan_models_path": None, "realesrgan_models_path": None,
        "dat_models_path": None, "clip_models_path": None, "xformers": settings.xformers,
        "force_enable_xformers": False, "xformers_flash_attention": False, "deepdanbooru": False,
        "opt_split_attention": False, "opt_sub_quad_attention": False, "sub_quad_q_chunk_size": 1024,
        "sub_quad_kv_chunk_size": None, "sub_quad_chunk_threshold": None, "opt_split_attention_invokeai": False,
        "opt_split_attention_v1": False, "opt_sdp_attention": not settings.xformers,
        "opt_sdp_no_mem_attention": False, "disable_opt_split_attention": False, "disable_nan_check": False,
        "use_cpu": ["all"] if settings.device == "cpu" else [], "use_ipex": False, "disable_model_loading_ram_optimization": False,
        "listen": settings.host not in ("127.0.0.1", "localhost", "::1"), "port": settings.port,
        "show_negative_prompt": False, "ui_config_file": None, "hide_ui_dir_config": True, "freeze_settings": False,
        "freeze_settings_in_sections": None, "freeze_specific_settings": None, "ui_settings_file": None,
        "gradio_debug": False, "gradio_auth": None, "gradio_auth_path": None, "gradio_img2img_tool": None,
        "gradio_inpaint_tool": None, "gradio_allowed_path": [], "opt_channelslast": settings.channels_last,
        "styles_file": [], "autolaunch": False, "theme": None, "use_textbox_seed": False,
        "disable_console_progressbars": False, "enable_console_prompts": False, "vae_path": None,
        "disable_safe_unpickle": False, "api": True, "api_auth": None, "api_log": False, "nowebui": True,
        "ui_debug_mode": False, "device_id": None, "administrator": False, "cors_allow_origins": settings.cors_origin,
        "cors_allow_origins_regex": None, "tls_keyfile": None, "tls_certfile": None, "disable_tls_verify": None,
        "server_name": None, "gradio_queue": True, "no_gradio_queue": False, "skip_version_check": False,
        "no_hashing": False, "no_download_sd_model": True, "subpath": None, "add_stop_route": False,
        "api_server_stop": False, "timeout_keep_alive": 30, "disable_all_extensions": True,
        "disable_extra_extensions": True, "skip_load_model_at_start": True, "unix_filenames_sanitization": False,
        "filenames_max_length": 128, "no_prompt_history": True, "pico_version": __version__,
    }
