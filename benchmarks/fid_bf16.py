"""Where bf16 loses FID accuracy (issue 14, item 3): the folded Inception with bf16 autocast
on all, some or none of its layers, and two emulations that separate weight rounding from
activation rounding, each against the published folded-fp32 features, on several data pairs.

Every variant computes features of the same images; the FID of each pair is compared with
the folded-fp32 FID of that pair (which is pytorch-fid's to fp32 rounding, fid_speed.py).
img/s is the whole feature pass of the variant (all sets), on this machine's threads.

    python benchmarks/fid_bf16.py                         # N=300, pairs cifar,pet64,pet
    python benchmarks/fid_bf16.py --leave-one-out         # + each layer kept in fp32 in turn
    python benchmarks/fid_bf16.py --pairs cifar_b,pet32,gen32 --generated RUN --variants 7a

Pairs: ``cifar`` CIFAR-10 dogs train vs test (32 px); ``pet64`` PetImages dogs at 64 px vs
CIFAR train; ``pet`` two disjoint sets of PetImages dogs at 64 px (photos vs photos);
``cifar_b`` the next N of CIFAR train vs the next N of test; ``pet32`` PetImages at 32 px vs
CIFAR test; ``gen32`` samples of a finished 32 px run (--generated) vs CIFAR test.
Needs a CPU with native bf16 (AVX512-BF16 or AMX): elsewhere bf16 is emulated and slow.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import numpy as np
import torch

from bench.core.errors import run_script
from bench.data.images import first_images
from bench.metrics import fid
from bench.results.trained import run_samples

DATA = Path("/work/shared/data")
PAIRS = {"cifar": ("cifar_train", "cifar_test"), "pet64": ("pet64", "cifar_train")}
PAIRS |= {"pet": ("pet64", "pet64_b"), "pet32": ("pet32", "cifar_test")}
PAIRS |= {"cifar_b": ("cifar_train_b", "cifar_test_b"), "gen32": ("gen32", "cifar_test")}
STEM = ("1a", "2a", "2b", "3b", "4a")  # pytorch-fid's Conv2d_1a_3x3 ... Conv2d_4a_3x3
MIXED = ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c")


def image_sets(data: Path, n: int, generated: Path | None) -> dict[str, torch.Tensor]:
    """Every set a pair may use (``pet64_b``: the N photos after ``pet64``'s)."""
    cifar, pet = data / "cifar10-dog", data / "petimages-dog/dog"
    return {
        "cifar_train": first_images(cifar / "train/dog", 32, n),
        "cifar_test": first_images(cifar / "test/dog", 32, n),
        "pet64": first_images(pet, 64, n),
        "pet64_b": first_images(pet, 64, n, skip=n),
        "pet32": first_images(pet, 32, n),
        "cifar_train_b": first_images(cifar / "train/dog", 32, n, skip=n),
        "cifar_test_b": first_images(cifar / "test/dog", 32, n, skip=n),
    } | ({"gen32": run_samples(generated, n)} if generated else {})


def layers(net: torch.nn.Module) -> dict[str, tuple[torch.nn.Sequential, int]]:
    """Short name -> (block, index) of every conv layer / Inception block of pytorch-fid's net."""
    names = iter(STEM[:3] + ("pool1",) + STEM[3:] + ("pool2",) + MIXED + ("avgpool",))
    return {next(names): (block, i) for block in net.blocks for i in range(len(block))}


class Precision(torch.nn.Module):
    """Runs one layer under bf16 autocast, or in fp32 with its input cast back to fp32."""

    def __init__(self, inner: torch.nn.Module, bf16: bool):
        super().__init__()
        self.inner, self.bf16 = inner, bf16

    def forward(self, x):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            return self.inner(x if self.bf16 else x.float())


@contextlib.contextmanager
def bf16_layers(net: torch.nn.Module, which: set[str]):
    """``net`` with the layers in ``which`` under bf16 autocast, the rest in fp32."""
    places = layers(net)
    originals = {name: block[i] for name, (block, i) in places.items()}
    for name, (block, i) in places.items():
        block[i] = Precision(originals[name], name in which)
    try:
        yield net
    finally:
        for name, (block, i) in places.items():
            block[i] = originals[name]


@contextlib.contextmanager
def rounded_weights(net: torch.nn.Module):
    """Weights rounded to bf16 and back: fp32 arithmetic on bf16 weights."""
    saved = [(p, p.detach().clone()) for p in net.parameters()]
    with torch.no_grad():
        for p, _ in saved:
            p.copy_(p.bfloat16().float())
    try:
        yield net
    finally:
        with torch.no_grad():
            for p, value in saved:
                p.copy_(value)


@contextlib.contextmanager
def rounded_activations(net: torch.nn.Module):
    """Every conv's input rounded to bf16 and back: fp32 weights and arithmetic."""
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    hooks = [c.register_forward_pre_hook(lambda m, a: (a[0].bfloat16().float(),)) for c in convs]
    try:
        yield net
    finally:
        for hook in hooks:
            hook.remove()


class SplitConv(torch.nn.Module):
    """A conv as one bf16 convolution with the weight split in two bf16 halves,
    W = W_hi + W_lo, and the bias likewise (stacked as 2× the output channels, the two
    outputs summed in fp32): bf16 activations with the weights kept to ~16 mantissa bits."""

    def __init__(self, conv: torch.nn.Conv2d):
        super().__init__()

        def split(t: torch.Tensor) -> torch.Tensor:
            hi = t.detach().bfloat16()
            return torch.cat([hi, (t.detach() - hi.float()).bfloat16()])

        weight = split(conv.weight).contiguous(memory_format=torch.channels_last)
        self.register_buffer("weight", weight)
        self.register_buffer("bias", split(conv.bias))
        self.out = conv.out_channels
        self.args = (conv.stride, conv.padding, conv.dilation, conv.groups)

    def forward(self, x):
        y = torch.nn.functional.conv2d(x.bfloat16(), self.weight, self.bias, *self.args)
        return y[:, : self.out].float() + y[:, self.out :].float()


@contextlib.contextmanager
def split_weights(net: torch.nn.Module):
    """Every (folded) conv of ``net`` as a SplitConv."""
    owners = [m for m in net.modules() if isinstance(getattr(m, "conv", None), torch.nn.Conv2d)]
    convs = [m.conv for m in owners]
    for owner, conv in zip(owners, convs, strict=True):
        owner.conv = SplitConv(conv)
    try:
        yield net
    finally:
        for owner, conv in zip(owners, convs, strict=True):
            owner.conv = conv


def features(net: torch.nn.Module, images: torch.Tensor, batch: int) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for b in images.split(batch):
            x = b.float().div(255).contiguous(memory_format=torch.channels_last)
            out.append(net(x)[0].flatten(1).float().numpy())
    return np.concatenate(out).astype(np.float64)


def fids(feats: dict[str, np.ndarray], pairs: list[str]) -> list[float]:
    stats = {k: fid.feature_stats(v) for k, v in feats.items()}
    return [fid.frechet_distance(*stats[PAIRS[p][0]], *stats[PAIRS[p][1]]).fid for p in pairs]


def variants(
    net: torch.nn.Module, leave_one_out: bool
) -> dict[str, contextlib.AbstractContextManager]:
    every = set(layers(net))
    keep_fp32 = {
        "stem in fp32": set(STEM) | {"pool1", "pool2"},
        "Mixed_5b-6e in fp32": set(MIXED[:8]),
        "Mixed_7a-7c + pool in fp32": set(MIXED[8:]) | {"avgpool"},
    }
    if leave_one_out:
        keep_fp32 |= {f"{name} in fp32": {name} for name in STEM + MIXED}
    out = {"bf16 everywhere (fast path)": bf16_layers(net, every)}
    out |= {f"bf16, {label}": bf16_layers(net, every - kept) for label, kept in keep_fp32.items()}
    out["bf16, weights split in two bf16 parts"] = split_weights(net)
    out["fp32 math, bf16-rounded weights"] = rounded_weights(net)
    out["fp32 math, bf16-rounded conv inputs"] = rounded_activations(net)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--n", type=int, default=300, help="images per set")
    parser.add_argument("--pairs", default="cifar,pet64,pet", help=f"subset of {tuple(PAIRS)}")
    parser.add_argument("--batch", type=int, default=fid.FAST_BATCH["cpu"])
    parser.add_argument("--leave-one-out", action="store_true")
    parser.add_argument("--generated", type=Path, help="a finished 32 px run (pair gen32)")
    parser.add_argument("--variants", default="", help="only variants whose label has this")
    args = parser.parse_args()
    pairs = args.pairs.split(",")
    if unknown := sorted(set(pairs) - set(PAIRS)):
        raise SystemExit(f"unknown pair {unknown[0]!r}; accepted: {', '.join(PAIRS)}")
    if "gen32" in pairs and args.generated is None:
        raise SystemExit("pair gen32 needs --generated RUN_DIR (a finished 32 px run)")
    sets = image_sets(args.data, args.n, args.generated if "gen32" in pairs else None)
    sets = {k: v for k, v in sets.items() if any(k in PAIRS[p] for p in pairs)}
    net = fid._folded_inception(torch.device("cpu"), 2048)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16: "
        f"{fid._native_bf16_cpu()}, N={args.n} per set, pairs: {', '.join(pairs)}"
    )

    start = time.perf_counter()
    exact = {k: features(net, v, args.batch) for k, v in sets.items()}
    rate = sum(map(len, sets.values())) / (time.perf_counter() - start)
    reference = fids(exact, pairs)
    print(f"{'variant':42s} " + " ".join(f"{p:>9s}" for p in pairs) + "    img/s")
    print(
        f"{'folded fp32 (published): FID':42s} "
        + " ".join(f"{v:9.3f}" for v in reference)
        + f"  {rate:7.1f}",
        flush=True,
    )

    def row(label: str, feats: dict[str, np.ndarray], rate: float | None = None) -> None:
        diffs = [100 * (v - r) / r for v, r in zip(fids(feats, pairs), reference, strict=True)]
        print(
            f"{label:42s} "
            + " ".join(f"{d:+8.3f}%" for d in diffs)
            + (f"  {rate:7.1f}" if rate else "  (emulated)"),
            flush=True,
        )

    rounded = {k: torch.from_numpy(v).bfloat16().double().numpy() for k, v in exact.items()}
    row("fp32, final features rounded to bf16", rounded)
    for label, context in variants(net, args.leave_one_out).items():
        if args.variants not in label:
            continue
        with context:
            start = time.perf_counter()
            feats = {k: features(net, v, args.batch) for k, v in sets.items()}
            rate = sum(map(len, sets.values())) / (time.perf_counter() - start)
        row(label, feats, None if label.startswith("fp32 math") else rate)


if __name__ == "__main__":
    run_script(main)
