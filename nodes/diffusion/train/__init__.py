"""Training the embedded default model ``builtin:tiny-shapes``.

A small Stable-Diffusion-shaped pipeline (AutoencoderKL + CLIP text encoder +
UNet2DConditionModel, epsilon prediction on SD's noise schedule) trained on a
synthetic, seeded data set of simple scenes (``dataset``). Stages, each
resumable from its own checkpoint under a run folder:

1. ``vae``: the autoencoder (``vae.py``);
2. ``latents``: encode a fixed set of images once with the frozen VAE;
3. ``evaluator``: a small attribute classifier, kept apart from the
   generative model, that reads images back (``evaluator.py``);
4. ``unet``: UNet + text encoder on the cached latents (``unet.py``);
5. ``export``: write the diffusers folder (``export.py``).

``python -m lcmgraph_nodes.diffusion.train --help`` (or the ``lcmgraph train`` subcommand)
runs them; see docs/embedded-model.md.
"""
