"""ComfyUI's video-model classes (comfy_extras/nodes_video_model.py) and its animated
savers (comfy_extras/nodes_images.py), one to one."""

from __future__ import annotations

from lcmgraph.comfy import ComfyMapping

_CONDITIONING_WIDGETS = ("width", "height", "video_frames", "motion_bucket_id", "fps", "augmentation_level")

VIDEO: dict[str, ComfyMapping] = {
    "ImageOnlyCheckpointLoader": ComfyMapping(
        "ImageOnlyCheckpointLoader", {"ckpt_name": "ckpt_name"}, ("model", "clip_vision", "vae"), ("ckpt_name",),
        title="Image Only Checkpoint Loader (img2vid model)", export=True),
    "SVD_img2vid_Conditioning": ComfyMapping(
        "SVDImg2VidConditioning",
        {"clip_vision": "clip_vision", "init_image": "init_image", "vae": "vae",
         **{w: w for w in _CONDITIONING_WIDGETS}},
        ("positive", "negative", "latent"), _CONDITIONING_WIDGETS, title="SVD_img2vid_Conditioning", export=True),
    "VideoLinearCFGGuidance": ComfyMapping(
        "VideoLinearCFGGuidance", {"model": "model", "min_cfg": "min_cfg"}, ("model",), ("min_cfg",),
        title="VideoLinearCFGGuidance", export=True),
    "SaveAnimatedWEBP": ComfyMapping(
        "SaveAnimatedWEBP", {"images": "image", "filename_prefix": "filename_prefix", "fps": "fps",
                             "lossless": "lossless", "quality": "quality", "method": "method"},
        (), ("filename_prefix", "fps", "lossless", "quality", "method"), title="SaveAnimatedWEBP", export=True),
    "SaveAnimatedPNG": ComfyMapping(
        "SaveAnimatedPNG", {"images": "image", "filename_prefix": "filename_prefix", "fps": "fps",
                            "compress_level": "compress_level"},
        (), ("filename_prefix", "fps", "compress_level"), title="SaveAnimatedPNG", export=True),
}
