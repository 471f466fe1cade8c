"""Why does ``builtin:tiny-shapes`` ignore position words? Cheap diagnostics, no training.

Four probes on the shipped weights (CPU, one thread by default), each printing numbers:

- ``text``: how far the text encoder's output moves when only the position word
  changes, against changing the colour or the shape (cosine distance per token).
- ``loss``: the UNet's epsilon loss on training items (full captions) per timestep band,
  with the right caption, the position word swapped, the colour swapped, and an
  empty caption. A word the model uses raises the loss when swapped.
- ``sample``: one prompt, the 9 position words x several seeds (same noise per seed),
  Euler 25 at CFG 3 and 8: where the shape's centroid lands (foreground mask against
  the border colour), how much of its variance the seed explains vs the word, and
  whether rolling the initial noise moves the shape with it.
- ``lowfreq``: the 64 prompts of bench/quality.py at Euler 25 CFG 3, with the initial
  noise as drawn and with its low frequencies (the 2x2 / 4x4 average-pooled
  components) removed and the noise renormalised: position accuracy per variant.

    .venv/bin/python bench/positions.py [text loss sample lowfreq] [--seeds 8] [--prompts 64]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "nodes" / "diffusion" / "builtin" / "tiny-shapes"
EVALUATOR = ROOT / "nodes" / "diffusion" / "builtin" / "tiny-shapes-evaluator.safetensors"
PROBES = ("text", "loss", "sample", "lowfreq")


def load(model: Path = MODEL):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(model, local_files_only=True, safety_checker=None,
                                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def encode(pipe, texts):
    import torch
    from lcmgraph_nodes.diffusion.train import text

    with torch.no_grad():
        return pipe.text_encoder(text.token_ids(pipe.tokenizer, list(texts)))[0]


# -- text ------------------------------------------------------------------------------
def probe_text(pipe, n: int = 64) -> None:
    """Mean cosine distance between encodings of prompt pairs that differ in one attribute."""
    import torch
    from lcmgraph_nodes.diffusion.train import dataset

    base = [s for _, s in dataset.eval_prompts(n)]
    swaps = {
        "position": lambda s, k: dataset.make_scene(s.shape, s.colour, s.background,
                                                    dataset.POSITIONS[(dataset.POSITIONS.index(s.position) + k) % 9], s.size),
        "colour": lambda s, k: _other_colour(s, k),
        "shape": lambda s, k: dataset.make_scene(dataset.SHAPES[(dataset.SHAPES.index(s.shape) + k) % 5], s.colour,
                                                 s.background, s.position, s.size),
        "size": lambda s, k: dataset.make_scene(s.shape, s.colour, s.background, s.position,
                                                "small" if s.size == "large" else "large"),
    }
    a = encode(pipe, [dataset.caption(s) for s in base])
    print("text: cosine distance between encodings of prompts differing in one word "
          "(mean over 64 prompts; 'all' = every token of the 20, 'pad' = the padding tokens after the text, "
          "'flat' = the whole [20x64] sequence)")
    print(f"{'swap':<10}{'all':>8}{'max tok':>9}{'pad':>8}{'flat':>8}")
    for name, swap in swaps.items():
        b = encode(pipe, [dataset.caption(swap(s, 1 + i % 4)) for i, s in enumerate(base)])
        per_tok = 1 - torch.nn.functional.cosine_similarity(a, b, dim=-1)  # [N, 20]
        ids = _token_count(pipe, [dataset.caption(s) for s in base])
        pad = torch.stack([per_tok[i, c:].mean() for i, c in enumerate(ids)])
        flat = 1 - torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1), dim=-1)
        print(f"{name:<10}{per_tok.mean():>8.4f}{per_tok.max(1).values.mean():>9.4f}{pad.mean():>8.4f}{flat.mean():>8.4f}")


def _other_colour(s, k):
    from lcmgraph_nodes.diffusion.train import dataset

    names = [c for c in dataset.FG_NAMES if c not in (s.colour, s.background)]
    return dataset.make_scene(s.shape, names[k % len(names)], s.background, s.position, s.size)


def _token_count(pipe, texts) -> list[int]:
    """Tokens of each text including BOS and the first EOS (where padding starts after)."""
    return [len(pipe.tokenizer(t).input_ids) for t in texts]


# -- loss ------------------------------------------------------------------------------
def probe_loss(pipe, n: int = 64, seed: int = 0) -> None:
    """Epsilon MSE per timestep band with the true caption vs one attribute swapped."""
    import numpy as np
    import torch
    from lcmgraph_nodes.diffusion.train import dataset
    from lcmgraph_nodes.diffusion.train.unet import noise_scheduler

    images, scenes = dataset.batch(0, 0, n)  # training items (data seed 0)
    with torch.no_grad():
        z0 = pipe.vae.encode(images).latent_dist.mode() * pipe.vae.config.scaling_factor
    rng = np.random.default_rng(seed)
    variants = {
        "true": [dataset.caption(s) for s in scenes],
        "pos swapped": [dataset.caption(dataset.make_scene(s.shape, s.colour, s.background, _far_position(s.position),
                                                           s.size)) for s in scenes],
        "colour swapped": [dataset.caption(_other_colour(s, int(rng.integers(6)))) for s in scenes],
        "no position": [dataset.caption(s).rsplit(",", 1)[0] for s in scenes],
        "empty": [""] * n,
    }
    conds = {k: encode(pipe, v) for k, v in variants.items()}
    sched = noise_scheduler()
    gen = torch.Generator().manual_seed(seed)
    bands = (50, 300, 600, 800, 900, 950, 999)
    print(f"loss: epsilon MSE on {n} training items (full captions), same noise for every caption; "
          "a word the model uses raises the loss when swapped")
    print(f"{'t':>5}" + "".join(f"{k:>16}" for k in variants) + f"{'pos gap %':>11}{'colour gap %':>13}")
    for t in bands:
        noise = torch.randn(z0.shape, generator=gen)
        tt = torch.full((n,), t)
        zt = sched.add_noise(z0, noise, tt)
        losses = {}
        with torch.no_grad():
            for k, c in conds.items():
                losses[k] = float((pipe.unet(zt, tt, encoder_hidden_states=c).sample - noise).pow(2).mean())
        pos = 100 * (losses["pos swapped"] / losses["true"] - 1)
        col = 100 * (losses["colour swapped"] / losses["true"] - 1)
        print(f"{t:>5}" + "".join(f"{losses[k]:>16.5f}" for k in variants) + f"{pos:>11.2f}{col:>13.2f}")


def _far_position(position: str) -> str:
    """The mirrored position (top left <-> bottom right); center -> top left."""
    flip = {"top": "bottom", "bottom": "top", "left": "right", "right": "left"}
    out = " ".join(flip.get(w, w) for w in position.split())
    return "top left" if out == "center" else out


# -- sample ----------------------------------------------------------------------------
def centroid(images):
    """Foreground centroid ``[N, 2]`` (x, y in 0..1) against each image's median border colour; nan if none."""
    import torch

    n, _, h, w = images.shape
    border = torch.cat([images[:, :, 0], images[:, :, -1], images[:, :, :, 0], images[:, :, :, -1]], dim=2)
    bg = border.median(dim=2).values[:, :, None, None]
    mask = ((images - bg).pow(2).sum(1).sqrt() > 0.4).float()  # [N, H, W]
    ys, xs = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    area = mask.sum((1, 2))
    cx = (mask * xs).sum((1, 2)) / area
    cy = (mask * ys).sum((1, 2)) / area
    return torch.stack([cx, cy], 1)


def initial_noise(seeds, shape=(4, 16, 16)):
    """The latents diffusers draws from ``torch.Generator('cpu').manual_seed(s)`` (before sigma scaling)."""
    import torch

    return torch.stack([torch.randn(shape, generator=torch.Generator("cpu").manual_seed(int(s))) for s in seeds])


def run(pipe, prompts, latents, steps=25, guidance=3.0, batch=16):
    import torch
    from lcmgraph_nodes.diffusion.train.generate import set_scheduler

    set_scheduler(pipe, "euler")
    out = []
    for i in range(0, len(prompts), batch):
        with torch.no_grad():
            img = pipe(prompts[i:i + batch], num_inference_steps=steps, guidance_scale=guidance,
                       latents=latents[i:i + batch].clone(), height=128, width=128, output_type="pt").images
        out.append(img * 2 - 1)
    return torch.cat(out)


def probe_sample(pipe, seeds: int = 8, guidances=(3.0, 8.0)) -> None:
    import torch
    from lcmgraph_nodes.diffusion.train import dataset

    words = dataset.POSITIONS
    prompts = [f"a large red circle on a blue background, {w}" for w in words for _ in range(seeds)]
    noise = initial_noise([s for _ in words for s in range(seeds)])
    target = torch.tensor([[0.25 + 0.25 * (0 if "left" in w else 2 if "right" in w else 1),
                            0.25 + 0.25 * (0 if "top" in w else 2 if "bottom" in w else 1)] for w in words])
    print(f"sample: 'a large red circle on a blue background, POSITION', 9 words x {seeds} seeds, Euler 25; "
          "foreground centroid (x, y in 0..1)")
    for g in guidances:
        c = centroid(run(pipe, prompts, noise, 25, g)).view(len(words), seeds, 2)
        ok = ~c.isnan().any(-1)
        grand = c[ok].mean(0)
        total = float(((c - grand).pow(2).sum(-1))[ok].mean())
        by_word = c.nanmean(1)  # [9, 2]
        by_seed = c.nanmean(0)  # [seeds, 2]
        word_var = float((by_word - grand).pow(2).sum(-1).mean())
        seed_var = float((by_seed - grand).pow(2).sum(-1).mean())
        # Does the per-word mean move toward the asked place? (only meaningful when words move it at all)
        toward = torch.nn.functional.cosine_similarity(by_word - grand, target - 0.5, dim=-1)[torch.arange(9) != 4]
        toward = f"{float(toward.mean()):+.2f}" if word_var > 1e-4 else "n/a"
        print(f"  CFG {g:g}: centroid variance {total:.4f}; between words {word_var:.4f} ({100 * word_var / total:.0f}%), "
              f"between seeds {seed_var:.4f} ({100 * seed_var / total:.0f}%); mean cos(word offset, asked offset) "
              f"{toward}; no shape found in {int((~ok).sum())}")
        print("    per word (x, y): " + ", ".join(f"{w} ({x:.2f}, {y:.2f})" for w, (x, y) in zip(words, by_word.tolist(), strict=True)))
        print("    per seed (x, y): " + ", ".join(f"{s}: ({x:.2f}, {y:.2f})" for s, (x, y) in enumerate(by_seed.tolist())))
    # Roll the initial noise by a quarter of the latent (4 px = 32 image px) in x and y: does the shape follow?
    base = initial_noise(range(seeds))
    rolled = torch.roll(base, shifts=(4, 4), dims=(2, 3))
    prompt = ["a large red circle on a blue background, center"] * seeds
    c0 = centroid(run(pipe, prompt, base, 25, 3.0))
    c1 = centroid(run(pipe, prompt, rolled, 25, 3.0))
    shift = torch.remainder(c1 - c0 + 0.5, 1.0) - 0.5
    print(f"  roll: initial noise rolled by (+4, +4) latent px = (+0.25, +0.25) of the image, prompt 'center', CFG 3: "
          f"centroid moved by mean ({shift[:, 0].nanmean():+.2f}, {shift[:, 1].nanmean():+.2f}); per seed "
          + ", ".join(f"({x:+.2f}, {y:+.2f})" for x, y in shift.tolist()))


# -- lowfreq ---------------------------------------------------------------------------
def remove_low(noise, cells: int):
    """Subtract the ``cells x cells`` average-pooled component (upsampled) and renormalise to unit std."""
    import torch.nn.functional as F

    h = noise.shape[-1]
    low = F.interpolate(F.avg_pool2d(noise, h // cells), scale_factor=h // cells, mode="nearest")
    high = noise - low
    return high / high.flatten(1).std(1)[:, None, None, None]


def probe_lowfreq(pipe, n: int = 64, guidance: float = 3.0) -> None:
    from lcmgraph_nodes.diffusion.train import dataset
    from lcmgraph_nodes.diffusion.train.evaluator import accuracy, load_evaluator, predict

    judge = load_evaluator(EVALUATOR)
    prompts = dataset.eval_prompts(n)
    texts, scenes = [p for p, _ in prompts], [s for _, s in prompts]
    noise = initial_noise(range(n))
    print(f"lowfreq: {n} prompts of bench/quality.py, seeds 0..{n - 1}, Euler 25, CFG {guidance:g}; "
          "initial noise with its low-frequency component removed")
    print(f"{'initial noise':<28}{'colour+shape':>13}{'position':>10}{'size':>7}{'bg':>7}")
    for label, z in [("as drawn", noise), *[(f"minus {c}x{c} pooled", remove_low(noise, c)) for c in (2, 4)]]:
        acc = accuracy(predict(judge, run(pipe, texts, z, 25, guidance)), scenes)
        print(f"{label:<28}{acc['colour_shape']:>13.3f}{acc['position']:>10.3f}{acc['size']:>7.3f}{acc['background']:>7.3f}",
              flush=True)


def main(argv=None) -> int:
    import torch

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("probes", nargs="*", default=list(PROBES), choices=PROBES)
    p.add_argument("--model", type=Path, default=MODEL)
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    pipe = load(args.model)
    for name in args.probes:
        start = time.perf_counter()
        if name == "text":
            probe_text(pipe, args.prompts)
        elif name == "loss":
            probe_loss(pipe, args.prompts)
        elif name == "sample":
            probe_sample(pipe, args.seeds)
        else:
            probe_lowfreq(pipe, args.prompts)
        print(f"  ({name}: {time.perf_counter() - start:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
