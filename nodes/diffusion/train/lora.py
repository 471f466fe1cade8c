"""LoRA training on an SD1.5 / SDXL-architecture model in diffusers layout.

Two kinds, one machinery (peft adapter on the UNet, resumable state, a
``.safetensors`` in diffusers' LoRA naming that ApplyLoRA loads like any
other LoRA):

- ``lcm``: latent consistency distillation (LCM-LoRA). The teacher is the
  base UNet itself (the adapter disabled), run with classifier-free guidance
  at a scale sampled per item; a DDIM step over a skipping-step schedule
  (k = 1000 / ``ddim_steps``) goes from t_{n+k} to t_n; the student (the
  adapter enabled) at t_{n+k} must agree with the target (the same network,
  no gradient) at t_n, both through the consistency boundary conditions
  c_skip / c_out (sigma_data 0.5, timestep scaling 10, as LCMScheduler
  uses them); pseudo-Huber loss.
- ``style``: a plain LoRA fine-tune (epsilon loss, the base recipe) on other
  data, e.g. the shapes drawn with outlines.

Data: ``shapes`` (the synthetic generator, ``style`` picks its look) or a
folder of images with same-named ``.txt`` captions. Latents are encoded once
into the run folder.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from pathlib import Path

from . import dataset
from .common import Deadline, Log, load_state, lr_at, save_state, set_lr, setup_torch

#: The layers the LCM-LoRA recipe adapts: attention, feed-forward, and the convolutions
#: (resnets, shortcuts, down/upsamplers) plus the time-embedding projections.
LCM_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
               "conv1", "conv2", "conv_shortcut", "downsamplers.0.conv", "upsamplers.0.conv", "time_emb_proj")
KINDS = ("lcm", "style")
#: ``targets``: every LCM_TARGETS layer, or all but the cross-attention's key and value
#: projections (``attn2.to_k`` / ``attn2.to_v``), the only layers that read the text: a style
#: LoRA without them cannot remap what the prompt's words mean (a colour word to its colour).
TARGET_SETS = ("all", "no-text")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


@dataclass
class LoraTrain:
    kind: str = "lcm"
    rank: int = 16
    steps: int = 1000
    batch: int = 16
    lr: float = 1e-3
    warmup: int = 50
    seed: int = 0
    data: str = "shapes"  # or a folder of images + .txt captions
    style: str = "plain"  # the look of the shapes data
    pool: int = 2048  # items encoded once
    resolution: int = dataset.DEFAULT_SIZE
    drop: float = 0.3  # caption attributes dropped (shapes data)
    # lcm
    ddim_steps: int = 50
    w_min: float = 1.0  # guidance w as LCM writes it: x0 = cond + w * (cond - uncond) (CFG scale w + 1)
    w_max: float = 4.0
    huber_c: float = 0.001
    # The target network's LoRA is an EMA of the student's (LCM's target network; 0 = the
    # live student, as diffusers' LCM-LoRA script does). With the live student as target a
    # trial on the embedded model diverged within 300 steps (loss 0.021 -> 0.056).
    target_ema: float = 0.95
    # style
    uncond: float = 0.1
    offset_noise: float = 0.3  # as the base was trained (train/unet.py)
    # Pyramid noise as the base was trained with it (train/unet.py; replaces offset noise when
    # > 0). None: read from the base's training.json (our exports write it), else 0.
    pyramid_noise: float | None = None
    # The epsilon loss's weight on the latent cells the shape's fill covers (shapes data; 1 =
    # uniform). The style changes only the band around the fill; a weight > 1 makes the LoRA pay
    # more for a fill that drifts from its caption's colour.
    fill_weight: float = 1.0
    targets: str = "all"  # one of TARGET_SETS
    # Draw some items more often (shapes data): "ATTRIBUTE=VALUE:K[,...]", e.g. "background=black:3"
    # draws each black-background item 3x as often as the rest. "" = uniform.
    oversample: str = ""
    # Train at a random adapter weight in "LO:HI" each step (style kind; "" = 1.0 always), so that
    # the style looks whole at any weight a user picks in that range: trained at 1.0 and used at
    # 0.8, the outline LoRA drew a paler band into muddied fills (colour 0.84 vs 0.91 at 1.0).
    scales: str = ""
    checkpoint_every: int = 100
    log_every: int = 10
    eval_every: int = 0


def boundary_scalings(t, sigma_data: float = 0.5, timestep_scaling: float = 10.0):
    """LCM's consistency boundary conditions: f(x, t) = c_skip x + c_out x0(x, t)."""
    scaled = t.float() * timestep_scaling
    c_skip = sigma_data**2 / (scaled**2 + sigma_data**2)
    c_out = scaled / (scaled**2 + sigma_data**2) ** 0.5
    return c_skip.view(-1, 1, 1, 1), c_out.view(-1, 1, 1, 1)


def huber(a, b, c: float):
    return ((a.float() - b.float()).pow(2) + c * c).sqrt().sub(c).mean()


# -- the base model -------------------------------------------------------------------
def load_base(model: Path, device, dtype=None):
    """The diffusers pipeline of ``model`` (SD1.5 or SDXL folder), frozen, on ``device``."""
    import torch
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(str(model), dtype=dtype or torch.float32,
                                             safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        module = getattr(pipe, name, None)
        if module is not None:
            module.requires_grad_(False).eval()
    return pipe.to(device)


class Conditioner:
    """Captions -> the UNet's conditioning kwargs, for SD1.5 and SDXL pipelines alike."""

    def __init__(self, pipe, resolution: int):
        self.pipe = pipe
        self.xl = getattr(pipe, "text_encoder_2", None) is not None
        self.resolution = resolution
        self._cache: dict[str, tuple] = {}

    def _one(self, text: str):
        import torch

        if text not in self._cache:
            dev = self.pipe.unet.device
            with torch.no_grad():
                if self.xl:
                    embeds, _, pooled, _ = self.pipe.encode_prompt(text, device=dev, num_images_per_prompt=1,
                                                                   do_classifier_free_guidance=False)
                else:
                    embeds, _ = self.pipe.encode_prompt(text, dev, 1, False)
                    pooled = None
            self._cache[text] = (embeds[0], None if pooled is None else pooled[0])
        return self._cache[text]

    def __call__(self, texts: list[str]) -> dict:
        import torch

        parts = [self._one(t) for t in texts]
        kwargs = {"encoder_hidden_states": torch.stack([p[0] for p in parts])}
        if self.xl:
            r = self.resolution
            ids = torch.tensor([[r, r, 0, 0, r, r]], dtype=kwargs["encoder_hidden_states"].dtype)
            kwargs["added_cond_kwargs"] = {"text_embeds": torch.stack([p[1] for p in parts]),
                                           "time_ids": ids.repeat(len(texts), 1).to(self.pipe.unet.device)}
        return kwargs


# -- data -----------------------------------------------------------------------------
def _folder_items(folder: Path, resolution: int):
    import numpy as np
    from PIL import Image, ImageOps

    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    for path in files:
        with Image.open(path) as im:
            im = ImageOps.fit(im.convert("RGB"), (resolution, resolution), Image.BICUBIC)
            pixels = np.asarray(im)
        txt = path.with_suffix(".txt")
        yield pixels, (txt.read_text(encoding="utf-8").strip() if txt.exists() else ""), None


def encode_pool(run: Path, pipe, tc: LoraTrain, quiet: bool = False):
    """Latents (scaled as the UNet sees them) plus captions / scenes, encoded once into
    ``run/lora-latents.pt`` and reused while the data settings stay the same."""
    import torch

    key = {"data": tc.data, "style": tc.style, "pool": tc.pool, "resolution": tc.resolution}
    path = Path(run) / "lora-latents.pt"
    state = load_state(path)
    if state is not None and state["key"] == key:
        return state
    vae = pipe.vae

    def encode(x):
        with torch.no_grad():
            return vae.encode(x.to(vae.device, vae.dtype)).latent_dist.mode().float().cpu()

    latents, captions, scenes = [], [], []
    if tc.data == "shapes":
        for start in range(0, tc.pool, 64):
            x, sc = dataset.batch(0, start, min(64, tc.pool - start), tc.resolution, style=tc.style)
            latents.append(encode(x))
            scenes += sc
    else:
        import numpy as np

        items = list(_folder_items(Path(tc.data), tc.resolution))[: tc.pool]
        for start in range(0, len(items), 16):
            chunk = np.stack([p for p, _, _ in items[start:start + 16]])
            latents.append(encode(torch.from_numpy(chunk).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)))
        captions = [c for _, c, _ in items]
    z = torch.cat(latents) * vae.config.scaling_factor
    state = {"key": key, "latents": z, "captions": captions, "scenes": scenes}
    save_state(path, state)
    Log(Path(run), "lora", quiet)(encoded=len(z))
    return state


def _captions(pool: dict, idx, rng, tc: LoraTrain, uncond: float) -> list[str]:
    out = []
    for i in idx.tolist():
        if uncond and rng.random() < uncond:
            out.append("")
        elif pool["scenes"]:
            out.append(dataset.caption(pool["scenes"][i], rng, tc.drop))
        else:
            out.append(pool["captions"][i])
    return out


# -- the adapter ------------------------------------------------------------------------
def adapted_layers(unet, targets: str = "all") -> list[str]:
    """The full names of the UNet layers a LoRA of ``targets`` (TARGET_SETS) adapts."""
    if targets not in TARGET_SETS:
        raise ValueError(f"unknown LoRA targets {targets!r}; one of {', '.join(TARGET_SETS)}")
    out = []
    for name, _ in unet.named_modules():
        if not any(name == t or name.endswith("." + t) for t in LCM_TARGETS):
            continue
        if targets == "no-text" and name.endswith(("attn2.to_k", "attn2.to_v")):
            continue
        out.append(name)
    return out


def add_adapter(unet, rank: int, seed: int, targets: str = "all"):
    import torch
    from peft import LoraConfig

    targets = adapted_layers(unet, targets)
    # lora_alpha = rank: scale 1, so the saved file (which carries no alpha) loads the same.
    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=targets, init_lora_weights="gaussian")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        unet.add_adapter(config)
    return [p for p in unet.parameters() if p.requires_grad]


def save_lora(pipe, path: Path) -> Path:
    """The UNet adapter as a diffusers-named ``.safetensors`` (loads through ApplyLoRA)."""
    from peft.utils import get_peft_model_state_dict

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # peft names (``...to_q.lora_A.weight``) as they are: diffusers' convert_state_dict_to_diffusers
    # renames attention layers to the old ``lora.down`` form, which its own loader then drops.
    layers = {k: v.detach().float().cpu().contiguous() for k, v in get_peft_model_state_dict(pipe.unet).items()}
    tmp = path.with_name(path.name + ".tmp")
    type(pipe).save_lora_weights(str(path.parent), unet_lora_layers=layers, weight_name=tmp.name,
                                 safe_serialization=True)
    tmp.replace(path)
    return path


# -- training ---------------------------------------------------------------------------
class _Steps:
    """Noise-schedule lookups: sqrt(alpha_bar) and sqrt(1 - alpha_bar) at timesteps."""

    def __init__(self, scheduler, device):
        abar = scheduler.alphas_cumprod.to(device)
        self.alpha, self.sigma = abar.sqrt(), (1 - abar).sqrt()

    def x0(self, x, eps, t):
        return (x - self.sigma[t].view(-1, 1, 1, 1) * eps) / self.alpha[t].view(-1, 1, 1, 1)


class _TargetEma:
    """An EMA copy of the adapter's parameters, swapped in for the target's forward pass."""

    def __init__(self, params, decay: float):
        self.params, self.decay = params, decay
        self.shadow = [p.detach().clone() for p in params]
        self._live = [p.detach().clone() for p in params]  # reused: no per-step allocation

    def update(self):
        import torch

        with torch.no_grad():
            torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1 - self.decay)

    @contextlib.contextmanager
    def swapped(self):
        import torch

        with torch.no_grad():
            torch._foreach_copy_(self._live, self.params)
            torch._foreach_copy_(self.params, self.shadow)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self.params, self._live)


def _lcm_loss(pipe, cond, uncond, z0, gen, tc: LoraTrain, steps: _Steps, scheduler, target_ema=None):
    import torch

    unet, dev, n = pipe.unet, z0.device, len(z0)
    k = scheduler.config.num_train_timesteps // tc.ddim_steps
    index = torch.randint(0, tc.ddim_steps, (n,), generator=gen)
    start = ((index + 1) * k - 1).to(dev)  # the skipping-step schedule k-1, 2k-1, ..., 999
    t = (start - k).clamp(min=0)
    noise = torch.randn(z0.shape, generator=gen).to(dev)
    zs = scheduler.add_noise(z0, noise, start)
    w = (tc.w_min + (tc.w_max - tc.w_min) * torch.rand(n, generator=gen)).to(dev).view(-1, 1, 1, 1)
    skip_s, out_s = boundary_scalings(start)
    skip_t, out_t = boundary_scalings(t)

    # Teacher and target first: the target swaps EMA weights into the adapter in place,
    # which must not happen between the student's forward and its backward.
    with torch.no_grad():
        unet.disable_adapters()
        try:
            both = unet(torch.cat([zs, zs]), torch.cat([start, start]),
                        **_cat(cond, uncond)).sample
        finally:
            unet.enable_adapters()
        eps_c, eps_u = both.chunk(2)
        x0_c, x0_u = steps.x0(zs, eps_c, start), steps.x0(zs, eps_u, start)
        x0 = x0_c + w * (x0_c - x0_u)
        eps = eps_c + w * (eps_c - eps_u)
        z_prev = steps.alpha[t].view(-1, 1, 1, 1) * x0 + steps.sigma[t].view(-1, 1, 1, 1) * eps  # DDIM, eta 0
        if target_ema is not None:
            with target_ema.swapped():
                target_eps = unet(z_prev, t, **cond).sample
        else:
            target_eps = unet(z_prev, t, **cond).sample
        target = skip_t * z_prev + out_t * steps.x0(z_prev, target_eps, t)
    student = unet(zs, start, **cond).sample
    prediction = skip_s * zs + out_s * steps.x0(zs, student, start)
    return huber(prediction, target, tc.huber_c)


def _cat(a: dict, b: dict) -> dict:
    import torch

    out = {"encoder_hidden_states": torch.cat([a["encoder_hidden_states"], b["encoder_hidden_states"]])}
    if "added_cond_kwargs" in a:
        out["added_cond_kwargs"] = {k: torch.cat([a["added_cond_kwargs"][k], b["added_cond_kwargs"][k]])
                                    for k in a["added_cond_kwargs"]}
    return out


def base_noise(model: Path, tc: LoraTrain) -> LoraTrain:
    """``tc`` with the base's own training noise where it leaves it open (pyramid_noise None):
    an epsilon fine-tune on other noise than the base's shifts what the base learned."""
    from .export import trained_noise

    if tc.pyramid_noise is not None:
        return tc
    noise = trained_noise(Path(model))
    pyramid = noise["pyramid_noise"]
    offset = tc.offset_noise if noise["offset_noise"] is None else noise["offset_noise"]
    return LoraTrain(**{**asdict(tc), "pyramid_noise": pyramid, "offset_noise": 0.0 if pyramid else offset})


def fill_weights(scenes, latent_side: int, fill_weight: float):
    """``[n, 1, side, side]`` loss weights: ``fill_weight`` on the latent cells a scene's fill
    covers (pro rata on its edge cells), 1 elsewhere."""
    import numpy as np
    import torch

    masks = np.stack([dataset.fill_mask(sc, latent_side) for sc in scenes])
    return torch.from_numpy(1.0 + (fill_weight - 1.0) * masks).unsqueeze(1)


def oversample_weights(scenes, spec: str):
    """``[n]`` sampling weights of the pool's items under ``spec`` ("ATTRIBUTE=VALUE:K,...",
    ``LoraTrain.oversample``): K for an item whose ATTRIBUTE is VALUE (factors of several
    matching rules multiply), 1 otherwise. None when the spec holds no rule: the uniform draw,
    the same stream as a run without the option."""
    import math

    import torch

    rules = []
    for rule in filter(None, (r.strip() for r in spec.split(","))):
        attribute, _, rest = rule.partition("=")
        value, colon, factor = rest.rpartition(":")
        if not colon:
            raise ValueError(f"oversample {rule!r}: write it as ATTRIBUTE=VALUE:K, e.g. background=black:3")
        if attribute not in dataset.ATTRIBUTES:
            raise ValueError(f"oversample {rule!r}: unknown attribute {attribute!r}; "
                             f"one of {', '.join(dataset.ATTRIBUTES)}")
        if value not in dataset.ATTRIBUTES[attribute]:
            raise ValueError(f"oversample {rule!r}: {attribute} has no value {value!r}; "
                             f"one of {', '.join(dataset.ATTRIBUTES[attribute])}")
        try:
            k = float(factor)
        except ValueError:
            k = 0.0
        if not (k > 0 and math.isfinite(k)):
            raise ValueError(f"oversample {rule!r}: the factor after ':' must be a number > 0")
        rules.append((attribute, value, k))
    if not rules:
        return None
    weights = torch.ones(len(scenes), dtype=torch.float64)
    for i, scene in enumerate(scenes):
        for attribute, value, k in rules:
            if getattr(scene, attribute) == value:
                weights[i] *= k
    return weights


def _check_data_options(tc: LoraTrain) -> None:
    """``fill_weight``, ``oversample`` and ``scales`` are well formed and apply to this run
    (before any work: the data is encoded next)."""
    if tc.kind == "style" and tc.fill_weight != 1.0 and tc.data != "shapes":
        raise ValueError(f"fill_weight needs the shapes data (it knows where each fill is); {tc.data} has no scenes")
    if oversample_weights([], tc.oversample) is not None and tc.data != "shapes":
        raise ValueError(f"oversample needs the shapes data (it knows each item's attributes); {tc.data} has none")
    if parse_scales(tc.scales) is not None and tc.kind != "style":
        raise ValueError("scales is for style LoRAs; an LCM-LoRA is used at 1.0")


def parse_scales(spec: str) -> tuple[float, float] | None:
    """``"LO:HI"`` -> ``(LO, HI)`` with 0 < LO <= HI, both finite; "" -> None (always 1.0)."""
    import math

    if not spec:
        return None
    lo, colon, hi = spec.partition(":")
    try:
        bounds = (float(lo), float(hi)) if colon else None
    except ValueError:
        bounds = None
    if bounds is None or not (0 < bounds[0] <= bounds[1] and math.isfinite(bounds[1])):
        raise ValueError(f"scales {spec!r}: write it as LO:HI with 0 < LO <= HI, e.g. 0.6:1.0")
    return bounds


def set_adapter_scale(unet, scale: float) -> None:
    """Every LoRA layer of ``unet`` at ``scale`` times its configured alpha / rank."""
    from peft.tuners.lora import LoraLayer

    for module in unet.modules():
        if isinstance(module, LoraLayer):
            for adapter in module.scaling:
                module.set_scale(adapter, scale)


def draw_items(count: int, batch: int, gen, weights=None):
    """A batch of pool indices: uniform (as every run before ``oversample`` drew them, so their
    seeds reproduce), or in proportion to ``weights``."""
    import torch

    if weights is None:
        return torch.randint(0, count, (batch,), generator=gen)
    return torch.multinomial(weights, batch, replacement=True, generator=gen)


def _style_loss(pipe, cond, z0, gen, tc: LoraTrain, scheduler, weights=None):
    import torch

    from .unet import training_noise

    n, dev = len(z0), z0.device
    noise = training_noise(z0.shape, gen, tc).to(dev)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (n,), generator=gen).to(dev)
    pred = pipe.unet(scheduler.add_noise(z0, noise, t), t, **cond).sample
    err = (pred.float() - noise.float()).pow(2)
    if weights is None:
        return err.mean()
    weights = weights.to(dev)  # normalised: the same lr means the same step size at any fill_weight
    return (err * weights).mean() / weights.mean()


def train_lora(run: Path, model: Path, tc: LoraTrain | None = None, minutes: float | None = None,
               device: str = "auto", evaluate=None, quiet: bool = False, threads: int = 1, keep_every: int = 0):
    """Train (or resume from ``run/lora.pt``) a LoRA of ``tc.kind`` on the base ``model``.
    ``evaluate(pipe, step)`` -> dict is logged every ``eval_every`` steps; with ``keep_every``
    the LoRA is also written to ``run/lora-STEP.safetensors`` every that many steps (to pick
    a checkpoint on held-out prompts afterwards). Returns the pipeline with the adapter (live)
    and the step reached."""
    import numpy as np
    import torch
    from diffusers import DDPMScheduler
    from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

    tc = tc or LoraTrain()
    if tc.kind not in KINDS:
        raise ValueError(f"unknown LoRA kind {tc.kind!r}; one of {', '.join(KINDS)}")
    _check_data_options(tc)  # a bad option fails now, not after the data is encoded
    dev = setup_torch(threads, device)
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    log = Log(run, "lora", quiet)
    state = load_state(run / "lora.pt")
    if state is not None:
        saved = LoraTrain(**state["train"])
        if saved.kind != tc.kind:
            raise ValueError(f"{run} holds a {saved.kind!r} LoRA run, not {tc.kind!r}; use another --run folder")
        tc = LoraTrain(**{**asdict(saved), "steps": tc.steps, "eval_every": tc.eval_every})
        if "pyramid_noise" not in state["train"]:
            # Saved before runs recorded their noise (sitting 7): it trained on offset noise
            # alone, and reading the base's pyramid noise now would switch it mid-run.
            tc = LoraTrain(**{**asdict(tc), "pyramid_noise": 0.0})
        _check_data_options(tc)
    scales = parse_scales(tc.scales)  # the run folder's own, on a resume
    tc = base_noise(model, tc)
    pipe = load_base(model, dev)
    pool = encode_pool(run, pipe, tc, quiet)
    params = add_adapter(pipe.unet, tc.rank, tc.seed, tc.targets)
    opt = torch.optim.AdamW(params, lr=tc.lr, weight_decay=1e-2)
    gen = torch.Generator().manual_seed(tc.seed)
    step = 0
    if state is not None:
        set_peft_model_state_dict(pipe.unet, state["lora"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        step = state["step"]
    target_ema = _TargetEma(params, tc.target_ema) if tc.kind == "lcm" and tc.target_ema else None
    if target_ema is not None and state is not None and "target_ema" in state:
        for s_, v in zip(target_ema.shadow, state["target_ema"], strict=True):
            s_.copy_(v)
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    steps = _Steps(scheduler, dev)
    conditioner = Conditioner(pipe, tc.resolution)
    latents = pool["latents"]
    weights = None
    if tc.kind == "style" and tc.fill_weight != 1.0:
        weights = fill_weights(pool["scenes"], latents.shape[-1], tc.fill_weight)
    item_weights = oversample_weights(pool["scenes"], tc.oversample)

    def checkpoint():
        save_state(run / "lora.pt", dict(train=asdict(tc), step=step, generator=gen.get_state(),
                                         optimizer=opt.state_dict(),
                                         lora={k: v.cpu() for k, v in get_peft_model_state_dict(pipe.unet).items()},
                                         target_ema=None if target_ema is None else [t.cpu() for t in target_ema.shadow]))

    deadline = Deadline(minutes)
    pipe.unet.train()
    running = None
    while step < tc.steps and not deadline.passed():
        idx = draw_items(len(latents), tc.batch, gen, item_weights)
        rng = np.random.default_rng([tc.seed, step])
        z0 = latents[idx].to(dev)
        set_lr(opt, lr_at(step, tc.lr, tc.warmup, tc.steps))
        if tc.kind == "lcm":
            cond = conditioner(_captions(pool, idx, rng, tc, 0.0))
            uncond = conditioner([""] * tc.batch)
            loss = _lcm_loss(pipe, cond, uncond, z0, gen, tc, steps, scheduler, target_ema)
        else:
            cond = conditioner(_captions(pool, idx, rng, tc, tc.uncond))
            if scales is not None:  # its own stream: the captions and noise stay those of a run without
                set_adapter_scale(pipe.unet, float(np.random.default_rng([tc.seed, step, 1]).uniform(*scales)))
            loss = _style_loss(pipe, cond, z0, gen, tc, scheduler, None if weights is None else weights[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if scales is not None:
            set_adapter_scale(pipe.unet, 1.0)  # evaluated and saved at weight 1, as a user loads it
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if target_ema is not None:
            target_ema.update()
        step += 1
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        if step % tc.log_every == 0 or step == 1:
            log(step=step, loss=loss.item(), avg=running, lr=opt.param_groups[0]["lr"])
        if step % tc.checkpoint_every == 0:
            checkpoint()
        if keep_every and step % keep_every == 0:
            save_lora(pipe, run / f"lora-{step:05d}.safetensors")
        if evaluate is not None and tc.eval_every and step % tc.eval_every == 0:
            pipe.unet.eval()
            log(step=step, **evaluate(pipe, step))
            pipe.unet.train()
    checkpoint()
    pipe.unet.eval()
    log(step=step, done=step >= tc.steps)
    return pipe, step
