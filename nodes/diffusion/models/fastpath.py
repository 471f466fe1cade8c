"""The GPU fast path: switches the model manager applies to loaded models.

Every switch is an engine option (``EngineConfig.options``; the CLIs' flags set
them) and each ``"auto"`` resolves per device: on the CPU in fp32 everything
stays off, so that path is exactly the plain diffusers computation (the parity
tests hold it to that); on CUDA the defaults are the ones that pay off there.

==============  =================================  ==========================================
option          values                             auto
==============  =================================  ==========================================
dtype           auto fp16 bf16 fp32                fp16 on CUDA, bf16 on a CPU with native
                                                   bf16 (models/cpu.py), fp32 elsewhere
channels_last   auto on off                        on when the UNet is compiled, and for
                                                   bf16 on the CPU
fused_qkv       auto on off                        on when the UNet is compiled
attention       sdpa flash efficient cudnn math    sdpa (torch picks the kernel)
fuse_lora       auto on off                        on on CUDA
compile         auto off default reduce-overhead   reduce-overhead on CUDA, off elsewhere
                max-autotune ...
compile_after   N (images run eagerly first)       1: a one-image run never compiles
compile_vae     auto on off                        with the UNet
compile_cache   DIR or off                         <engine home>/compile
vae_dtype       auto model fp32 bf16 fp16          an fp16 SDXL VAE that needs upcasting
                                                   is kept in bf16 (fp32 without bf16)
==============  =================================  ==========================================

LoRA fusion lives in lora_fuse.py; this module resolves the options and
applies the per-model switches (dtype of the VAE, memory format, fused
projections, attention kernels, compilation and its on-disk cache).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cpu import native_bf16

log = logging.getLogger(__name__)

DTYPES = {"fp16": "float16", "float16": "float16", "half": "float16", "bf16": "bfloat16",
          "bfloat16": "bfloat16", "fp32": "float32", "float32": "float32", "float": "float32"}
ATTENTION = ("sdpa", "flash", "efficient", "cudnn", "math")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
#: Modes that capture CUDA graphs: they need the weights to stay where they are.
_CUDAGRAPH_MODES = ("reduce-overhead", "max-autotune")
_ON = (True, "on", "true", "yes", "1", 1)
_OFF = (False, "off", "false", "no", "0", 0, None)


class FastPathOptionError(ValueError):
    """An engine option with a value the fast path does not know; says which."""


@dataclass(frozen=True)
class FastPath:
    """The resolved switches (no ``auto`` left)."""

    device: str
    dtype: Any  # torch.dtype of the models
    channels_last: bool = False
    fused_qkv: bool = False
    attention: str = "sdpa"
    fuse_lora: bool = False
    compile: str = "off"  # "off" or a torch.compile mode
    compile_after: int = 1
    compile_vae: bool = False
    compile_backend: str = "inductor"
    compile_fullgraph: bool = False
    compile_cache: Path | None = None
    vae_dtype: str = "model"  # "model" or a DTYPES value
    text_dtype: str = "model"  # "model" or a DTYPES value: the text encoders'

    @property
    def text_torch_dtype(self):
        """The text encoders' torch dtype (the models' unless text_dtype names one)."""
        import torch

        return self.dtype if self.text_dtype == "model" else getattr(torch, self.text_dtype)

    @property
    def compiling(self) -> bool:
        return self.compile != "off"

    def summary(self) -> dict:
        """The switches as plain values (logs and the benchmark's JSON lines)."""
        return {
            "device": self.device, "dtype": str(self.dtype).removeprefix("torch."),
            "channels_last": self.channels_last, "fused_qkv": self.fused_qkv,
            "attention": self.attention, "fuse_lora": self.fuse_lora, "compile": self.compile,
            "compile_after": self.compile_after, "compile_vae": self.compile_vae,
            "compile_cache": str(self.compile_cache) if self.compile_cache else None,
            "vae_dtype": self.vae_dtype, "text_dtype": self.text_dtype,
        }


def _switch(options: Mapping, name: str, auto: bool) -> bool:
    value = options.get(name, "auto")
    if isinstance(value, str):
        value = value.lower()
    if value == "auto":
        return auto
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise FastPathOptionError(f"option {name}={value!r}: use auto, on or off")


def _choice(options: Mapping, name: str, allowed, default: str) -> str:
    value = str(options.get(name) or default).lower()
    if value not in allowed:
        raise FastPathOptionError(f"option {name}={value!r}: use one of {', '.join(allowed)}")
    return value


def resolve_dtype(device: str, requested: str | None = None):
    """auto: fp16 on CUDA (what LCM checkpoints are used in); bf16 on a CPU with
    native bf16 arithmetic (models/cpu.py: about twice fp32's speed there, fp32's
    range); fp32 elsewhere, since CPU fp16 is slow and MPS fp16 is known to
    produce NaNs in some VAEs."""
    import torch

    if requested and str(requested).lower() != "auto":
        name = DTYPES.get(str(requested).lower())
        if name is None:
            raise FastPathOptionError(f"option dtype={requested!r}: use auto, fp16, bf16 or fp32")
        return getattr(torch, name)
    if device.startswith("cuda"):
        return torch.float16
    if device == "cpu" and native_bf16():
        return torch.bfloat16
    return torch.float32


def resolve(options: Mapping | None, device: str, home: str | Path | None = None) -> FastPath:
    """Turn engine options into switches for ``device``."""
    import torch

    options = options or {}
    cuda = device.startswith("cuda")
    offload = bool(options.get("offload", False))
    dtype = resolve_dtype(device, options.get("dtype"))

    mode = str(options.get("compile", "auto") or "off").lower()
    if mode in ("on", "true", "1"):
        mode = "reduce-overhead" if cuda else "default"
    if mode in ("false", "0", "none"):
        mode = "off"
    if mode == "auto":
        # Offload moves the weights every image: captured CUDA graphs would be re-recorded.
        mode = ("default" if offload else "reduce-overhead") if cuda else "off"
    if mode != "off" and mode not in COMPILE_MODES:
        raise FastPathOptionError(f"option compile={mode!r}: use auto, off or one of {', '.join(COMPILE_MODES)}")
    if offload and mode in _CUDAGRAPH_MODES:
        log.warning("compile=%s captures CUDA graphs, which offload's moves would invalidate; "
                    "using mode 'default'", mode)
        mode = "default"
    compiling = mode != "off"

    cache = options.get("compile_cache", "auto")
    if cache in (None, "", "auto"):
        from lcmgraph.runtime import default_home

        cache = Path(home if home is not None else default_home()).expanduser() / "compile"
    elif str(cache).lower() == "off":
        cache = None
    else:
        cache = Path(cache).expanduser()

    vae_dtype = _choice(options, "vae_dtype", ("auto", "model", *DTYPES), "auto")
    vae_dtype = DTYPES.get(vae_dtype, vae_dtype)
    text_dtype = _choice(options, "text_dtype", ("auto", "model", *DTYPES), "auto")
    text_dtype = DTYPES.get(text_dtype, text_dtype)
    if text_dtype == "auto":
        # bf16 text encoders cost the embedded model's quality table more than bf16
        # UNets (bench/quality_dtype.py, README); they run once per prompt (cached), so
        # fp32 costs little time. fp16 on CUDA stays as LCM checkpoints are used.
        text_dtype = "float32" if dtype == torch.bfloat16 and not cuda else "model"
    try:
        after = int(options.get("compile_after", 1))
    except (TypeError, ValueError) as exc:
        raise FastPathOptionError(f"option compile_after={options.get('compile_after')!r}: "
                                  "use a whole number") from exc
    return FastPath(
        device=device,
        dtype=dtype,
        # bf16 on a CPU: oneDNN's convolutions run channels_last without reordering activations
        # (UNet -13%, VAE decode -18% on the bench's SD1.5; docs/decisions.md). fp32 on the CPU
        # stays as diffusers runs it: bitwise parity.
        channels_last=_switch(options, "channels_last", compiling or (device == "cpu" and dtype == torch.bfloat16)),
        fused_qkv=_switch(options, "fused_qkv", compiling),
        attention=_choice(options, "attention", ATTENTION, "sdpa"),
        fuse_lora=_switch(options, "fuse_lora", cuda),
        compile=mode,
        compile_after=max(0, after),
        compile_vae=_switch(options, "compile_vae", compiling) and compiling,
        compile_backend=str(options.get("compile_backend", "inductor")),
        compile_fullgraph=_switch(options, "compile_fullgraph", False),
        compile_cache=cache if compiling else None,
        vae_dtype=vae_dtype,
        text_dtype=text_dtype,
    )


# -- per-model switches ------------------------------------------------------------------
def vae_dtype_for(fast: FastPath, vae: Any, arch: str):
    """The dtype to keep ``vae`` in, or None to leave it in the model dtype.

    SDXL's VAE overflows in fp16 (its config says ``force_upcast``). diffusers
    (and vae_codec.py) then convert it to fp32 for every call and back; keeping it
    resident in bf16 (fp32's range) or fp32 avoids both the overflow and the
    per-call conversion."""
    import torch

    if fast.vae_dtype == "model":
        return None
    if fast.vae_dtype != "auto":
        return getattr(torch, fast.vae_dtype)
    needs_upcast = arch == "sdxl" and bool(vae.config.get("force_upcast", False))
    if fast.dtype != torch.float16 or not needs_upcast:
        return None
    if fast.device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def prepare_pipeline(pipe: Any, arch: str, fast: FastPath) -> None:
    """Apply the load-time switches to a freshly loaded pipeline (in place)."""

    prepare_vae(pipe.vae, arch, fast)
    _prepare_module(pipe.unet, fast)


def prepare_vae(vae: Any, arch: str, fast: FastPath) -> None:
    """The load-time switches for a VAE (a checkpoint's, or a VAE file's)."""
    vae_dtype = vae_dtype_for(fast, vae, arch)
    if vae_dtype is not None and vae_dtype != vae.dtype:
        vae.to(dtype=vae_dtype)
    _prepare_module(vae, fast)


def _prepare_module(module: Any, fast: FastPath) -> None:
    import torch

    if fast.channels_last:
        module.to(memory_format=torch.channels_last)
    if fast.fused_qkv:
        module.fuse_qkv_projections()
    set_attention(module, fast.attention, fused=fast.fused_qkv)


def prepare_unet(unet: Any, fast: FastPath) -> None:
    """The load-time switches for a UNet loaded on its own (LoadUNet)."""
    import torch

    if fast.channels_last:
        unet.to(memory_format=torch.channels_last)
    if fast.fused_qkv:
        unet.fuse_qkv_projections()
    set_attention(unet, fast.attention, fused=fast.fused_qkv)


# -- attention processors --------------------------------------------------------------
class KernelChoice:
    """An attention processor that runs its inner processor with only the
    chosen scaled-dot-product kernels allowed (``torch.nn.attention.sdpa_kernel``)."""

    def __init__(self, inner: Any, kernel: str):
        self.inner = inner
        self.kernel = kernel

    def backends(self):
        from torch.nn.attention import SDPBackend

        return {"flash": [SDPBackend.FLASH_ATTENTION], "efficient": [SDPBackend.EFFICIENT_ATTENTION],
                "cudnn": [SDPBackend.CUDNN_ATTENTION], "math": [SDPBackend.MATH]}[self.kernel]

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                 temb=None, *args, **kwargs):
        from torch.nn.attention import sdpa_kernel

        with sdpa_kernel(self.backends()):
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb,
                              *args, **kwargs)


def _attention_modules(module: Any):
    from diffusers.models.attention_processor import Attention

    return [m for m in module.modules() if isinstance(m, Attention)]


def set_attention(module: Any, kernel: str, fused: bool) -> None:
    """Give every attention layer of ``module`` its processor: diffusers' SDPA
    processor (fused projections when ``fused`` and the layer has them),
    wrapped to pin the kernel unless ``kernel`` is ``sdpa``."""
    from diffusers.models.attention_processor import AttnProcessor2_0, FusedAttnProcessor2_0

    for attn in _attention_modules(module):
        current = attn.processor.inner if isinstance(attn.processor, KernelChoice) else attn.processor
        if not isinstance(current, (AttnProcessor2_0, FusedAttnProcessor2_0)):
            continue  # a processor someone chose on purpose (IP-adapter, ...): leave it
        use_fused = fused and getattr(attn, "fused_projections", False)
        wanted = FusedAttnProcessor2_0 if use_fused else AttnProcessor2_0
        if type(current) is wanted and (
            kernel == "sdpa" and attn.processor is current
            or getattr(attn.processor, "kernel", None) == kernel
        ):
            continue  # already as asked: keep the object (compiled graphs guard on it)
        inner = current if type(current) is wanted else wanted()
        attn.set_processor(inner if kernel == "sdpa" else KernelChoice(inner, kernel))


def qkv_fused_now(module: Any) -> bool:
    """Whether any attention layer of ``module`` currently runs fused projections."""
    from diffusers.models.attention_processor import FusedAttnProcessor2_0

    for attn in _attention_modules(module):
        processor = attn.processor.inner if isinstance(attn.processor, KernelChoice) else attn.processor
        if isinstance(processor, FusedAttnProcessor2_0):
            return True
    return False


def refresh_fused_projections(module: Any, changed: set[int] | None = None) -> int:
    """Copy the current q/k/v weights into the fused ``to_qkv`` / ``to_kv``
    layers (after LoRA fusion changed or restored them). ``changed``: ids of
    the weight tensors that changed (None: all). Returns how many were refreshed."""
    import torch

    count = 0
    with torch.no_grad():
        for attn in _attention_modules(module):
            if not getattr(attn, "fused_projections", False):
                continue
            parts = [attn.to_k, attn.to_v]
            target = getattr(attn, "to_kv", None)
            if not attn.is_cross_attention:
                parts, target = [attn.to_q, *parts], getattr(attn, "to_qkv", None)
            if target is None:
                continue
            weights = [p.weight for p in parts]
            if changed is not None and not any(id(w) in changed for w in weights):
                continue
            target.weight.copy_(torch.cat([w.detach() for w in weights]))
            if getattr(target, "bias", None) is not None:
                target.bias.copy_(torch.cat([p.bias.detach() for p in parts]))
            count += 1
    return count


# -- compilation -------------------------------------------------------------------------
ARTIFACTS = "lcmgraph-mega-cache.bin"


def configure_compile_cache(directory: Path | None) -> Path | None:
    """The folder for Inductor's persistent caches (FX graphs, AOTAutograd,
    autotuning, Triton kernels): created, and the mega-cache saved there
    loaded. A folder the user chose through TORCHINDUCTOR_CACHE_DIR wins.
    Returns the folder in effect; the process's settings are left alone
    (``compile_env`` applies them around our own compiles only)."""
    if directory is None:
        return None
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if current and os.path.abspath(current) != os.path.abspath(default_cache_dir()):
        directory = Path(current)  # the user's own choice
    directory.mkdir(parents=True, exist_ok=True)
    with compile_env(directory):  # loading writes the artifacts into the cache folders
        load_artifacts(directory)
    return directory


@contextlib.contextmanager
def compile_env(directory: Path | None):
    """Inductor's cache settings for this block only, put back after.

    Inductor and Triton take their cache folders from environment variables
    (torch has no other setting for them) and read them when they compile,
    which happens lazily: on a compiled module's first call at a new shape,
    not in ``module.compile()``. Set for the whole process, they would
    redirect every other torch.compile user in it (another engine with its own
    cache, the application hosting lcmgraph) and outlive the engine; so they
    are set around our compiled modules' calls and the cache load only, and
    the cache switches go through torch's config API (``config.patch``, which
    restores too). A TRITON_CACHE_DIR already set (by the user) is kept.
    Nothing happens when ``directory`` is None."""
    if directory is None:
        yield
        return
    import torch._inductor.config as inductor_config

    wanted = {"TORCHINDUCTOR_CACHE_DIR": str(directory)}
    if not os.environ.get("TRITON_CACHE_DIR"):
        wanted["TRITON_CACHE_DIR"] = str(directory / "triton")
    saved = {name: os.environ.get(name) for name in wanted}
    switches = {k: True for k in ("fx_graph_cache", "autotune_local_cache") if hasattr(inductor_config, k)}
    os.environ.update(wanted)
    try:
        with inductor_config.patch(switches):
            yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def load_artifacts(directory: Path) -> bool:
    """Hot-load the portable mega-cache (torch.compiler.load_cache_artifacts) if saved."""
    import torch

    path = directory / ARTIFACTS
    loader = getattr(torch.compiler, "load_cache_artifacts", None)
    if loader is None or not path.is_file():
        return False
    try:
        loader(path.read_bytes())
        return True
    except Exception as exc:  # noqa: BLE001 - another torch version's cache is just a miss
        log.warning("could not load the compile cache %s: %s", path, exc)
        return False


def save_artifacts(directory: Path | None) -> bool:
    """Write this process's compiled artifacts (torch.compiler.save_cache_artifacts)."""
    import torch

    saver = getattr(torch.compiler, "save_cache_artifacts", None)
    if directory is None or saver is None:
        return False
    try:
        saved = saver()
    except Exception as exc:  # noqa: BLE001
        log.warning("could not save the compile cache: %s", exc)
        return False
    if not saved or not saved[0]:
        return False
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / (ARTIFACTS + ".tmp")
    tmp.write_bytes(saved[0])
    tmp.replace(directory / ARTIFACTS)
    return True


def compile_module(module: Any, fast: FastPath, mode: str | None = None, cache: Path | None = None) -> None:
    """``module.compile(...)`` in place: the module object (and every reference
    to it, peft's included) stays; its calls go through torch.compile, inside
    ``compile_env(cache)`` (compilation happens in those calls). Fixed shapes:
    a new size or batch compiles a new graph rather than a dynamic one."""
    kwargs: dict[str, Any] = {"backend": fast.compile_backend, "dynamic": False,
                              "fullgraph": fast.compile_fullgraph}
    if fast.compile_backend == "inductor":
        kwargs["mode"] = mode or fast.compile
    with compile_env(cache):  # torch.compile itself already writes TORCHINDUCTOR_CACHE_DIR
        module.compile(**kwargs)
    if cache is None:
        return
    compiled = module._compiled_call_impl  # what nn.Module.__call__ runs once compiled

    def call(*args, **kwargs):
        with compile_env(cache):
            return compiled(*args, **kwargs)

    module._compiled_call_impl = call


def is_compiled(module: Any) -> bool:
    return getattr(module, "_compiled_call_impl", None) is not None
