"""LoadCheckpoint reads single-file (LDM layout) checkpoints through the
checkpoint_files loader and samples exactly as from the diffusers folder."""

from __future__ import annotations

import pytest

from .diffusion_helpers import image_of, max_diff, txt2img


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_single_file_checkpoint_gives_the_folder_image(engine, models, arch):
    from diffusers import DiffusionPipeline
    from lcmgraph_nodes.diffusion.formats.single_file_export import save_single_file

    folder = "tiny" if arch == "sd15" else "tiny-xl"
    target = models / "checkpoints" / f"{folder}-single.safetensors"
    if not target.exists():
        pipe = DiffusionPipeline.from_pretrained(models / "checkpoints" / folder, local_files_only=True)
        save_single_file(target, pipe.unet, pipe.vae, pipe.text_encoder, getattr(pipe, "text_encoder_2", None),
                         tokenizer=pipe.tokenizer, tokenizer_2=getattr(pipe, "tokenizer_2", None))
    single = image_of(engine, txt2img(ckpt=target.name, prompt="a cat", seed=17, steps=2, guidance=1.5))
    from_folder = image_of(engine, txt2img(ckpt=folder, prompt="a cat", seed=17, steps=2, guidance=1.5))
    assert max_diff(single, from_folder) <= 1e-5
