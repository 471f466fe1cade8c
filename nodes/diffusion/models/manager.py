"""The per-engine model manager (service ``diffusion.models``).

It loads each checkpoint / ControlNet once per engine, places it on the
engine's device in the matching dtype, evicts least-recently-used models
under a memory budget, and *realises* the LoRA patch lists carried by MODEL
and CLIP values onto the shared modules right before they run. Handles
(values.py) never hold weights, so an evicted model is simply reloaded the
next time a cached handle is used.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lcmgraph.allocator import loading

from . import fastpath
from .lora import LoraMismatch, drop_adapter, load_adapter, realise_adapters
from .lora_fuse import FusedLora, realise_fused, wanted_weights
from .merging import CannotMerge, ComponentView, Evaluator, MergeState, ldm_names
from .values import ClipRef, ControlNetRef, LoraPatch, ModelRef, UnetFile, VaeRef

log = logging.getLogger(__name__)

SERVICE = "diffusion.models"


class ModelLoadError(Exception):
    """A checkpoint or ControlNet that could not be loaded; says which and why."""


@dataclass
class LoadedCheckpoint:
    key: str
    path: str
    arch: str
    pipe: Any  # a diffusers SD / SDXL pipeline built from the checkpoint's components
    scheduler_config: dict
    nbytes: int
    #: adapter name -> components ("unet", "text_encoder", ...) it was injected into
    adapters: dict[str, set[str]] = field(default_factory=dict)
    #: adapter name -> last use (a counter), to unload the least recently used
    adapter_use: dict[str, int] = field(default_factory=dict)
    #: LoRA fused into the UNet's weights (fast path), per patch list
    fused: FusedLora = field(default_factory=FusedLora)
    #: sampler runs so far (compilation waits for ``compile_after`` of them)
    denoise_runs: int = 0
    compiled: bool = False
    #: merged weights written into a component ("unet", "text_encoder"...), reversibly
    merges: dict[str, MergeState] = field(default_factory=dict)
    #: the UNet patches (FreeU) hooked in now, and their hook handles
    patches: tuple = ()
    patch_handles: list = field(default_factory=list)
    #: the compiled UNet's call, set aside while patches are hooked in (a compiled graph
    #: does not see hooks added or removed after compilation)
    parked_compiled: Any = None
    #: a single file's memory map (LazyStateDict) whose pages weights that are views of it can
    #: hand back between uses (release_text); None for folders and converted weights
    mapped: Any = None

    @property
    def copies_bytes(self) -> int:
        """CPU memory held by the copies of original weights (merges, LoRA fusion)."""
        fused = sum(o.numel() * o.element_size() for _, o in self.fused.backups.values())
        return fused + sum(m.nbytes for m in self.merges.values())

    @property
    def unet(self):
        return self.pipe.unet

    @property
    def vae(self):
        return self.pipe.vae

    @property
    def scale_factor(self) -> int:
        """Image pixels per latent cell (8)."""
        return self.pipe.vae_scale_factor

    def text_encoders(self) -> dict[str, Any]:
        names = ("text_encoder", "text_encoder_2")
        return {n: getattr(self.pipe, n) for n in names if getattr(self.pipe, n, None) is not None}


@dataclass
class LoadedControlNet:
    key: str
    model: Any
    nbytes: int


@dataclass
class LoadedVae:
    """A VAE of its own (LoadVAE): it stands in for a checkpoint's VAE."""

    key: str
    path: str
    arch: str  # the latent format it serves: its scaling factor
    vae: Any
    nbytes: int

    @property
    def scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)


@dataclass
class LoadedUpscaler:
    """An upscale model (spandrel's descriptor) and the dtype it runs in."""

    key: str
    descriptor: Any
    dtype: Any
    nbytes: int


def pick_device(requested: str = "auto") -> str:
    import torch

    if requested and requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(device: str, requested: str | None = None):
    """fp16 on CUDA (what LCM checkpoints are used in); fp32 elsewhere (fastpath.resolve_dtype)."""
    return fastpath.resolve_dtype(device, requested)


def _module_bytes(*modules: Any) -> int:
    total = 0
    for module in modules:
        if module is None or not hasattr(module, "parameters"):
            continue
        total += sum(p.numel() * p.element_size() for p in module.parameters())
        total += sum(b.numel() * b.element_size() for b in module.buffers())
    return total


def _default_budget(device: str) -> int:
    import torch

    if device.startswith("cuda"):
        return int(torch.cuda.get_device_properties(torch.device(device)).total_memory * 0.8)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.5)
    except (ValueError, OSError, AttributeError):
        return 8 * 1024**3


class ModelManager:
    def __init__(self, runtime: Any):
        options = runtime.options
        self.device = pick_device(runtime.device)
        #: The fast-path switches (fastpath.py): dtype, LoRA fusion, compilation, ...
        self.fast = fastpath.resolve(options, self.device, runtime.home)
        self.dtype = self.fast.dtype
        self._compile_cache_ready = False
        self._compile_cache_path: Path | None = None
        self._artifacts_pending = False
        budget = options.get("model_memory_bytes")
        self.budget = int(budget) if budget is not None else _default_budget(self.device)
        #: LoRA adapters kept loaded per model; older unused ones are unloaded.
        self.max_adapters = int(options.get("max_lora_adapters", 16))
        #: Model-level CPU offload for small cards: weights live in CPU memory and
        #: only the stage that runs (text encoders, denoiser + ControlNets, or VAE)
        #: sits on the device. Peak device memory ~ the largest stage, not the sum.
        #: (On the CPU the moves are no-ops; the bookkeeping still runs, which is what the tests check.)
        self.offload = bool(options.get("offload", False))
        self.stages: dict[str, str] = {}  # checkpoint key -> stage on the device
        self._uses = 0
        self._entries: OrderedDict[str, LoadedCheckpoint | LoadedControlNet | LoadedVae | LoadedUpscaler] = OrderedDict()
        self._lock = threading.RLock()
        self.loads = 0  # how many times weights were read from disk (tests watch this)

    # -- bookkeeping ----------------------------------------------------------------
    @property
    def bytes_used(self) -> int:
        total = sum(e.nbytes for e in self._entries.values())
        if not self.device.startswith("cuda"):
            # The copies of original weights that merges and fused LoRAs keep live in
            # CPU memory: the budget's own memory unless the models are on a GPU.
            total += sum(getattr(e, "copies_bytes", 0) for e in self._entries.values())
        return total

    def loaded_keys(self) -> list[str]:
        return list(self._entries)

    def unload_all(self) -> int:
        """Drop every loaded model (ComfyUI's POST /free, through ``Runtime.free``);
        the next run loads what it needs again. How many were dropped."""
        with self._lock:
            count = len(self._entries)
            self._entries.clear()
            self.stages.clear()
            gc.collect()
            if self.device.startswith("cuda"):
                import torch

                torch.cuda.empty_cache()
            return count

    def _touch(self, key: str):
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def _trim(self, keep: set[str], incoming: int = 0) -> None:
        while self.bytes_used + incoming > self.budget:
            victim = next((k for k in self._entries if k not in keep), None)
            if victim is None:
                return  # everything left is in use: go over budget rather than fail
            log.info("evicting %s to stay under the model memory budget", victim)
            del self._entries[victim]
            gc.collect()
            if self.device.startswith("cuda"):
                import torch

                torch.cuda.empty_cache()

    # -- checkpoints ------------------------------------------------------------------
    def checkpoint(self, ref: ModelRef | ClipRef | VaeRef, ctx: Any = None, keep: set[str] = frozenset()) -> LoadedCheckpoint:
        if ref.arch == "svd":
            raise ModelLoadError(f"{Path(ref.checkpoint).name!r} is a Stable Video Diffusion model: it works with "
                                 "SVD_img2vid_Conditioning, VideoLinearCFGGuidance, the samplers and VAEDecode, "
                                 "not with image-model nodes")
        key = "ckpt:" + ref.identity
        with self._lock:
            entry = self._touch(key)
            if entry is not None:
                return entry
            self._trim(set(keep), incoming=_files_bytes(Path(ref.checkpoint)))
            if ctx is not None:
                ctx.progress(0, 2, stage="loading checkpoint")
            with loading():
                entry = self._load_checkpoint(key, ref.checkpoint)
            self._entries[key] = entry
            self._trim(set(keep) | {key})
            if ctx is not None:
                ctx.progress(2, 2, stage="loaded checkpoint")
            return entry

    def _load_checkpoint(self, key: str, path: str) -> LoadedCheckpoint:
        from ..formats.checkpoint_files import CheckpointError, load_checkpoint

        try:
            ckpt = load_checkpoint(path, torch_dtype=self.dtype, text_dtype=self.fast.text_torch_dtype)
        except CheckpointError as exc:
            raise ModelLoadError(str(exc)) from exc
        except Exception as exc:  # diffusers/safetensors errors are not sentences on their own
            raise ModelLoadError(f"could not load checkpoint {Path(path).name!r}: {type(exc).__name__}: {exc}") from exc
        pipe = _pipeline_from(ckpt)
        pipe.to("cpu" if self.offload else self.device)
        fastpath.prepare_pipeline(pipe, ckpt.arch, self.fast)
        self.loads += 1
        size = _module_bytes(pipe.unet, pipe.vae, pipe.text_encoder, getattr(pipe, "text_encoder_2", None))
        return LoadedCheckpoint(key, path, ckpt.arch, pipe, dict(ckpt.scheduler_config), size,
                                mapped=ckpt.extra.get("mapped"))

    # -- UNet-only files (LoadUNet) --------------------------------------------------------
    def denoiser(self, ref: ModelRef, ctx: Any = None, keep: set[str] = frozenset()) -> LoadedCheckpoint:
        """The entry whose UNet ``ref`` samples with: the checkpoint's, or (LoadUNet) one
        holding the replacement UNet with the checkpoint's scheduler config."""
        base = self.checkpoint(ref, ctx, keep)
        if ref.unet is None:
            return base
        key = f"unet:{ref.identity}:{ref.unet.identity}"
        with self._lock:
            entry = self._touch(key)
            if entry is not None:
                return entry
            self._trim(set(keep) | {base.key}, incoming=_files_bytes(Path(ref.unet.path)))
            if ctx is not None:
                ctx.progress(0, 1, stage="loading UNet")
            with loading():
                entry = self._load_unet(key, base, ref.unet)
            self._entries[key] = entry
            self._trim(set(keep) | {key, base.key})
            return entry

    def _load_unet(self, key: str, base: LoadedCheckpoint, unet: UnetFile) -> LoadedCheckpoint:
        from ..formats.unet_files import UnetFileError, load_unet_file

        try:
            model = load_unet_file(unet.path, base.unet.config, base.arch, self.dtype)
        except UnetFileError as exc:
            raise ModelLoadError(str(exc)) from exc
        except Exception as exc:
            raise ModelLoadError(f"could not load UNet {Path(unet.path).name!r}: {type(exc).__name__}: {exc}") from exc
        pipe = _unet_pipeline(base, model)
        pipe.unet.to("cpu" if self.offload else self.device)
        fastpath.prepare_unet(pipe.unet, self.fast)
        self.loads += 1
        return LoadedCheckpoint(key, unet.path, base.arch, pipe, dict(base.scheduler_config), _module_bytes(model))

    # -- ControlNets ---------------------------------------------------------------------
    def controlnet(self, ref: ControlNetRef, ctx: Any = None, keep: set[str] = frozenset()):
        key = "cn:" + ref.identity
        with self._lock:
            entry = self._touch(key)
            if entry is not None:
                return self._on_device(entry.model)
            self._trim(set(keep), incoming=_files_bytes(Path(ref.path)))
            if ctx is not None:
                ctx.progress(0, 1, stage="loading controlnet")
            from ..formats.controlnet_files import ControlNetFileError, load_controlnet_file

            try:
                with loading():
                    if Path(ref.path).is_file():
                        model = load_controlnet_file(ref.path, self.dtype)
                    else:
                        from diffusers import ControlNetModel

                        model = ControlNetModel.from_pretrained(ref.path, torch_dtype=self.dtype,
                                                                local_files_only=True)
            except ControlNetFileError as exc:  # already a sentence naming the file
                raise ModelLoadError(str(exc)) from exc
            except Exception as exc:
                raise ModelLoadError(f"could not load ControlNet {Path(ref.path).name!r}: {type(exc).__name__}: {exc}") from exc
            model.to("cpu" if self.offload else self.device).eval()
            self.loads += 1
            self._entries[key] = LoadedControlNet(key, model, _module_bytes(model))
            self._trim(set(keep) | {key})
            return self._on_device(model)

    # -- LoRA ---------------------------------------------------------------------------
    def ensure_lora(self, loaded: LoadedCheckpoint, patch: LoraPatch, protect: set[str] = frozenset()) -> set[str]:
        """Load ``patch``'s adapter into ``loaded`` (once); raises LoraMismatch if it
        does not fit. Adapters named in ``protect`` are in use and never unloaded."""
        with self._lock:
            name = patch.adapter_name
            if name not in loaded.adapters:
                loaded.fused.wrap()  # peft must see its wrapper layers to add or remove adapters
                self._unload_old_adapters(loaded, set(protect) | {name})
                loaded.adapters[name] = load_adapter(loaded.pipe, patch.path, name, loaded.arch)
            self._uses += 1
            loaded.adapter_use[name] = self._uses
            return loaded.adapters[name]

    def _unload_old_adapters(self, loaded: LoadedCheckpoint, protect: set[str]) -> None:
        while len(loaded.adapters) >= self.max_adapters:
            idle = [n for n in loaded.adapters if n not in protect]
            if not idle:
                return
            victim = min(idle, key=lambda n: loaded.adapter_use.get(n, 0))
            drop_adapter(loaded.pipe, victim)
            del loaded.adapters[victim]
            loaded.adapter_use.pop(victim, None)

    def _ensure_all(self, loaded: LoadedCheckpoint, patches) -> None:
        names = {p.adapter_name for p in patches}
        for patch in patches:
            self.ensure_lora(loaded, patch, protect=names)

    def realise_unet(self, ref: ModelRef, ctx: Any = None, keep: set[str] = frozenset()) -> LoadedCheckpoint:
        with self._lock:
            loaded = self.denoiser(ref, ctx, keep)
            self._realise_base(loaded, "unet", ref, ctx, keep)
            self._ensure_all(loaded, ref.loras)
            self._realise_unet_loras(loaded, ref.loras)
            self._realise_patches(loaded, ref.patches)
            self.activate(loaded, "denoise")
            self._maybe_compile(loaded, ctx)
            loaded.denoise_runs += 1
            return loaded

    def _realise_unet_loras(self, loaded: LoadedCheckpoint, patches) -> None:
        unet = loaded.unet
        fused = False
        if self.fast.fuse_lora:
            fused, changed = realise_fused(loaded.fused, unet, patches, loaded.adapters)
            if changed and self.fast.fused_qkv:
                fastpath.refresh_fused_projections(unet, changed)
        else:
            realise_adapters(unet, "unet", patches, loaded.adapters)
        if self.fast.fused_qkv:
            # Fused projections bypass peft's to_q/to_k/to_v: only with no live adapter there.
            live = not fused and bool(wanted_weights(patches, loaded.adapters))
            fastpath.set_attention(unet, self.fast.attention, fused=not live)

    # -- compilation ---------------------------------------------------------------------
    def _maybe_compile(self, loaded: LoadedCheckpoint, ctx: Any = None) -> None:
        fast = self.fast
        if loaded.compiled and self._artifacts_pending:
            # The compiled UNet (and decoder) ran once: their artifacts exist now.
            self._artifacts_pending = False
            fastpath.save_artifacts(self._compile_dir())
        if not fast.compiling or loaded.compiled or loaded.denoise_runs < fast.compile_after or loaded.patches:
            return  # (patched: compiled later, once a run has none; see _eager_while_patched)
        log.info("compiling %s with torch.compile(mode=%s); cache in %s", Path(loaded.path).name,
                 fast.compile, self._compile_dir())
        if ctx is not None:
            ctx.progress(0, 1, stage="compiling (the first time takes minutes; cached after)")
        cache = self._compile_dir()
        fastpath.compile_module(loaded.unet, fast, cache=cache)
        if fast.compile_vae:
            fastpath.compile_module(loaded.vae.decoder, fast, mode="default", cache=cache)
        loaded.compiled = True
        self._artifacts_pending = fast.compile_cache is not None

    def _compile_dir(self) -> Path | None:
        """The persistent compile cache, set up (folder, mega-cache) on first use."""
        if not self._compile_cache_ready:
            self._compile_cache_path = fastpath.configure_compile_cache(self.fast.compile_cache)
            self._compile_cache_ready = True
        return self._compile_cache_path

    def save_compile_cache(self) -> bool:
        """Write the portable compile cache (torch.compiler.save_cache_artifacts) to
        the cache folder, so the next process skips compilation; True if written."""
        if not any(getattr(e, "compiled", False) for e in self._entries.values()):
            return False
        return fastpath.save_artifacts(self._compile_dir())

    def fast_path_stats(self) -> dict:
        """Switches in effect plus LoRA-fusion counters per loaded checkpoint."""
        models = {}
        for key, entry in self._entries.items():
            if isinstance(entry, LoadedCheckpoint):
                f = entry.fused
                name = Path(entry.path).name
                models[name if name not in models else key] = {"fuse_builds": f.builds, "fuse_hits": f.hits, "fuse_restores": f.restores,
                               "fused": [list(s) for s in f.signature], "fallback": f.fallback,
                               "compiled": entry.compiled, "denoise_runs": entry.denoise_runs}
        return {"switches": self.fast.summary(), "models": models}

    def realise_text(self, ref: ClipRef, ctx: Any = None) -> LoadedCheckpoint:
        with self._lock:
            loaded = self.checkpoint(ref, ctx)
            for name in loaded.text_encoders():
                self._realise_base(loaded, name, ref, ctx)
            self._ensure_all(loaded, ref.loras)
            for name, encoder in loaded.text_encoders().items():
                realise_adapters(encoder, name, ref.loras, loaded.adapters)
            return self.activate(loaded, "text")

    def release_text(self, loaded: LoadedCheckpoint) -> int:
        """After a prompt is encoded on the CPU: hand the text encoders' weights that are
        views of the checkpoint's memory map back to the page cache (they fault in again,
        from memory, at the next prompt; a repeated prompt's encoding is cached and never
        touches them). They are a fifth of an SD1.5 file's pages in fp32, held otherwise
        through the 512² VAE decode where the peak is. Not while a merge is written into
        them (written pages of a private map would revert to the file's bytes; restored
        ones hold the file's bytes again, so those may go). Bytes released."""
        if loaded.mapped is None or any(state.dirty for name, state in loaded.merges.items()
                                        if name.startswith("text_encoder")):
            return 0
        with self._lock:
            tensors = [t for encoder in loaded.text_encoders().values()
                       for t in (*encoder.parameters(), *encoder.buffers())]
            return loaded.mapped.release(tensors)

    def _realise_patches(self, loaded: LoadedCheckpoint, patches: tuple) -> None:
        """Hook the value's UNet patches (FreeU, IP-Adapter) in, the previous value's out."""
        if loaded.patches == patches:
            return
        from .unet_patches import install

        for handle in loaded.patch_handles:
            handle.remove()
        loaded.patch_handles, loaded.patches = [], ()  # a patch that does not fit raises below: nothing stays hooked
        self._eager_while_patched(loaded, patches)
        loaded.patch_handles = install(loaded.unet, patches) if patches else []
        loaded.patches = patches

    @staticmethod
    def _eager_while_patched(loaded: LoadedCheckpoint, patches: tuple) -> None:
        """torch.compile guards no submodule hooks: a graph compiled before a patch was
        hooked in ignores it, and one compiled with it keeps it after removal. So the
        UNet runs eagerly while patches are in, and its compiled call comes back after."""
        unet = loaded.unet
        if patches and getattr(unet, "_compiled_call_impl", None) is not None:
            loaded.parked_compiled, unet._compiled_call_impl = unet._compiled_call_impl, None
        elif not patches and loaded.parked_compiled is not None:
            unet._compiled_call_impl, loaded.parked_compiled = loaded.parked_compiled, None

    # -- merged weights (merging.py) ----------------------------------------------------
    def _realise_base(self, loaded: LoadedCheckpoint, component: str, ref, ctx: Any = None,
                      keep: set[str] = frozenset()) -> None:
        """Write ``ref.base``'s merged weights into ``loaded``'s ``component`` (or put
        the checkpoint's own back), leaving the ref's LoRAs to the usual realisation."""
        state = loaded.merges.setdefault(component, MergeState())
        if state.signature == ref.base:
            return
        if component == "unet":
            # The LoRA fusion's copies hold the weights it fused over: the old base.
            loaded.fused.wrap()
            loaded.fused.restore()
            loaded.fused.backups.clear()
        state.restore()
        if ref.base is not None:
            evaluator = self._evaluator(component, ctx, set(keep) | {loaded.key})
            target = evaluator.view(ref)
            if ctx is not None:
                ctx.progress(0, 1, stage="merging weights")
            try:
                for key, weight in target.params.items():
                    value = evaluator.merged(ref.base, key)
                    if value is not None:
                        state.write(weight, value)
            except CannotMerge as exc:
                state.restore()
                raise ModelLoadError(str(exc)) from exc
            state.signature = ref.base
            state.builds += 1
            self._trim(set(keep) | {loaded.key})
        if component == "unet" and self.fast.fused_qkv:
            fastpath.refresh_fused_projections(loaded.unet)

    def _evaluator(self, component: str, ctx: Any, keep: set[str]) -> Evaluator:
        """Reads the effective weights of refs (merges, LoRAs) from original weights."""
        views: dict[str, ComponentView] = {}
        blocks: dict[str, str] = {}

        def view(ref) -> ComponentView:
            # a LoadUNet model merges with its replacement UNet, not the checkpoint's
            entry = self.denoiser(ref, ctx, keep) if component == "unet" else self.checkpoint(ref, ctx, keep)
            keep.add(entry.key)
            self._ensure_all(entry, ref.loras)
            if entry.key not in views:
                module = getattr(entry.pipe, component, None)
                if module is None:
                    raise ModelLoadError(f"{Path(entry.path).name!r} has no {component} to merge")
                views[entry.key] = ComponentView(module, entry.merges.setdefault(component, MergeState()),
                                                 entry.fused if component == "unet" else None)
                if component == "unet" and not blocks:
                    blocks.update(ldm_names(module))
            return views[entry.key]

        return Evaluator(view, blocks)

    def effective_weights(self, ref, component: str, ctx: Any = None) -> dict[str, Any]:
        """``component``'s weights as ``ref`` computes with them (merges and LoRAs
        folded in), by their plain names, in the model's dtype on the CPU."""
        with self._lock:
            evaluator = self._evaluator(component, ctx, set())
            target = evaluator.view(ref)
            out = {}
            for key, weight in target.params.items():
                value = evaluator.value(ref, key)
                out[key] = value.to(device="cpu", dtype=weight.dtype)
            module = getattr(self.checkpoint(ref, ctx).pipe, component)
            for name, buffer in module.named_buffers():
                if ".lora_" not in name:
                    out.setdefault(name.replace(".base_layer", ""), buffer.detach().cpu())
            return out

    def realise_vae(self, ref: VaeRef, ctx: Any = None) -> LoadedCheckpoint | LoadedVae:
        """The VAE a VAE value names, ready to run: its checkpoint's, or a VAE file's."""
        if ref.standalone:
            return self.activate(self.vae_file(ref.checkpoint, ref.identity, ref.latent_format, ctx), "vae")
        return self.activate(self.checkpoint(ref, ctx), "vae")

    # -- standalone files (VAE, upscale models) ---------------------------------------------
    def _standalone(self, key: str, path: str, stage: str, ctx: Any, build, incoming: int | None = None):
        """The entry under ``key``, or ``build()`` it once (under the memory budget, room made
        for ``incoming`` bytes or the file's size, reporting ``stage``); a load that fails is a
        ModelLoadError naming the file."""
        with self._lock:
            entry = self._touch(key)
            if entry is not None:
                return entry
            self._trim(set(), incoming=_files_bytes(Path(path)) if incoming is None else incoming)
            if ctx is not None:
                ctx.progress(0, 1, stage=stage)
            with loading():
                entry = build()
            self.loads += 1
            self._entries[key] = entry
            self._trim({key})
            return entry

    def standalone(self, key: str, path: str, stage: str, ctx: Any, build, incoming: int | None = None):
        """A model of another pack module (CLIP vision, IP-Adapter) held under ``key``
        like the manager's own: built once, counted in the budget, evicted when idle;
        ``incoming``: its size when it is a part of the file (SVD's image encoder)."""
        return self._standalone(key, path, stage, ctx, build, incoming)

    def vae_file(self, path: str, identity: str, latent_format: str = "auto", ctx: Any = None) -> LoadedVae:
        """A standalone VAE (file or folder), loaded once per engine and format."""
        key = f"vae:{latent_format}:{identity}"

        def build() -> LoadedVae:
            from ..formats.vae_files import VaeFileError, load_vae

            try:
                vae, arch = load_vae(path, self.dtype, latent_format)
            except VaeFileError as exc:
                raise ModelLoadError(str(exc)) from exc
            except Exception as exc:
                raise ModelLoadError(f"could not load VAE {Path(path).name!r}: {type(exc).__name__}: {exc}") from exc
            vae.to("cpu" if self.offload else self.device)
            fastpath.prepare_vae(vae, arch, self.fast)
            return LoadedVae(key, path, arch, vae, _module_bytes(vae))

        return self._standalone(key, path, "loading VAE", ctx, build)

    def upscaler(self, path: str, identity: str, ctx: Any = None) -> LoadedUpscaler:
        """An upscale model file, loaded once per engine, on the engine's device
        (fp16 on CUDA where the architecture supports it)."""
        key = "up:" + identity

        def build() -> LoadedUpscaler:
            import torch

            from ..formats.upscale_files import UpscaleFileError, load_upscale_model

            try:
                descriptor = load_upscale_model(path)
            except UpscaleFileError as exc:
                raise ModelLoadError(str(exc)) from exc
            dtype = torch.float16 if self.device.startswith("cuda") and descriptor.supports_half else torch.float32
            descriptor.model.to(device=self.device, dtype=dtype)
            return LoadedUpscaler(key, descriptor, dtype, _module_bytes(descriptor.model))

        return self._standalone(key, path, "loading upscale model", ctx, build)

    # -- offload ------------------------------------------------------------------------
    def activate(self, loaded, stage: str):
        """With offload on, put ``stage``'s modules of ``loaded`` on the device and
        everything else in CPU memory; without offload, nothing moves."""
        if not self.offload:
            return loaded
        with self._lock:
            for key, entry in self._entries.items():
                active = STAGES.get(stage, ()) if key == loaded.key else ()
                if isinstance(entry, LoadedControlNet):
                    if stage != "denoise":
                        entry.model.to("cpu")
                    continue
                if isinstance(entry, LoadedVae):
                    entry.vae.to(self.device if key == loaded.key else "cpu")
                    continue
                if isinstance(entry, LoadedUpscaler):
                    entry.descriptor.model.to(self.device if key == loaded.key else "cpu")
                    continue
                if getattr(entry, "stages", None) is not None and not isinstance(entry, LoadedCheckpoint):
                    for name, module in entry.model.items():  # a video model: its UNet or its VAE
                        wanted = key == loaded.key and name in entry.stages.get(stage, ())
                        module.to(self.device if wanted else "cpu")
                    continue
                if not isinstance(entry, LoadedCheckpoint):  # another module's model (CLIP vision, IP-Adapter)
                    module = getattr(entry, "model", None)
                    if module is not None:
                        module.to(self.device if key == loaded.key else "cpu")
                    continue
                for name in ("unet", "text_encoder", "text_encoder_2", "vae"):
                    module = getattr(entry.pipe, name, None)
                    if module is not None:
                        module.to(self.device if name in active else "cpu")
                self.stages[key] = stage if key == loaded.key else "cpu"
            if self.device.startswith("cuda"):
                import torch

                torch.cuda.empty_cache()
        return loaded

    def _on_device(self, model):
        # A ControlNet runs beside the denoiser: with offload it joins the device now.
        return model.to(self.device) if self.offload else model


#: Which pipeline modules each stage needs on the device.
STAGES = {"text": ("text_encoder", "text_encoder_2"), "denoise": ("unet",), "vae": ("vae",), "upscale": ()}


def _pipeline_from(ckpt: Any):
    """A diffusers pipeline around the checkpoint's components: it brings
    peft adapter loading and prompt encoding exactly as diffusers does them."""
    from diffusers import EulerDiscreteScheduler

    scheduler = EulerDiscreteScheduler.from_config(ckpt.scheduler_config)
    if ckpt.arch == "sdxl":
        from diffusers import StableDiffusionXLPipeline

        return StableDiffusionXLPipeline(
            vae=ckpt.vae, text_encoder=ckpt.text_encoder, text_encoder_2=ckpt.text_encoder_2,
            tokenizer=ckpt.tokenizer, tokenizer_2=ckpt.tokenizer_2, unet=ckpt.unet, scheduler=scheduler,
        )
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(
        vae=ckpt.vae, text_encoder=ckpt.text_encoder, tokenizer=ckpt.tokenizer, unet=ckpt.unet,
        scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def _unet_pipeline(base: LoadedCheckpoint, unet: Any):
    """A pipeline around a replacement UNet alone: LoRA loading and the guidance
    embedding work as with the checkpoint's, while its text encoders and VAE stay
    with the checkpoint's entry (CLIP and VAE values still point there)."""
    cls = type(base.pipe)
    kwargs = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    if base.arch == "sdxl":
        kwargs = {"text_encoder_2": None, "tokenizer_2": None}
    return cls(vae=None, text_encoder=None, tokenizer=None, unet=unet, scheduler=base.pipe.scheduler, **kwargs)


def _files_bytes(path: Path) -> int:
    """Rough size of weights on disk, to make room before a load."""
    try:
        if path.is_file():
            return path.stat().st_size
        return sum(p.stat().st_size for p in path.rglob("*.safetensors"))
    except OSError:
        return 0


def factory(runtime: Any) -> ModelManager:
    return ModelManager(runtime)


__all__ = ["LoraMismatch", "ModelLoadError", "ModelManager", "SERVICE", "factory"]
