"""FreeU / FreeU_V2 as ComfyUI's output_block_patch computes them (comfy_extras/
nodes_freelunch.py), hooked in by the model manager for the values that list
them and out again for the others; RescaleCFG as diffusers' guidance_rescale."""

from __future__ import annotations

import pytest
import torch
from lcmgraph_nodes.diffusion.models.unet_patches import install, rescale_cfg

from .diffusion_helpers import gen, image_of, link, max_diff, reference, txt2img


def _comfy_filter(x, threshold, scale):
    """ComfyUI's Fourier_filter, written out."""
    x_freq = torch.fft.fftshift(torch.fft.fftn(x.float(), dim=(-2, -1)), dim=(-2, -1))
    b, c, h, w = x_freq.shape
    mask = torch.ones((b, c, h, w))
    mask[..., h // 2 - threshold:h // 2 + threshold, w // 2 - threshold:w // 2 + threshold] = scale
    return torch.fft.ifftn(torch.fft.ifftshift(x_freq * mask, dim=(-2, -1)), dim=(-2, -1)).real.to(x.dtype)


def _comfy_patch(version, model_channels, b1, b2, s1, s2):
    """ComfyUI's output_block_patch(h, hsp) for FreeU (1) or FreeU_V2 (2)."""
    scales = {model_channels * 4: (b1, s1), model_channels * 2: (b2, s2)}

    def patch(h, hsp):
        scale = scales.get(int(h.shape[1]))
        if scale is None:
            return h, hsp
        h = h.clone()
        if version == 1:
            h[:, :h.shape[1] // 2] = h[:, :h.shape[1] // 2] * scale[0]
        else:
            mean = h.mean(1).unsqueeze(1)
            n = mean.shape[0]
            high, _ = torch.max(mean.view(n, -1), dim=-1, keepdim=True)
            low, _ = torch.min(mean.view(n, -1), dim=-1, keepdim=True)
            mean = (mean - low.unsqueeze(2).unsqueeze(3)) / (high - low).unsqueeze(2).unsqueeze(3)
            h[:, :h.shape[1] // 2] = h[:, :h.shape[1] // 2] * ((scale[0] - 1) * mean + 1)
        return h, _comfy_filter(hsp, 1, scale[1])
    return patch


@pytest.mark.parametrize("version, kind", [(1, "freeu"), (2, "freeu_v2")])
def test_freeu_hooks_compute_comfyuis_patch(version, kind):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(block_out_channels=(32, 64, 128), down_block_types=("DownBlock2D",) * 3,
                                up_block_types=("UpBlock2D",) * 3, layers_per_block=1, cross_attention_dim=32,
                                sample_size=16, norm_num_groups=8)
    seen, hits = {}, []
    resnets = [r for block in unet.up_blocks for r in block.resnets]
    for i, r in enumerate(resnets):  # registered first: sees the input before FreeU
        r.register_forward_pre_hook(lambda m, args, i=i: seen.__setitem__(i, args[0].clone()))
    handles = install(unet, ((kind, 1.3, 1.4, 0.9, 0.2),))
    for i, r in enumerate(resnets):  # registered after: sees FreeU's result
        r.register_forward_pre_hook(lambda m, args, i=i: hits.append((i, args[0].clone())))
    x, t, text = torch.randn(2, 4, 16, 16), torch.tensor([10, 500]), torch.randn(2, 7, 32)
    with torch.no_grad():
        unet(x, t, encoder_hidden_states=text)
    patch = _comfy_patch(version, 32, 1.3, 1.4, 0.9, 0.2)
    # h's channels per resnet, as in ComfyUI's output blocks: 128, 128 | 128, 64 | 64, 32.
    channels = [128, 128, 128, 64, 64, 32]
    changed = 0
    for i, patched in hits:
        h, hsp = seen[i][:, :channels[i]], seen[i][:, channels[i]:]
        eh, ehsp = patch(h, hsp)
        assert torch.equal(patched, torch.cat([eh, ehsp], dim=1)), i
        changed += not torch.equal(patched, seen[i])
    assert changed == 5  # every block but the one at the base channel count
    for handle in handles:
        handle.remove()


def test_freeu_is_hooked_for_its_value_only(engine):
    f = txt2img(steps=2)
    base = image_of(engine, f)
    f.add("freeu", "FreeU_V2", model=link("ckpt", "model"))
    f.nodes["sampler"]["inputs"]["model"] = link("freeu", "model")
    patched = image_of(engine, f)
    assert max_diff(patched, base) > 1e-3
    f.add("freeu1", "FreeU", model=link("ckpt", "model"), b2=1.0, s2=1.0)  # factors of 1: no change
    f.nodes["sampler"]["inputs"]["model"] = link("freeu1", "model")
    assert max_diff(image_of(engine, f), base) < 1e-6
    f.nodes["sampler"]["inputs"]["model"] = link("ckpt", "model")
    f.nodes["sampler"]["inputs"]["seed"] = 0  # not from the cache
    assert max_diff(image_of(engine, f), base) == 0.0  # the hooks are out again


def test_rescale_cfg_is_diffusers_guidance_rescale(engine, models):
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg

    g = torch.Generator().manual_seed(0)
    guided, cond = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    assert torch.equal(rescale_cfg(guided, cond, 0.7), rescale_noise_cfg(guided, cond, guidance_rescale=0.7))
    assert rescale_cfg(guided, cond, 0.0) is guided

    import diffusers

    pipe = reference(models, "tiny")
    pipe.scheduler = diffusers.EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    f = txt2img(prompt="a house", negative="ugly", sampler="Sampler", scheduler="euler", seed=11, steps=4, cfg=3.0)
    f.add("rescale", "RescaleCFG", model=link("ckpt", "model"), multiplier=0.7)
    f.nodes["sampler"]["inputs"]["model"] = link("rescale", "model")
    ours = image_of(engine, f)
    ref = pipe("a house", negative_prompt="ugly", height=64, width=64, num_inference_steps=4, guidance_scale=3.0,
               guidance_rescale=0.7, generator=gen(11), output_type="np").images
    assert max_diff(ours, ref) <= 1e-5
    plain = pipe("a house", negative_prompt="ugly", height=64, width=64, num_inference_steps=4, guidance_scale=3.0,
                 generator=gen(11), output_type="np").images
    assert max_diff(ours, plain) > 1e-4
