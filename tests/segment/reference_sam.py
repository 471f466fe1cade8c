"""Meta's original Segment Anything model (the ``segment-anything`` package), built
tiny. Its package ``__init__`` imports the predictor, which needs torchvision
(absent beside torch's CPU wheel); the model code does not, so the modeling
package is imported from the installed files without running that ``__init__``."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from functools import partial
from pathlib import Path


def modeling():
    if "segment_anything.modeling" not in sys.modules:
        spec = importlib.util.find_spec("segment_anything")
        package = types.ModuleType("segment_anything")
        package.__path__ = [str(Path(spec.origin).parent)]
        sys.modules.setdefault("segment_anything", package)
    return importlib.import_module("segment_anything.modeling")


def tiny_sam(seed: int = 0):
    """A SAM with ViT-B's structure at toy sizes: 2 blocks (the second global), width 32,
    64-pixel input in 8-pixel patches, decoder width 16; random weights from ``seed``."""
    import torch

    m = modeling()
    torch.manual_seed(seed)
    encoder = m.ImageEncoderViT(depth=2, embed_dim=32, img_size=64, mlp_ratio=4,
                                norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=2, patch_size=8,
                                qkv_bias=True, use_rel_pos=True, global_attn_indexes=[1], window_size=4, out_chans=16)
    prompt = m.PromptEncoder(embed_dim=16, image_embedding_size=(8, 8), input_image_size=(64, 64), mask_in_chans=16)
    decoder = m.MaskDecoder(num_multimask_outputs=3, transformer_dim=16, iou_head_depth=3, iou_head_hidden_dim=16,
                            transformer=m.TwoWayTransformer(depth=2, embedding_dim=16, mlp_dim=32, num_heads=8))
    sam = m.Sam(image_encoder=encoder, prompt_encoder=prompt, mask_decoder=decoder,
                pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375])
    with torch.no_grad():  # rel-pos tables start at zero in the original; random ones test their mapping
        for name, p in sam.named_parameters():
            if "rel_pos" in name:
                p.copy_(torch.randn_like(p) * 0.5)
    return sam.eval()
