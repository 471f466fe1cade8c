"""Tiny LoRAs, ControlNets and a hint image for the tiny models (tiny.py):
deterministic, built on the CPU in a second, used by the built-in files,
the example workflows and the tests."""

from __future__ import annotations

from pathlib import Path

from .tiny import (
    _seeded,
    build_atomically,
    make_controlnet,
    make_text_encoders,
    make_unet,
    make_vae,
)

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


def lora_layers(arch: str = "sd15", seed: int = 10, rank: int = 4, text: bool = True, scale: float = 0.1) -> dict:
    """LoRA state dicts in diffusers/peft naming for the tiny model of ``arch``:
    ``{"unet_lora_layers": {"<module>.lora_A.weight": ...}, "text_encoder_lora_layers": ...}``.
    A and B are both random (peft would start B at zero) so the LoRA shows."""
    import torch

    parts = {"unet_lora_layers": (make_unet(arch), UNET_TARGETS, "")}
    if text:
        # Files in the wild name CLIP layers "text_model.encoder...", as older transformers did.
        encoders = make_text_encoders(arch)
        parts["text_encoder_lora_layers"] = (encoders["text_encoder"], TEXT_TARGETS, "text_model.")
        if arch == "sdxl":
            parts["text_encoder_2_lora_layers"] = (encoders["text_encoder_2"], TEXT_TARGETS, "text_model.")

    def build():
        out = {}
        for key, (module, targets, prefix) in parts.items():
            state = {}
            for name, sub in module.named_modules():
                if isinstance(sub, torch.nn.Linear) and any(name == t or name.endswith("." + t) for t in targets):
                    full = name if name.startswith(prefix) else prefix + name
                    state[f"{full}.lora_A.weight"] = torch.randn(rank, sub.in_features) * scale
                    state[f"{full}.lora_B.weight"] = torch.randn(sub.out_features, rank) * scale
            out[key] = state
        return out

    return _seeded(seed, build)


def save_lora(target: Path, arch: str = "sd15", seed: int = 10, text: bool = True, kohya: bool = False) -> Path:
    """Write a tiny LoRA ``.safetensors`` in diffusers/peft naming, or in kohya naming."""
    target = Path(target)

    def build(path: Path):
        layers = lora_layers(arch, seed, text=text)
        path.parent.mkdir(parents=True, exist_ok=True)
        if kohya:
            from safetensors.torch import save_file

            save_file(to_kohya(layers), str(path))
            return
        from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

        cls = StableDiffusionXLPipeline if arch == "sdxl" else StableDiffusionPipeline
        cls.save_lora_weights(str(path.parent), weight_name=path.name, safe_serialization=True, **layers)

    return build_atomically(target, build)


def save_unet(target: Path, arch: str = "sd15", seed: int = 30, layout: str = "diffusers") -> Path:
    """Write a tiny UNet-only ``.safetensors`` (another seed than the checkpoint's UNet):
    diffusers layout as SDXL-Lightning ships for diffusers, or ``layout="ldm"``
    (input_blocks..., as ComfyUI's UNet files)."""
    target = Path(target)

    def build(path: Path):
        from safetensors.torch import save_file

        unet = make_unet(arch, seed)
        state = {k: v.contiguous() for k, v in unet.state_dict().items()}
        if layout == "ldm":
            from ..formats.single_file_export import unet_to_ldm

            state = {k.removeprefix("model.diffusion_model."): v.contiguous()
                     for k, v in unet_to_ldm(state, unet.config).items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(state, str(path))

    return build_atomically(target, build)


def to_kohya(layers: dict) -> dict:
    """diffusers/peft LoRA layers -> kohya-ss names (``lora_unet_..._to_q.lora_down.weight`` + ``.alpha``)."""
    import torch

    prefixes = {"unet_lora_layers": "lora_unet_", "text_encoder_lora_layers": "lora_te1_" if "text_encoder_2_lora_layers" in layers else "lora_te_",
                "text_encoder_2_lora_layers": "lora_te2_"}
    out = {}
    for part, state in layers.items():
        for key, value in state.items():
            module, _, kind = key.rpartition(".lora_")
            base = prefixes[part] + module.replace(".", "_")
            out[f"{base}.lora_{'down' if kind.startswith('A') else 'up'}.weight"] = value.contiguous()
            if kind.startswith("A"):
                out[f"{base}.alpha"] = torch.tensor(float(value.shape[0]))
    return out


def save_controlnet(target: Path, arch: str = "sd15", seed: int = 5) -> Path:
    """A diffusers ControlNet folder that fits the tiny model of ``arch``."""
    return build_atomically(
        Path(target),
        lambda p: make_controlnet(make_unet(arch), seed).save_pretrained(p, safe_serialization=True),
    )


def hint_image(size: int = 64):
    """A deterministic RGB test picture: a gradient with a bright disc (PIL)."""
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    disc = ((x - 0.6) ** 2 + (y - 0.4) ** 2) < 0.08
    rgb = np.stack([x, y, 1.0 - x], axis=-1) * 200
    rgb[disc] = 255
    return Image.fromarray(rgb.astype(np.uint8), mode="RGB")


def save_image(target: Path, size: int = 64) -> Path:
    return build_atomically(Path(target), lambda p: hint_image(size).save(p, format="PNG"))


def save_mask(target: Path, size: int = 64) -> Path:
    """A grey-scale mask: the right half white (1 = repaint), for inpainting examples."""
    def build(path: Path):
        import numpy as np
        from PIL import Image

        pixels = np.zeros((size, size), dtype=np.uint8)
        pixels[:, size // 2:] = 255
        Image.fromarray(pixels, mode="L").save(path, format="PNG")

    return build_atomically(Path(target), build)


def save_vae(target: Path, arch: str = "sd15", seed: int = 31, source: Path | None = None) -> Path:
    """A VAE file in the original single-file (LDM) layout, as ComfyUI's VAELoader
    reads them: a tiny random one of ``arch``, or the VAE of the diffusers
    pipeline folder ``source``."""
    from ..formats.vae_files import save_ldm_vae

    def build(path: Path):
        if source is None:
            vae = make_vae(arch, seed)
        else:
            from diffusers import AutoencoderKL

            vae = AutoencoderKL.from_pretrained(Path(source) / "vae", local_files_only=True)
        save_ldm_vae(path, vae)

    return build_atomically(Path(target), build)


def save_upscaler(target: Path, seed: int = 30, scale: int = 2) -> Path:
    """A tiny ESRGAN (RRDBNet, 8 filters, one block) with fixed random weights,
    in the layout spandrel detects: an upscale model for tests."""
    from ..formats.upscale_files import spandrel

    def build(path: Path):
        import torch
        from safetensors.torch import save_file

        spandrel()  # imports spandrel (with torchvision stand-ins where needed)
        from spandrel.architectures.ESRGAN import ESRGAN

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=scale)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))

    return build_atomically(Path(target), build)
