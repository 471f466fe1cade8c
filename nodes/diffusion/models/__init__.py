"""Models in memory and what runs them: the per-engine model manager (device,
dtype, memory budget, LoRA adapters and fusion, compilation), the values the
nodes pass around, the denoising loop, ControlNet residuals, VAE encode/decode
and step previews."""
