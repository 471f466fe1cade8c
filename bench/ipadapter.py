"""What an IP-Adapter costs per UNet call, against diffusers' own IP-Adapter
path in the same run: an SD1.5-shaped UNet (random weights, real shapes), a
basic adapter (4 image tokens) with random weights, one CFG call (batch 2) on
a 64x64 latent (512x512 pixels), fp32 on the CPU.

- plain: the UNet alone;
- diffusers: ``_load_ip_adapter_weights`` + ``IPAdapterAttnProcessor2_0``, image
  embeddings through ``added_cond_kwargs``;
- lcmgraph: the forward hooks of models/ipadapter.py (keys and values made once
  by the node, ``to_q`` run again in each hooked layer).

Prints seconds per call (median of --repeats) and the ratios, plus the largest
difference between the two adapters' outputs. Not a test: numbers go in the README.

    .venv/bin/python bench/ipadapter.py [--repeats 3] [--threads 2] [--size 64]
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--size", type=int, default=64, help="latent side (64 = 512 pixels)")
    args = p.parse_args()

    import torch
    from diffusers import UNet2DConditionModel
    from lcmgraph_nodes.diffusion.models import ipadapter as ipa

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        cross_attention_dim=768, attention_head_dim=8, block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, layers_per_block=2).eval()
    widths = [m.to_q.out_features for m in ipa.cross_attentions(unet)]
    context, image_dim, tokens = 768, 1024, 4
    gen = torch.Generator().manual_seed(1)
    state = {"image_proj": {"proj.weight": torch.randn(tokens * context, image_dim, generator=gen) * image_dim ** -0.5,
                            "proj.bias": torch.zeros(tokens * context), "norm.weight": torch.ones(context),
                            "norm.bias": torch.zeros(context)},
             "ip_adapter": {}}
    for i, width in enumerate(widths):
        for name in ("to_k_ip", "to_v_ip"):
            state["ip_adapter"][f"{2 * i + 1}.{name}.weight"] = torch.randn(width, context, generator=gen) * context ** -0.5
    x = torch.randn(2, 4, args.size, args.size, generator=gen)
    text = torch.randn(2, 77, context, generator=gen)
    embeds = torch.randn(1, image_dim, generator=gen)
    t = torch.tensor(500)

    def timed(call):
        out, times = None, []
        with torch.no_grad():
            call()  # warm-up
            for _ in range(args.repeats):
                start = time.perf_counter()
                out = call()
                times.append(time.perf_counter() - start)
        return statistics.median(times), out

    plain, _ = timed(lambda: unet(x, t, encoder_hidden_states=text).sample)

    # lcmgraph: the node's work (projection, per-layer K/V) outside the timed call, as in a run.
    from diffusers.models.embeddings import ImageProjection

    projection = ImageProjection(image_embed_dim=image_dim, cross_attention_dim=context, num_image_text_embeds=tokens)
    projection.load_state_dict({k.replace("proj", "image_embeds"): v for k, v in state["image_proj"].items()})
    with torch.no_grad():
        pos, neg = projection(embeds), projection(torch.zeros_like(embeds))
    layers = []
    for i in range(len(widths)):
        k, v = state["ip_adapter"][f"{2 * i + 1}.to_k_ip.weight"], state["ip_adapter"][f"{2 * i + 1}.to_v_ip.weight"]
        layers.append((pos @ k.T, pos @ v.T, neg @ k.T, neg @ v.T))
    patch = ipa.IPAdapterPatch("bench", tuple(layers), 1.0, "linear", "V only", 0.0, 1.0, False)
    handles = ipa.install(unet, (patch,))
    ipa.mark_rows(unet, [True, False])
    ours, ours_out = timed(lambda: unet(x, t, encoder_hidden_states=text).sample)
    for handle in handles:
        handle.remove()

    unet._load_ip_adapter_weights([state])
    image_embeds = [torch.cat([torch.zeros_like(embeds), embeds])[:, None]]
    theirs, theirs_out = timed(lambda: unet(x, t, encoder_hidden_states=text,
                                            added_cond_kwargs={"image_embeds": image_embeds}).sample)
    print(f"SD1.5-shaped UNet, CFG batch 2, {args.size * 8}x{args.size * 8}, fp32, {args.threads} threads, "
          f"median of {args.repeats}")
    print(f"plain      {plain:.2f} s")
    print(f"diffusers  {theirs:.2f} s  ({theirs / plain:.3f}x plain)")
    print(f"lcmgraph   {ours:.2f} s  ({ours / plain:.3f}x plain, {ours / theirs:.3f}x diffusers)")
    print(f"max |lcmgraph - diffusers| = {float((ours_out - theirs_out).abs().max()):.2e}")


if __name__ == "__main__":
    main()
