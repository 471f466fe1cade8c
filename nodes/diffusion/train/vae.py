"""Stage 1: the autoencoder.

A diffusers ``AutoencoderKL`` with SD's shape — 8x downscale (4 levels), 4
latent channels — but ~0.94 M parameters and no attention in the mid block,
so it is almost fully convolutional: it starts on 32x32 crops (16x fewer pixels
than whole 128px images), then moves to whole images, because GroupNorm's
statistics are per image (see ``VaeTrain.full_after``).
Tricks that matter on a CPU budget: the posterior log-variance starts at -8
(the sampled latent is the mean, almost noise-free, from step one) and the KL
weight is tiny (1e-6); no quant convs (1x1 convs that only slow the start).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from . import dataset
from .common import Deadline, Log, load_state, lr_at, save_state, seeded, set_lr, setup_torch


@dataclass
class VaeConfig:
    block_out_channels: tuple = (16, 32, 64, 64)
    latent_channels: int = 4
    layers_per_block: int = 1
    # 4 groups (4+ channels each): GroupNorm with one channel per group is an instance
    # norm, which maps a flat colour to zero — fatal on flat-colour scenes. A 16-wide top
    # level with 4 groups fit a batch 20x better in 80 steps than 8-wide with 8 groups.
    norm_num_groups: int = 4
    sample_size: int = dataset.DEFAULT_SIZE


@dataclass
class VaeTrain:
    steps: int = 3000
    batch: int = 24
    crop: int = 32
    # From this step on, whole images (``full_batch`` of them). GroupNorm normalises over
    # the whole image, so crop statistics differ from whole-image ones: after 600 crop
    # steps the same VAE scored 27.1 dB on 32px crops but 18.7 dB on whole images.
    full_after: int = 600
    full_batch: int = 4
    lr: float = 8e-4
    warmup: int = 50
    kl_weight: float = 1e-6
    logvar_init: float = -8.0
    seed: int = 0
    data_seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 10


def make_vae(cfg: VaeConfig, seed: int = 0, logvar_init: float = -8.0):
    import torch
    from diffusers import AutoencoderKL

    def build():
        vae = AutoencoderKL(
            in_channels=3, out_channels=3, latent_channels=cfg.latent_channels,
            block_out_channels=tuple(cfg.block_out_channels), layers_per_block=cfg.layers_per_block,
            down_block_types=("DownEncoderBlock2D",) * len(cfg.block_out_channels),
            up_block_types=("UpDecoderBlock2D",) * len(cfg.block_out_channels),
            norm_num_groups=cfg.norm_num_groups, sample_size=cfg.sample_size,
            use_quant_conv=False, use_post_quant_conv=False, mid_block_add_attention=False,
        )
        with torch.no_grad():
            vae.encoder.conv_out.bias[cfg.latent_channels:].fill_(logvar_init)
        return vae

    return seeded(seed, build)


def _crops(images, crop: int, generator):
    import torch

    n, _, h, w = images.shape
    ys = torch.randint(0, (h - crop) // 8 + 1, (n,), generator=generator) * 8
    xs = torch.randint(0, (w - crop) // 8 + 1, (n,), generator=generator) * 8
    return torch.stack([images[i, :, y:y + crop, x:x + crop] for i, (y, x) in enumerate(zip(ys.tolist(), xs.tolist(), strict=True))])


def psnr(vae, images, device) -> float:
    """Mean PSNR (dB, on [0, 1] pixels) of reconstructions from the posterior mean."""
    import torch

    with torch.no_grad():
        x = images.to(device)
        y = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
        mse = ((y - x) / 2).pow(2).flatten(1).mean(1)
        return float((-10 * torch.log10(mse.clamp_min(1e-10))).mean())


def train_vae(run: Path, cfg: VaeConfig | None = None, tc: VaeTrain | None = None, minutes: float | None = None,
              device: str = "auto", quiet: bool = False, threads: int = 1):
    """Train (or resume) the VAE under ``run/vae.pt``; returns the model (eval mode)."""
    import torch

    cfg, tc = cfg or VaeConfig(), tc or VaeTrain()
    dev = setup_torch(threads, device)
    run = Path(run)
    log = Log(run, "vae", quiet)
    state = load_state(run / "vae.pt")
    if state is not None:
        cfg, tc_saved = VaeConfig(**state["config"]), VaeTrain(**state["train"])
        tc = VaeTrain(**{**asdict(tc_saved), "steps": tc.steps})  # only the target may change on resume
    vae = make_vae(cfg, tc.seed, tc.logvar_init).to(dev)
    opt = torch.optim.AdamW(vae.parameters(), lr=tc.lr, weight_decay=0.0)
    step = 0
    gen = torch.Generator().manual_seed(tc.seed)
    if state is not None:
        vae.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        step = state["step"]
    held_out, _ = dataset.batch(tc.data_seed + 1, 0, 16)

    def checkpoint():
        save_state(run / "vae.pt", dict(config=asdict(cfg), train=asdict(tc), model=vae.state_dict(),
                                        optimizer=opt.state_dict(), generator=gen.get_state(), step=step))

    deadline = Deadline(minutes)
    vae.train()
    while step < tc.steps and not deadline.passed():
        index = int(torch.randint(0, 1 << 30, (1,), generator=gen))
        if step >= tc.full_after:
            x = dataset.batch(tc.data_seed, index, tc.full_batch)[0].to(dev)
        else:
            x = _crops(dataset.batch(tc.data_seed, index, tc.batch)[0], tc.crop, gen).to(dev)
        set_lr(opt, lr_at(step, tc.lr, tc.warmup, tc.steps))
        post = vae.encode(x).latent_dist
        y = vae.decode(post.sample(generator=None)).sample
        rec = (y - x).pow(2).mean() + 0.1 * (y - x).abs().mean()
        kl = post.kl().mean() / x[0].numel()
        loss = rec + tc.kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % tc.log_every == 0 or step == 1:
            log(step=step, loss=loss.item(), rec=rec.item(), kl=kl.item(), lr=opt.param_groups[0]["lr"])
        if step % tc.checkpoint_every == 0:
            vae.eval()
            log(step=step, psnr=psnr(vae, held_out, dev))
            vae.train()
            checkpoint()
    checkpoint()
    vae.eval()
    log(step=step, psnr=psnr(vae, held_out, dev), done=step >= tc.steps)
    return vae


@dataclass
class DecoderTrain:
    steps: int = 3000
    batch: int = 6
    lr: float = 3e-4
    warmup: int = 50
    # Pixels of the shape (and its anti-aliased edge) weigh this much more than background:
    # what the first VAE lost was small shapes' outlines, which a mean over the image hides.
    foreground_weight: float = 4.0
    seed: int = 1
    data_seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 10
    # Fraction of the images drawn in the outline style: the decoder must draw what a style
    # LoRA asks of it. Trained on plain renders only, it drew the outline band as a green smear
    # (the style judge read 0.31 of round-tripped outlined renders as outlined).
    outline: float = 0.0


def foreground_mask(images, scenes):
    """1 where a pixel differs from its scene's background colour, else 0 (``[N, 1, H, W]``)."""
    import torch

    bg = torch.tensor([dataset.BACKGROUNDS[s.background] for s in scenes], dtype=images.dtype)
    bg = (bg / 127.5 - 1).view(-1, 3, 1, 1).to(images.device)
    return ((images - bg).abs().amax(1, keepdim=True) > 0.05).to(images.dtype)


def load_vae(run: Path):
    """The trained VAE of ``run`` with the fine-tuned decoder (``decoder.pt``) if there is one."""
    vstate = load_state(Path(run) / "vae.pt")
    vae = make_vae(VaeConfig(**vstate["config"]))
    vae.load_state_dict(vstate["model"])
    dstate = load_state(Path(run) / "decoder.pt")
    if dstate is not None:
        vae.decoder.load_state_dict(dstate["decoder"])
    return vae.eval()


def train_decoder(run: Path, tc: DecoderTrain | None = None, minutes: float | None = None, device: str = "auto",
                  quiet: bool = False, threads: int = 1):
    """Fine-tune only the decoder of ``run/vae.pt`` (state in ``run/decoder.pt``). The encoder
    is frozen, so cached latents and a UNet trained on them stay valid."""
    import torch

    tc = tc or DecoderTrain()
    dev = setup_torch(threads, device)
    run = Path(run)
    log = Log(run, "decoder", quiet)
    state = load_state(run / "decoder.pt")
    if state is not None:
        tc = DecoderTrain(**{**state["train"], "steps": tc.steps})
    vae = load_vae(run).to(dev)
    vae.encoder.requires_grad_(False)
    opt = torch.optim.AdamW(vae.decoder.parameters(), lr=tc.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(tc.seed)
    step = 0
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        step = state["step"]
    held_out, _ = dataset.batch(1, 0, 16)

    def checkpoint():
        save_state(run / "decoder.pt", dict(train=asdict(tc), decoder=vae.decoder.state_dict(),
                                            optimizer=opt.state_dict(), generator=gen.get_state(), step=step))

    if state is None:
        log(step=0, psnr=psnr(vae, held_out, dev))
    deadline = Deadline(minutes)
    vae.decoder.train()
    while step < tc.steps and not deadline.passed():
        index = int(torch.randint(0, 1 << 30, (1,), generator=gen))
        x, scenes = dataset.batch(tc.data_seed, index, tc.batch, outline=tc.outline)
        x = x.to(dev)
        weight = 1 + tc.foreground_weight * foreground_mask(x, scenes)
        with torch.no_grad():
            z = vae.encode(x).latent_dist.mode()
        y = vae.decode(z).sample
        err = y - x
        loss = ((err.pow(2) + 0.1 * err.abs()) * weight).mean() / weight.mean()
        set_lr(opt, lr_at(step, tc.lr, tc.warmup, tc.steps))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % tc.log_every == 0 or step == 1:
            log(step=step, loss=loss.item(), lr=opt.param_groups[0]["lr"])
        if step % tc.checkpoint_every == 0:
            vae.eval()
            log(step=step, psnr=psnr(vae, held_out, dev))
            vae.decoder.train()
            checkpoint()
    checkpoint()
    vae.eval()
    log(step=step, psnr=psnr(vae, held_out, dev), done=step >= tc.steps)
    return vae
