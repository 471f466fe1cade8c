"""``builtin:NAME`` files: tiny models and add-ons, built on first use under
``runtime.home/builtin`` (atomically, then reused). Folder names carry the
builder version so a changed builder never reuses stale files."""

from __future__ import annotations

from pathlib import Path

from . import tiny, tiny_addons, tiny_ipadapter, tiny_svd

#: Weights committed in the repository (trained by the pack's train/ package; docs/embedded-model.md).
_SHIPPED = Path(__file__).parent


def _root(runtime) -> Path:
    return Path(runtime.home) / "builtin" / f"v{tiny.BUILD_VERSION}"


BUILTIN_FILES = {
    # The embedded default: a small SD-architecture model trained on synthetic shapes.
    ("checkpoints", "tiny-shapes"): lambda e: _SHIPPED / "tiny-shapes",
    # Its LCM-LoRA (lcmgraph train-lcm-lora) and an outline style LoRA (lcmgraph train-lora).
    ("loras", "tiny-shapes-lcm-lora"): lambda e: _SHIPPED / "tiny-shapes-lcm-lora.safetensors",
    ("loras", "tiny-shapes-outline-lora"): lambda e: _SHIPPED / "tiny-shapes-outline-lora.safetensors",
    ("checkpoints", "tiny-random"): lambda e: tiny.build_checkpoint(_root(e) / "tiny-random", "sd15"),
    ("checkpoints", "tiny-random-xl"): lambda e: tiny.build_checkpoint(_root(e) / "tiny-random-xl", "sdxl"),
    # An inpainting model's shape (a 9-channel UNet, as SD1.5-inpainting): for InpaintModelConditioning.
    ("checkpoints", "tiny-random-inpaint"): lambda e: tiny.build_checkpoint(_root(e) / "tiny-random-inpaint", "sd15",
                                                                            seed=30, in_channels=9),
    # Like a real LCM-LoRA: UNet only, peft/diffusers naming.
    ("loras", "tiny-lcm-lora"): lambda e: tiny_addons.save_lora(_root(e) / "tiny-lcm-lora.safetensors", seed=10, text=False),
    # A "style" LoRA in kohya naming, with a text-encoder part.
    ("loras", "tiny-style-lora"): lambda e: tiny_addons.save_lora(_root(e) / "tiny-style-lora.safetensors", seed=11, kohya=True),
    # UNet-only files (LoadUNet), like SDXL-Lightning's *_unet.safetensors.
    ("unet", "tiny-random-unet"): lambda e: tiny_addons.save_unet(_root(e) / "tiny-random-unet.safetensors", "sd15"),
    ("unet", "tiny-random-xl-unet"): lambda e: tiny_addons.save_unet(
        _root(e) / "tiny-random-xl-unet.safetensors", "sdxl"),
    ("controlnet", "tiny-controlnet"): lambda e: tiny_addons.save_controlnet(_root(e) / "tiny-controlnet"),
    # The embedded model's VAE as one file in the original layout (what ComfyUI's VAELoader reads).
    ("vae", "tiny-shapes-vae"): lambda e: tiny_addons.save_vae(_root(e) / "tiny-shapes-vae.safetensors",
                                                               source=_SHIPPED / "tiny-shapes"),
    # Stable Video Diffusion's single-file layout at toy sizes (ImageOnlyCheckpointLoader).
    ("checkpoints", "tiny-svd"): lambda e: tiny_svd.save_svd(_root(e) / "tiny-svd.safetensors"),
    ("input", "tiny-image.png"): lambda e: tiny_addons.save_image(_root(e) / "tiny-image.png"),
    ("input", "tiny-mask.png"): lambda e: tiny_addons.save_mask(_root(e) / "tiny-mask.png"),
    # A 2x ESRGAN with random weights (spandrel detects it): for ImageUpscaleWithModel.
    ("upscale_models", "tiny-upscale-2x"): lambda e: tiny_addons.save_upscaler(_root(e) / "tiny-upscale-2x.safetensors"),
    # A CLIP vision tower and IP-Adapters (basic, plus; SD1.5 and SDXL) that fit the tiny-random UNets.
    ("clip_vision", "tiny-clip-vision"): lambda e: tiny_ipadapter.save_clip_vision(
        _root(e) / "tiny-clip-vision.safetensors"),
    ("ipadapter", "tiny-ip-adapter"): lambda e: tiny_ipadapter.save_ip_adapter(_root(e) / "tiny-ip-adapter.safetensors"),
    ("ipadapter", "tiny-ip-adapter-plus"): lambda e: tiny_ipadapter.save_ip_adapter(
        _root(e) / "tiny-ip-adapter-plus.safetensors", kind="plus"),
    ("ipadapter", "tiny-ip-adapter-xl"): lambda e: tiny_ipadapter.save_ip_adapter(
        _root(e) / "tiny-ip-adapter-xl.safetensors", arch="sdxl"),
}
