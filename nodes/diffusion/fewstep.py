"""FewStepSampler: the Sampler set up as a few-step family's authors prescribe."""

from __future__ import annotations

from lcmgraph import Input, Node, Output
from lcmgraph import types as T

from .models import costs
from .models.presets import PRESETS, problems
from .models.sampling import sample
from .samplers import _SAMPLER_INPUTS, Sampler, _batched, sampled


class FewStepSampler(Node):
    """Sample the way a few-step family's model card says, without knowing the recipe.

    Pick the family of the checkpoint or LoRA (lcm, tcd, hyper-sd,
    hyper-sd-unet, lightning, pcm, dmd2, turbo) and the step count it was made
    for (0: the card's); the preset sets the sampler, schedule, custom
    timesteps, prediction type, cfg (1: no CFG, the cards' guidance_scale=0)
    and eta. The README's "few-step families" table lists every setting and
    its source. For other settings use Sampler with the same values.
    """

    category = "sampling"
    version = 2
    record_parameters = True
    inputs = (
        *_SAMPLER_INPUTS,
        Input("preset", T.ENUM, default="lcm", choices=tuple(PRESETS), description="the few-step family"),
        Input("steps", T.INT, default=0, min=0, max=16,
              description="the step count the checkpoint or LoRA was made for; 0: the model card's"),
        Input("denoise", T.FLOAT, default=1.0, min=0.0, max=1.0, step=0.01),
    )
    outputs = (Output("latent", T.LATENT),)
    batch_inputs = ("seed",)

    @classmethod
    def check_inputs(cls, literals):
        name, steps = literals.get("preset"), literals.get("steps")
        if name not in PRESETS or not isinstance(steps, int):
            return []
        steps = steps or PRESETS[name].default_steps
        out = [("steps", p) for p in problems(name, steps)]
        if not out:
            settings = settings_for(name, steps, literals.get("denoise", 1.0))
            out += [("preset", f"preset {name}: {msg}") for _, msg in Sampler.check_inputs(settings)]
        return out

    def execute(self, ctx, **inputs):
        req = self.request(**inputs)
        return {"latent": sampled(req, sample(ctx, req))}

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        preset = PRESETS.get(literals.get("preset"))
        if preset is None:
            return None
        steps = literals.get("steps") or preset.default_steps
        return costs.sampler({**settings_for(literals["preset"], steps), "steps": steps}, upstream)

    def execute_batch(self, ctx, inputs_list):
        return _batched(ctx, [self.request(**inputs) for inputs in inputs_list])

    @staticmethod
    def request(model, positive, negative, latent, seed, preset, steps, denoise):
        settings = settings_for(preset, steps or PRESETS[preset].default_steps, denoise)
        return Sampler.request(model, positive, negative, latent, seed, **settings)


def settings_for(name: str, steps: int, denoise: float = 1.0) -> dict:
    """The Sampler inputs of preset ``name`` at ``steps`` steps."""
    recipe = PRESETS[name].at(steps)
    return dict(scheduler=recipe.scheduler, steps=steps, cfg=recipe.cfg, denoise=denoise, start_step=0,
                end_step=10000, eta=recipe.eta, schedule=recipe.schedule, timesteps=recipe.timesteps, sigmas="",
                prediction=recipe.prediction, original_inference_steps=50)


NODES = [FewStepSampler]
