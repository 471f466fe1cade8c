"""``lcmgraph train seed --run DIR``: start a run from the shipped VAE (its encoder
and fine-tuned decoder) and evaluator, so a UNet can be retrained from scratch
(``train unet``) without the VAE and evaluator stages (~1 h on a CPU). The cached
latents then match the shipped model's, whose encoder the decoder fine-tune froze."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path


def seed_from_shipped(run: Path, builtin: Path) -> Path:
    """Write ``run/vae.pt`` (a finished VAE stage) and ``run/evaluator.pt`` from ``builtin``."""
    import torch
    from safetensors.torch import load_file

    from . import vae as V
    from .common import load_state, save_state

    run = Path(run)
    if load_state(run / "vae.pt") is not None:
        raise FileExistsError(f"{run / 'vae.pt'} exists: seed a new run folder")
    cfg, tc = V.VaeConfig(), V.VaeTrain()
    model = V.make_vae(cfg)
    model.load_state_dict(load_file(str(builtin / "tiny-shapes" / "vae" / "diffusion_pytorch_model.safetensors")))
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr)
    save_state(run / "vae.pt", dict(config=asdict(cfg), train=asdict(tc), model=model.state_dict(),
                                    optimizer=optimizer.state_dict(), step=tc.steps,
                                    generator=torch.Generator().manual_seed(tc.seed).get_state()))
    from .evaluator import EvalTrain, _net

    et = EvalTrain()
    judge = _net()
    judge.load_state_dict(load_file(str(builtin / "tiny-shapes-evaluator.safetensors")))
    judge_optimizer = torch.optim.AdamW(judge.parameters(), lr=et.lr, weight_decay=1e-4)
    save_state(run / "evaluator.pt", dict(model=judge.state_dict(), optimizer=judge_optimizer.state_dict(),
                                          generator=torch.Generator().manual_seed(et.seed).get_state(),
                                          step=et.steps))  # a finished stage: `train all` skips it
    return run
