"""Stable Video Diffusion, as ComfyUI's video-model nodes (comfy_extras/nodes_video_model.py):
ImageOnlyCheckpointLoader, SVD_img2vid_Conditioning and VideoLinearCFGGuidance.
The samplers and VAEDecode take the MODEL / VAE these give (models/svd.py)."""

from __future__ import annotations

from dataclasses import replace

from lcmgraph import Input, Node, Output
from lcmgraph import types as T
from lcmgraph.budget import Estimate

from .ipadapter import CLIP_VISION
from .models import costs, svd
from .models.ipadapter_embeds import load_clip_vision
from .models.manager import SERVICE
from .models.values import ClipVisionRef, ModelRef, VaeRef

_MAX_SIDE = 16384  # ComfyUI's MAX_RESOLUTION


class ImageOnlyCheckpointLoader(Node):
    """Load a Stable Video Diffusion checkpoint (svd.safetensors, svd_xt.safetensors, or
    builtin:tiny-svd): its video UNet, its CLIP image encoder and its temporal VAE."""

    category = "loaders"
    record_parameters = True
    inputs = (Input("ckpt_name", T.STRING, folder="checkpoints",
                    description="an SVD .safetensors in checkpoints/ (Stability's single file), or builtin:tiny-svd"),)
    outputs = (Output("model", T.MODEL), Output("clip_vision", CLIP_VISION), Output("vae", T.VAE))
    batch_inputs = ()

    def execute(self, ctx, ckpt_name):
        path = str(ctx.resolve_file("checkpoints", ckpt_name))
        identity = ctx.file_identity("checkpoints", ckpt_name)
        svd.load(ctx.service(SERVICE), path, identity, ctx)  # a file that is not SVD fails here
        model, clip_vision, vae = svd.refs(path, identity)
        return {"model": model, "clip_vision": clip_vision, "vae": vae}


class SVDImg2VidConditioning(Node):
    """The conditioning of an image-to-video run: ``init_image``'s CLIP embedding and
    VAE latent (resized to width x height, centre-cropped), the motion and frame-rate
    settings SVD was trained with, and an empty latent of ``video_frames`` frames."""

    category = "conditioning/video_models"
    record_parameters = True
    inputs = (
        Input("clip_vision", CLIP_VISION),
        Input("init_image", T.IMAGE),
        Input("vae", T.VAE),
        Input("width", T.INT, default=1024, min=16, max=_MAX_SIDE, step=8),
        Input("height", T.INT, default=576, min=16, max=_MAX_SIDE, step=8),
        Input("video_frames", T.INT, default=14, min=1, max=4096),
        Input("motion_bucket_id", T.INT, default=127, min=1, max=1023,
              description="how much motion (SVD's training buckets; higher moves more)"),
        Input("fps", T.INT, default=6, min=1, max=1024, description="the frame rate the model is told (SVD: fps - 1)"),
        Input("augmentation_level", T.FLOAT, default=0.0, min=0.0, max=10.0, step=0.01,
              description="noise added to the init image before encoding (less like it, more motion)"),
    )
    outputs = (Output("positive", T.CONDITIONING), Output("negative", T.CONDITIONING), Output("latent", T.LATENT))

    def execute(self, ctx, clip_vision: ClipVisionRef, init_image, vae: VaeRef, width, height, video_frames,
                motion_bucket_id, fps, augmentation_level):
        if vae.arch != svd.ARCH:
            raise ValueError("vae must be a Stable Video Diffusion checkpoint's (ImageOnlyCheckpointLoader): "
                             "the UNet reads the init image through its encoder")
        manager = ctx.service(SERVICE)
        encoder = load_clip_vision(manager, clip_vision.path, clip_vision.identity, ctx)
        manager.activate(encoder, "encode")

        def encode_vae(pixels):
            loaded = manager.activate(svd.load(manager, vae.checkpoint, vae.identity, ctx), "vae")
            return svd.encode_latent(loaded.vae, pixels)

        positive, negative, latent = svd.conditioning(encoder.model, encode_vae, init_image, width, height,
                                                      video_frames, motion_bucket_id, fps, augmentation_level)
        return {"positive": positive, "negative": negative, "latent": latent}

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        """The video's frames are the latent's batch: a server's pixel and batch limits see them."""
        size = costs.Size(literals["video_frames"], literals["height"] // 8 * 8, literals["width"] // 8 * 8)
        return Estimate({"latent": size}, (costs.pixels(size, "a frame", "width"),
                                           costs.batch(size, "video_frames")))


class VideoLinearCFGGuidance(Node):
    """Guidance that grows over the frames: ``min_cfg`` on the first, the sampler's cfg
    on the last, linearly between (frames far from the init image get more)."""

    category = "sampling/video_models"
    inputs = (Input("model", T.MODEL),
              Input("min_cfg", T.FLOAT, default=1.0, min=0.0, max=100.0, step=0.5, description="the first frame's cfg"))
    outputs = (Output("model", T.MODEL),)

    def execute(self, ctx, model: ModelRef, min_cfg):
        if model.arch != svd.ARCH:
            raise ValueError("VideoLinearCFGGuidance varies cfg over a video's frames: model must be a Stable Video "
                             "Diffusion model (ImageOnlyCheckpointLoader)")
        kept = tuple(p for p in model.patches if p[0] != "video_linear_cfg")
        return {"model": replace(model, patches=(*kept, ("video_linear_cfg", float(min_cfg))))}


NODES = [ImageOnlyCheckpointLoader, SVDImg2VidConditioning, VideoLinearCFGGuidance]
