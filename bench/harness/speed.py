"""Speed switches for the training step (train.precision, channels_last, compile).

``auto`` picks bfloat16 autocast where the hardware computes it natively (CPUs with
AVX512-BF16 or AMX, CUDA GPUs with bf16 support) and fp32 elsewhere: on CPUs without native
bf16 the conversions cost more than they save.
"""

from __future__ import annotations

import contextlib

import torch

from bench.core.config import TrainConfig


def native_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = torch.backends.cpu.get_cpu_capability()
        return cpu in ("AVX512_BF16", "AMX") or _cpu_flags_have_bf16()
    return False


def _cpu_flags_have_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``, or None for plain fp32."""
    if precision == "auto":
        return torch.bfloat16 if native_bf16(device) else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def step_context(precision: str, device: torch.device):
    """Autocast for one whole ``train_step``, without autocast's weight-cast cache.

    The cache keeps the low-precision copy of each parameter until the context exits
    (torch.autocast, ``cache_enabled``). A step that updates weights and then uses them again
    inside the same context, as a GAN's G update after its D update does, would run on the
    stale pre-update copies: a different algorithm from the fp32 one (measured in
    BENCHMARKS.md, "Speed switches and final FID"). Without the cache every forward casts
    the current weights.
    """
    dtype = autocast_dtype(precision, device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype, cache_enabled=False)


def memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


def compile_modules(model: torch.nn.Module) -> None:
    """torch.compile each direct child in place (parameter names, hence checkpoints, unchanged).

    Children rather than the whole model: ``train_step`` holds the optimiser steps and the
    GAN's D/G alternation, which stay eager; the networks' forward and backward are compiled.

    Every in-place-compiled module shares one code object (``Module._call_impl``), so Dynamo
    counts all their variants (train/eval mode, fp32/bf16, batch sizes) against one recompile
    limit. The cache is reset per run (each run pays its own compilation: comparable cost
    rows), the limit raised to fit one run's variants, and hitting it is an error rather than
    a silent fall-back to eager.
    """
    import torch._dynamo

    torch._dynamo.reset()
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    torch._dynamo.config.fail_on_recompile_limit_hit = True
    for child in model.children():
        child.compile()


def set_matmul_4x4(model: torch.nn.Module, on: bool) -> None:
    """Run the layers that map a 4x4 map to 1x1 or back as one matrix product (or not)."""
    from models.backbone import LatentConvTranspose2d, WholeMapConv2d

    for module in model.modules():
        if isinstance(module, (WholeMapConv2d, LatentConvTranspose2d)):
            module.as_matmul = on


def with_default_switches(model, device: torch.device):
    """``model`` on ``device`` with every speed switch at its TrainConfig default (layout,
    4x4 matmul, fused Adam), as ``bench run`` trains it unless a config says otherwise: for
    scripts that step ``model.train_step`` outside the harness."""
    defaults = TrainConfig()
    model = model.to(device, memory_format=memory_format(defaults.channels_last))
    set_matmul_4x4(model, defaults.matmul_4x4)
    set_fused_adam(model, device, defaults.fused_adam)
    return model


def set_fused_adam(model, device: torch.device, on: bool) -> bool:
    """Step the model's Adam/AdamW optimisers with torch's fused kernel (on, where it has one).

    The per-parameter loop torch uses by default on CPU launches ~10 small ops per tensor;
    the fused kernel makes one pass with the same update rule (torch.optim.Adam, ``fused``).
    The optimisers are built by the model, so the flag is set on their parameter groups;
    call after loading a checkpoint, which restores the saved groups' flags. Returns whether
    the fused kernel is in use.
    """
    fused = on and _has_fused_adam(device)
    for opt in model.optimizers().values():
        if isinstance(opt, (torch.optim.Adam, torch.optim.AdamW)):
            for group in opt.param_groups:
                group["fused"], group["foreach"] = fused, False if fused else None
    return fused


def _has_fused_adam(device: torch.device) -> bool:
    probe = torch.zeros(1, device=device, requires_grad=True)
    try:
        torch.optim.Adam([probe], fused=True)
    except (RuntimeError, ValueError):
        return False
    return True
