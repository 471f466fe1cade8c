"""Diffusion pack: checkpoints, LoRA, text encoding, LCM sampling, VAE, images."""

NODES: list = []
