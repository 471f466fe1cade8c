"""Files on disk: checkpoints (diffusers folders, single ``.safetensors`` files,
hub ids), ControlNets, image files, and the configs and tokenizer table that
make single files load offline (``configs/``)."""
