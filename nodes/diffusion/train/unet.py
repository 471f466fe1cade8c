"""Stages 2 and 4: cache latents with the frozen VAE, then train UNet + text encoder.

Epsilon prediction on SD's noise schedule (scaled_linear 0.00085 -> 0.012,
1000 steps), so LCMScheduler and the LCM-LoRA recipe apply as to SD1.5.
Min-SNR-5 loss weighting, 10% empty captions (so CFG has an unconditional
branch), captions drop size / background / position at 30% each, an EMA of
the weights (exported), gradient clipping, and resumable checkpoints.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import dataset, text
from .common import Deadline, Log, load_state, lr_at, save_state, seeded, set_lr, setup_torch

SCHEDULE = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                prediction_type="epsilon")


@dataclass
class UnetConfig:
    block_out_channels: tuple = (32, 64, 128)
    layers_per_block: int = 1
    attention_head_dim: int = 4  # diffusers' legacy name: the number of heads
    norm_num_groups: int = 8
    cross_attention_dim: int = 64
    sample_size: int = 16
    text: dict = field(default_factory=lambda: asdict(text.TextConfig()))


@dataclass
class UnetTrain:
    steps: int = 20000
    batch: int = 32
    lr: float = 1e-3
    warmup: int = 200
    ema: float = 0.999
    snr_gamma: float = 5.0
    uncond: float = 0.1
    drop: float = 0.3
    seed: int = 0
    checkpoint_every: int = 200
    log_every: int = 20
    eval_every: int = 500
    # Offset noise: a per-image, per-channel constant added to the noise. On SD's schedule
    # sqrt(alpha_bar) is still 0.068 at t=999, and on a 16x16 latent the noise's own mean has
    # std 1/16, so without this the background's latent mean survives in x_t at about the
    # strength of the noise's mean: the UNet learns to copy the initial noise's mean as the
    # background and ignores the prompt's background words (measured: background accuracy at
    # chance after 3,456 steps while colour and shape rose). 0.3 makes that leak ~5x weaker.
    offset_noise: float = 0.3
    # SNR floor (0: off): at high t an epsilon loss weighs errors in the predicted image by
    # SNR (0.005 at t=999), so the layout words (position) get ~no gradient: the shape's
    # position was still at chance at step 5,000 while background (with offset noise)
    # reached 1.0. Weight the epsilon loss by floor / SNR where SNR < floor (capped at 10):
    # the predicted image's error then counts at least ``floor`` times. 0.1: t > ~650.
    snr_floor: float = 0.1
    # The text encoder's learning rate as a fraction of the UNet's (0: frozen at its random
    # initialisation, as SD keeps CLIP frozen). Trained at the UNet's rate (1.0, the shipped
    # run), it turned every position word into the same conditioning: the UNet's gradient only
    # uses position at t > ~850, too weakly to keep the words apart (docs/embedded-model.md,
    # "Position: the cause, measured"; bench/positions.py).
    text_lr_scale: float = 1.0
    # Pyramid (multi-resolution) noise, the per-level discount (0: off). Each level adds
    # Gaussian noise drawn at half the previous side (16, 8, 4, 2, 1 on a 16x16 latent),
    # bilinearly upsampled and weighted discount**level, then rescaled to unit std. The image's
    # low frequencies (where the shape sits) are then drowned at high t as its high ones are:
    # with white noise SD's schedule leaves the layout readable in x_t at t ~ 999, the UNet
    # learns to take it from there, and at sampling the initial noise's low frequencies decide
    # where the shape goes (docs/embedded-model.md, "Position").
    pyramid_noise: float | None = 0.0  # None (the CLI's default): a resumed run's own setting, else 0
    # A new run's starting weights: an exported model folder (its UNet and text encoder, live
    # and EMA alike); empty: the seeded random initialisation. Fine-tuning a finished export on
    # another machine needs only the 17 MB folder, not the 66 MB checkpoint with its optimizer.
    init_from: str = ""


def pyramid_noise(shape, generator, discount: float):
    """Unit-std multi-resolution noise ``shape = [B, C, H, W]`` from ``generator`` (CPU)."""
    import torch
    import torch.nn.functional as F

    b, c, h, w = shape
    noise = torch.randn(shape, generator=generator)
    level, sh, sw = 1, h, w
    while sh > 1 or sw > 1:
        sh, sw = max(1, sh // 2), max(1, sw // 2)
        low = torch.randn((b, c, sh, sw), generator=generator)
        noise = noise + discount ** level * F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
        level += 1
    return noise / noise.flatten(1).std(dim=1).view(b, 1, 1, 1)


def training_noise(shape, generator, tc):
    """The epsilon a UNet step is trained to predict: white, plus offset or pyramid noise per ``tc``."""
    import torch

    if getattr(tc, "pyramid_noise", 0.0):
        return pyramid_noise(shape, generator, tc.pyramid_noise)
    noise = torch.randn(shape, generator=generator)
    if tc.offset_noise:
        noise = noise + tc.offset_noise * torch.randn(tuple(shape[:2]) + (1, 1), generator=generator)
    return noise


def load_exported(models: Models, folder: Path) -> None:
    """Copy an exported folder's UNet and text encoder (same architecture) into ``models``'
    live and EMA nets; a mismatch fails on the tensor it names (strict loading)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    for sub, live, ema in (("unet", models.unet, models.ema_unet), ("text_encoder", models.text_encoder, models.ema_text)):
        files = sorted((folder / sub).glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"--init-from {folder}: no {sub}/*.safetensors (an exported model folder?)")
        weights = {}
        for f in files:
            weights.update(load_file(str(f)))
        _check_same_architecture(folder, sub, live.state_dict(), weights)
        live.load_state_dict(weights)
        ema.load_state_dict(weights)


def _check_same_architecture(folder: Path, sub: str, ours: dict, theirs: dict) -> None:
    """A one-line error naming how the folder's ``sub`` differs (torch lists every key)."""
    missing = [k for k in ours if k not in theirs]
    extra = [k for k in theirs if k not in ours]
    shaped = [k for k in ours if k in theirs and tuple(ours[k].shape) != tuple(theirs[k].shape)]
    if not (missing or extra or shaped):
        return
    example = (f"e.g. {shaped[0]} is {list(theirs[shaped[0]].shape)} there, {list(ours[shaped[0]].shape)} here"
               if shaped else f"e.g. {(missing or extra)[0]!r}")
    raise ValueError(f"--init-from {folder}: its {sub} is not this run's architecture ({len(missing)} tensors "
                     f"missing, {len(extra)} unexpected, {len(shaped)} of another shape; {example}); "
                     "fine-tune an export of the embedded model's configuration")


def make_unet(cfg: UnetConfig, seed: int = 3):
    from diffusers import UNet2DConditionModel

    n = len(cfg.block_out_channels)
    return seeded(seed, lambda: UNet2DConditionModel(
        sample_size=cfg.sample_size, in_channels=4, out_channels=4, block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block, down_block_types=("CrossAttnDownBlock2D",) * n,
        up_block_types=("CrossAttnUpBlock2D",) * n, attention_head_dim=cfg.attention_head_dim,
        norm_num_groups=cfg.norm_num_groups, cross_attention_dim=cfg.cross_attention_dim,
    ))


def noise_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(**SCHEDULE)


# -- latents ------------------------------------------------------------------------
def cache_latents(run: Path, vae, count: int = 4096, data_seed: int = 0, chunk: int = 64, quiet: bool = False,
                  workers: int = 1):
    """Encode items ``0..count`` of the data set (posterior means) into ``run/latents.pt``
    with their scenes' labels and the latent scaling factor (1 / std). Resumes by chunk.
    ``workers`` > 1 draws the images in that many processes (drawing, ~5 ms an item, is
    most of the time; items depend only on their index, so the result is the same)."""
    import torch

    run = Path(run)
    log = Log(run, "latents", quiet)
    path = run / "latents.pt"
    state = load_state(path) or {"latents": [], "data_seed": data_seed}
    done = sum(len(x) for x in state["latents"])
    starts = range(done, count, chunk)
    with _drawing_pool(workers) as pool:
        jobs = [(data_seed, s, min(chunk, count - s)) for s in starts]
        chunks = in_order(pool, _draw, jobs, ahead=2 * workers) if pool else map(_draw, jobs)
        for pixels in chunks:
            images = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
            with torch.no_grad():
                state["latents"].append(vae.encode(images.to(vae.device)).latent_dist.mode().cpu())
            done += len(pixels)
            if len(state["latents"]) % 16 == 0 or done >= count:
                save_state(path, state)
                log(encoded=done, of=count)
    latents = torch.cat(state["latents"])[:count]
    scale = float(1.0 / latents.std())
    if state.get("scaling_factor") != scale:
        state["scaling_factor"] = scale
        save_state(path, state)
    return latents, scale


def in_order(pool, fn, jobs, ahead: int):
    """``pool.map(fn, jobs)``'s results in order, but with at most ``ahead`` jobs submitted and
    not yet taken: the executor's own map submits every job at once, so drawn images piled
    up in memory while the (slower) encoder caught up (12,288 items: ~600 MB)."""
    from collections import deque
    from itertools import islice

    jobs = iter(jobs)
    pending = deque(pool.submit(fn, job) for job in islice(jobs, max(1, ahead)))
    while pending:
        result = pending.popleft().result()
        following = next(jobs, None)
        if following is not None:
            pending.append(pool.submit(fn, following))
        yield result


def _draw(job):
    """A worker's chunk: ``dataset.pixels(seed, start, n)``'s images (scenes stay behind)."""
    return dataset.pixels(*job)[0]


def _drawing_pool(workers: int):
    import contextlib

    if workers <= 1:
        return contextlib.nullcontext(None)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn: the parent may hold CUDA or OpenMP state that a forked child must not inherit.
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


# -- training -------------------------------------------------------------------------
class Models:
    """UNet + text encoder + tokenizer, with an EMA copy of the two trained nets."""

    def __init__(self, cfg: UnetConfig, seed: int):
        import copy

        self.tokenizer = text.make_tokenizer()
        self.unet = make_unet(cfg, seed + 3)
        self.text_encoder = text.make_text_encoder(text.TextConfig(**cfg.text), self.tokenizer, seed + 2)
        self.ema_unet = copy.deepcopy(self.unet).requires_grad_(False).eval()
        self.ema_text = copy.deepcopy(self.text_encoder).requires_grad_(False).eval()

    def to(self, device):
        for m in (self.unet, self.text_encoder, self.ema_unet, self.ema_text):
            m.to(device)
        return self

    def trainable(self):
        return [*self.unet.parameters(), *self.text_encoder.parameters()]

    def param_groups(self, text_lr_scale: float) -> list[dict]:
        """AdamW's groups: the UNet at the schedule's rate, the text encoder at ``text_lr_scale``
        of it (none, and frozen, at 0). At 1.0 one group, as runs before the option were
        checkpointed (their optimizer state then resumes)."""
        if text_lr_scale == 1.0:
            return [{"params": self.trainable(), "lr_scale": 1.0}]
        groups = [{"params": list(self.unet.parameters()), "lr_scale": 1.0}]
        if text_lr_scale > 0:
            groups.append({"params": list(self.text_encoder.parameters()), "lr_scale": text_lr_scale})
        else:
            self.text_encoder.requires_grad_(False)
        return groups

    def update_ema(self, decay: float):
        import torch

        with torch.no_grad():
            for live, ema in ((self.unet, self.ema_unet), (self.text_encoder, self.ema_text)):
                for p, q in zip(live.parameters(), ema.parameters(), strict=True):
                    q.lerp_(p, 1 - decay)


def _captions(scenes, rng, uncond: float, drop: float) -> list[str]:
    return ["" if rng.random() < uncond else dataset.caption(s, rng, drop) for s in scenes]


def min_snr_weights(scheduler, timesteps, gamma: float, floor: float = 0.0, cap: float = 10.0):
    """Epsilon-loss weights: min-SNR-gamma (low t), and with ``floor`` an SNR floor (high t)."""
    alphas = scheduler.alphas_cumprod.to(timesteps.device)[timesteps]
    snr = alphas / (1 - alphas)
    weights = snr.clamp(max=gamma) / snr
    if floor:
        weights = weights * (floor / snr).clamp(min=1.0, max=cap)
    return weights


def train_unet(run: Path, latents, scale: float, cfg: UnetConfig | None = None, tc: UnetTrain | None = None,
               minutes: float | None = None, device: str = "auto", evaluate=None, quiet: bool = False,
               threads: int = 1) -> Models:
    """Train (or resume from ``run/unet.pt``). ``evaluate(models, step)`` -> dict, logged every eval_every."""
    import numpy as np
    import torch

    cfg, tc = cfg or UnetConfig(), tc or UnetTrain()
    dev = setup_torch(threads, device)
    run = Path(run)
    log = Log(run, "unet", quiet)
    state = load_state(run / "unet.pt")
    if state is not None:
        cfg = UnetConfig(**state["config"])
        # The stored recipe wins, except what the caller may change on resume.
        tc = UnetTrain(**{**state["train"], "steps": tc.steps, "eval_every": tc.eval_every,
                          "offset_noise": tc.offset_noise, "snr_floor": tc.snr_floor,
                          "pyramid_noise": state["train"].get("pyramid_noise", 0.0) if tc.pyramid_noise is None
                          else tc.pyramid_noise})
    if tc.pyramid_noise is None and state is None and tc.init_from:
        from .export import trained_noise

        tc.pyramid_noise = trained_noise(Path(tc.init_from))["pyramid_noise"]  # fine-tune on its own noise
    if tc.pyramid_noise is None:
        tc.pyramid_noise = 0.0
    models = Models(cfg, tc.seed).to(dev)
    opt = torch.optim.AdamW(models.param_groups(tc.text_lr_scale), lr=tc.lr, weight_decay=1e-2)
    gen = torch.Generator().manual_seed(tc.seed)
    step = 0
    if state is not None:
        models.unet.load_state_dict(state["unet"])
        models.text_encoder.load_state_dict(state["text_encoder"])
        models.ema_unet.load_state_dict(state["ema_unet"])
        models.ema_text.load_state_dict(state["ema_text"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        step = state["step"]
    elif tc.init_from:
        load_exported(models, Path(tc.init_from))
    sched = noise_scheduler()
    n = len(latents)

    def checkpoint():
        save_state(run / "unet.pt", dict(
            config=asdict(cfg), train=asdict(tc), scaling_factor=scale, step=step, generator=gen.get_state(),
            unet=models.unet.state_dict(), text_encoder=models.text_encoder.state_dict(),
            ema_unet=models.ema_unet.state_dict(), ema_text=models.ema_text.state_dict(), optimizer=opt.state_dict()))

    deadline = Deadline(minutes)
    models.unet.train()
    models.text_encoder.train()
    data_seed = 0
    running = None
    while step < tc.steps and not deadline.passed():
        idx = torch.randint(0, n, (tc.batch,), generator=gen)
        rng = np.random.default_rng([tc.seed, step])
        scenes = [dataset.sample_scene(data_seed, int(i)) for i in idx]
        ids = text.token_ids(models.tokenizer, _captions(scenes, rng, tc.uncond, tc.drop)).to(dev)
        z0 = latents[idx].to(dev) * scale
        noise = training_noise(z0.shape, gen, tc).to(dev)
        t = torch.randint(0, sched.config.num_train_timesteps, (tc.batch,), generator=gen).to(dev)
        zt = sched.add_noise(z0, noise, t)
        set_lr(opt, lr_at(step, tc.lr, tc.warmup, tc.steps))
        cond = models.text_encoder(ids)[0]
        pred = models.unet(zt, t, encoder_hidden_states=cond).sample
        per = (pred - noise).pow(2).flatten(1).mean(1)
        loss = (per * min_snr_weights(sched, t, tc.snr_gamma, tc.snr_floor)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in models.trainable() if p.requires_grad], 1.0)
        opt.step()
        step += 1
        models.update_ema(min(tc.ema, (1 + step) / (10 + step)))
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        if step % tc.log_every == 0 or step == 1:
            log(step=step, loss=loss.item(), avg=running, lr=opt.param_groups[0]["lr"])
        if step % tc.checkpoint_every == 0:
            checkpoint()
        if evaluate is not None and tc.eval_every and step % tc.eval_every == 0:
            log(step=step, **evaluate(models, step))
    checkpoint()
    log(step=step, done=step >= tc.steps)
    return models
