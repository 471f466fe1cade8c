"""Latent creation and the sampler nodes (the loop itself is in models/sampling.py)."""

from __future__ import annotations

from lcmgraph import Input, Node, Output
from lcmgraph import types as T
from lcmgraph.budget import Estimate

from .models import costs
from .models.sampling import SCHEDULERS, SampleRequest, sample, sample_batch
from .models.values import Latent

_SEED = dict(default=0, min=0, max=2**63 - 1, description="noise is drawn on the CPU: a seed means the same image on every device")

#: What every sampler takes before its own settings.
_SAMPLER_INPUTS = (
    Input("model", T.MODEL),
    Input("positive", T.CONDITIONING),
    Input("negative", T.CONDITIONING, optional=True),
    Input("latent", T.LATENT),
    Input("seed", T.INT, **_SEED),
)


class EmptyLatent(Node):
    """An all-zero latent batch to start text-to-image from (1/8 of the image size)."""

    category = "latent"
    record_parameters = True
    inputs = (
        Input("width", T.INT, default=512, min=64, max=8192, step=8),
        Input("height", T.INT, default=512, min=64, max=8192, step=8),
        Input("batch", T.INT, default=1, min=1, max=64),
    )
    outputs = (Output("latent", T.LATENT),)
    batch_inputs = ()  # jobs batched together have the same size

    def execute(self, ctx, width, height, batch):
        import torch

        return {"latent": Latent(torch.zeros(batch, 4, height // 8, width // 8))}

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        size = costs.Size(literals["batch"], literals["height"] // 8 * 8, literals["width"] // 8 * 8)
        return Estimate({"latent": size}, (costs.pixels(size, "an image", "width"), costs.batch(size, "batch")))


class LCMSampler(Node):
    """Few-step sampling with the LCM scheduler (an LCM checkpoint or any model + LCM-LoRA).

    guidance 1.0 disables CFG (one UNet pass per step, the negative is
    ignored); 1.0-2.0 is the useful range with an LCM-LoRA. LCM-distilled
    UNets with a guidance embedding take guidance through it instead of CFG.

    denoise < 1 (img2img) uses LCM's own strength semantics
    (LatentConsistencyModelImg2ImgPipeline): the skipping-step schedule is
    laid over the first ``denoise`` of the original_inference_steps grid and
    all ``steps`` steps still run, rather than cutting a 4-step schedule down
    to int(4 * denoise) steps.
    """

    category = "sampling"
    record_parameters = True
    inputs = (
        *_SAMPLER_INPUTS,
        Input("steps", T.INT, default=4, min=1, max=50),
        Input("guidance", T.FLOAT, default=1.0, min=0.0, max=30.0, step=0.1),
        Input("original_inference_steps", T.INT, default=50, min=1, max=1000),
        Input("denoise", T.FLOAT, default=1.0, min=0.0, max=1.0, step=0.01),
    )
    outputs = (Output("latent", T.LATENT),)
    #: Jobs batched together share one denoising loop: only these may differ (and the prompts).
    batch_inputs = ("seed", "guidance")

    @classmethod
    def check_inputs(cls, literals):
        steps, ois = literals.get("steps"), literals.get("original_inference_steps")
        denoise = literals.get("denoise")
        if None in (steps, ois, denoise):
            return []
        if int(ois * denoise) < steps:
            return [("steps", f"{steps} steps do not fit in original_inference_steps x denoise = {int(ois * denoise)}")]
        return []

    def execute(self, ctx, **inputs):
        return {"latent": Latent(sample(ctx, self.request(**inputs)))}

    def execute_batch(self, ctx, inputs_list):
        return _batched(ctx, [self.request(**inputs) for inputs in inputs_list])

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        return costs.sampler(literals, upstream)

    @staticmethod
    def request(model, positive, negative, latent, seed, steps, guidance, original_inference_steps, denoise):
        return SampleRequest(
            model, positive, negative, latent, seed, steps, guidance, scheduler="lcm", denoise=denoise,
            original_inference_steps=original_inference_steps, strength_mode="lcm",
        )


class Sampler(Node):
    """General sampler: LCM, Euler, Euler ancestral, DPM++ 2M (Karras), DDIM, TCD.

    denoise < 1 follows StableDiffusionImg2ImgPipeline: the ``steps``-step
    schedule is cut to its last int(steps * denoise) steps. start_step /
    end_step run part of the schedule for base -> refiner: a run that stops
    early returns the latent with its leftover noise, and a run that starts
    late (start_step > 0) takes such a latent and adds no noise.
    """

    category = "sampling"
    record_parameters = True
    inputs = (
        *_SAMPLER_INPUTS,
        Input("scheduler", T.ENUM, default="euler", choices=tuple(SCHEDULERS)),
        Input("steps", T.INT, default=20, min=1, max=1000),
        Input("cfg", T.FLOAT, default=7.0, min=0.0, max=30.0, step=0.1),
        Input("denoise", T.FLOAT, default=1.0, min=0.0, max=1.0, step=0.01),
        Input("start_step", T.INT, default=0, min=0, max=10000),
        Input("end_step", T.INT, default=10000, min=1, max=10000),
        Input("eta", T.FLOAT, default=0.0, min=0.0, max=1.0, step=0.01, description="stochasticity of ddim / tcd"),
    )
    outputs = (Output("latent", T.LATENT),)
    batch_inputs = ("seed", "cfg", "eta")

    @classmethod
    def check_inputs(cls, literals):
        start, end = literals.get("start_step"), literals.get("end_step")
        if start is not None and end is not None and start >= end:
            return [("start_step", f"start_step {start} must be below end_step {end}")]
        return []

    def execute(self, ctx, **inputs):
        return {"latent": Latent(sample(ctx, self.request(**inputs)))}

    def execute_batch(self, ctx, inputs_list):
        return _batched(ctx, [self.request(**inputs) for inputs in inputs_list])

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        return costs.sampler(literals, upstream)

    @staticmethod
    def request(model, positive, negative, latent, seed, scheduler, steps, cfg, denoise, start_step, end_step,
                eta):
        return SampleRequest(
            model, positive, negative, latent, seed, steps, cfg, scheduler=scheduler, denoise=denoise,
            start_step=start_step, end_step=end_step, eta=eta, strength_mode="truncate",
        )


def _batched(ctx, reqs: list[SampleRequest]) -> list[dict] | None:
    """The samplers' execute_batch: one loop for all, or None (run one by one)."""
    latents = sample_batch(ctx, reqs)
    return None if latents is None else [{"latent": Latent(x)} for x in latents]


NODES = [EmptyLatent, LCMSampler, Sampler]
