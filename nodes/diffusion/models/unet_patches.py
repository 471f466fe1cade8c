"""UNet patches a MODEL value lists (``ModelRef.patches``), realised by the model
manager right before sampling: FreeU and FreeU_V2 as ComfyUI computes them
(comfy_extras/nodes_freelunch.py), and RescaleCFG's mix (``rescale_cfg``).

FreeU acts where the decoder joins a skip connection. In ComfyUI's LDM UNet
that is the input ``h`` of an output block (before it is concatenated with
the skip ``hsp``); in diffusers it is the first part of each up-block
resnet's input, which a forward pre-hook splits back into ``h`` and ``hsp``.
As in ComfyUI the block is chosen by ``h``'s channel count: 4x the UNet's
base channels takes (b1, s1), 2x takes (b2, s2):

* FreeU: ``h``'s first half of channels times b;
* FreeU_V2: times ``(b - 1) * m + 1``, ``m`` the channel mean of ``h``
  scaled to 0..1 per image;
* both: ``hsp`` through a Fourier filter that scales its lowest frequencies
  (the centre 2x2 after fftshift) by s.

(diffusers' ``enable_freeu`` picks the first two up blocks by position
instead, which differs from ComfyUI's choice on SD1.5 and SDXL, and has no V2.)
"""

from __future__ import annotations

from typing import Any

FREEU = ("freeu", "freeu_v2")


def fourier_filter(x, threshold: int, scale: float):
    import torch

    freq = torch.fft.fftshift(torch.fft.fftn(x.float(), dim=(-2, -1)), dim=(-2, -1))
    _, _, height, width = freq.shape
    mask = torch.ones(freq.shape, device=x.device)
    row, col = height // 2, width // 2
    mask[..., row - threshold:row + threshold, col - threshold:col + threshold] = scale
    filtered = torch.fft.ifftn(torch.fft.ifftshift(freq * mask, dim=(-2, -1)), dim=(-2, -1)).real
    return filtered.to(x.dtype)


def _freeu(kind: str, h, hsp, b: float, s: float):
    import torch

    half = h.shape[1] // 2
    h = h.clone()
    if kind == "freeu_v2":
        mean = h.mean(1).unsqueeze(1)
        batch = mean.shape[0]
        high = torch.max(mean.view(batch, -1), dim=-1, keepdim=True)[0]
        low = torch.min(mean.view(batch, -1), dim=-1, keepdim=True)[0]
        mean = (mean - low[..., None, None]) / (high - low)[..., None, None]
        h[:, :half] = h[:, :half] * ((b - 1) * mean + 1)
    else:
        h[:, :half] = h[:, :half] * b
    device = hsp.device
    if device.type not in ("cpu", "cuda"):  # torch's FFT: CPU and CUDA only (as ComfyUI)
        return h, fourier_filter(hsp.cpu(), 1, s).to(device)
    return h, fourier_filter(hsp, 1, s)


def _up_block_inputs(unet) -> list[tuple[Any, int]]:
    """(resnet, channels of ``h`` in its input) for every up-block resnet, as diffusers builds them."""
    channels = list(reversed(unet.config.block_out_channels))
    out = []
    output = channels[0]
    for i, block in enumerate(unet.up_blocks):
        previous, output = output, channels[i]
        for j, resnet in enumerate(block.resnets):
            out.append((resnet, previous if j == 0 else output))
    return out


def install(unet, patches: tuple[tuple, ...]) -> list:
    """Hook ``patches`` into ``unet``; returns the hook handles (``remove()`` each to undo)."""
    from . import ipadapter

    adapters = tuple(p[1] for p in patches if p[0] == ipadapter.KIND)
    handles = ipadapter.install(unet, adapters) if adapters else []
    return handles + _install_freeu(unet, patches)


def _install_freeu(unet, patches: tuple[tuple, ...]) -> list:
    base = unet.config.block_out_channels[0]
    handles = []
    for resnet, channels in _up_block_inputs(unet):
        steps = []
        for kind, b1, b2, s1, s2 in (p for p in patches if p[0] in FREEU):
            scale = {base * 4: (b1, s1), base * 2: (b2, s2)}.get(channels)
            if scale is not None:
                steps.append((kind, *scale))
        if not steps:
            continue

        def hook(module, args, steps=steps, channels=channels):
            import torch

            x = args[0]
            h, hsp = x[:, :channels], x[:, channels:]
            for kind, b, s in steps:
                h, hsp = _freeu(kind, h, hsp, b, s)
            return (torch.cat([h, hsp], dim=1), *args[1:])

        handles.append(resnet.register_forward_pre_hook(hook))
    return handles


def rescale_cfg(guided, cond, multiplier: float):
    """diffusers' ``rescale_noise_cfg`` (guidance_rescale, arXiv:2305.08891 section 3.4):
    the CFG result brought to the positive prediction's standard deviation, mixed by ``multiplier``."""
    if not multiplier:
        return guided
    dims = list(range(1, cond.ndim))
    rescaled = guided * (cond.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True))
    return multiplier * rescaled + (1 - multiplier) * guided
