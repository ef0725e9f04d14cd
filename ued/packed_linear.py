"""x @ W^T + b for a weight that many calls share, as in a rollout's steps: oneDNN's packed-weight product.

A rollout multiplies the same weights by a small batch hundreds of times. torch's float32 CPU products go
to MKL, which repacks the weight on every call and, on AMD CPUs, does not use its AVX-512 kernels: for
PAIRED's adversary ([32, 21,692] x [21,692, 1,024], its LSTM's input projection) MKL takes 11.8 ms per
step here, oneDNN with the weight packed once 3.8 ms (2 threads, a 2-core AMD EPYC; benchmarks/README.md,
"Packed weights in the rollout").

Inside a `frozen_weights()` block (a rollout: the weights do not change until it ends), `packed_linear`
packs each weight on first use and reuses the packed copy; the copies are dropped when the block ends.
The block is the contract: a tensor's version counter cannot tell whether the weight changed, because
torch's fused Adam updates parameters without moving it. Outside a block, with gradients recorded, on
other devices, or without oneDNN on an x86 CPU, `packed_linear` is `F.linear`. A caller that holds a
weight fixed itself (the stepwise LSTM recurrence, within one call) packs it with `pack` and multiplies
with `linear_packed`. Both agree with torch's products to float32 rounding (tests/test_packed_linear.py,
tests/test_models.py); on one machine the results repeat exactly. Weights that a module derives from its
own for its rollout steps (the maze student's folded layers) are made once per block with `frozen_value`.
"""

from __future__ import annotations

import contextlib
import platform
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
import torch.nn.functional as F


def _ops_present() -> bool:
    try:
        return callable(torch.ops.mkldnn._reorder_linear_weight) and callable(
            torch.ops.mkldnn._linear_pointwise
        )
    except (AttributeError, RuntimeError):
        return False


#: oneDNN built into torch and an x86 CPU (oneDNN picks its kernels by instruction set, not vendor)
AVAILABLE = (
    torch.backends.mkldnn.is_available()
    and platform.machine().lower() in ("x86_64", "amd64")
    and _ops_present()
)
#: the most weights kept packed at once in a block (the students', the adversary's, ... policies)
MAX_PACKED = 16

#: per thread, `packed`: id(weight) -> (weakref to the weight, its packed copy), and `values`: (id(owner),
#: key) -> (weakref to the owner, `frozen_value`'s value), inside a `frozen_weights` block; None outside
_local = threading.local()

V = TypeVar("V")


def _block() -> dict[int, tuple[Any, torch.Tensor]] | None:
    """This thread's packed copies, or None outside a `frozen_weights` block."""
    return getattr(_local, "packed", None)


@contextlib.contextmanager
def frozen_weights() -> Iterator[None]:
    """A block (or, as a decorator, a function) in which the weights given to `packed_linear` stay as they
    are, so that each is packed once; nested blocks (in one thread) share the outermost one's copies."""
    outermost = _block() is None
    if outermost:
        _local.packed, _local.values = {}, {}
    try:
        yield
    finally:
        if outermost:
            _local.packed = _local.values = None


def frozen_value(owner: Any, key: str, make: Callable[[], V]) -> V:
    """`make()`, computed once per `frozen_weights` block for (`owner`, `key`) and reused within it (e.g.
    weights that a module folds from its own for its rollout steps); outside a block, `make()` at every call."""
    values = getattr(_local, "values", None)
    if values is None:
        return make()
    entry = values.get((id(owner), key))
    if entry is not None and entry[0]() is owner:
        return entry[1]
    value = make()
    values[(id(owner), key)] = (weakref.ref(owner), value)
    return value


def pack(weight: torch.Tensor, batch: int) -> torch.Tensor | None:
    """oneDNN's packed copy of a float32 CPU `weight` [out, in] for `linear_packed` (made for `batch` rows,
    usable for any), or None where torch's products must be used instead (no oneDNN on x86, oneDNN turned
    off, another device or dtype). For callers that hold a weight fixed themselves, e.g. within one call of
    a custom autograd function."""
    usable = AVAILABLE and torch.backends.mkldnn.enabled
    if not usable or weight.device.type != "cpu" or weight.dtype != torch.float32:
        return None
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), batch)


def linear_packed(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x [N, in] @ W^T + bias for `packed` = `pack(W, ...)`: no gradient (the caller computes its own)."""
    bias = None if bias is None else bias.contiguous()  # oneDNN reads the bias as dense
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


def _packed_weight(
    packed: dict[int, tuple[Any, torch.Tensor]], weight: torch.Tensor, batch: int
) -> torch.Tensor | None:
    """`pack(weight, batch)`, from `packed` or made now; an entry is used only for the very tensor it was
    made from (a recycled id is not enough)."""
    entry = packed.get(id(weight))
    if entry is not None and entry[0]() is weight:
        return entry[1]
    if len(packed) >= MAX_PACKED:
        for k in [k for k, e in packed.items() if e[0]() is None] or list(packed)[: len(packed) // 2]:
            del packed[k]
    copy = pack(weight, batch)
    if copy is not None:
        packed[id(weight)] = (weakref.ref(weight), copy)
    return copy


def applies(x: torch.Tensor) -> bool:
    """Whether `packed_linear(x, ...)` takes the packed product (inside `frozen_weights`, no gradients, no
    autocast, a 2-d float32 CPU batch, oneDNN on x86) rather than `F.linear`."""
    return (
        AVAILABLE
        and _block() is not None
        and not torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
        and torch.backends.mkldnn.enabled
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and x.dim() == 2
    )


def packed_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x [N, in] @ weight [out, in]^T + bias [out] -> [N, out]: the packed oneDNN product where it `applies`,
    else `F.linear`."""
    block = _block()
    packed = _packed_weight(block, weight, x.shape[0]) if applies(x) and block is not None else None
    return F.linear(x, weight, bias) if packed is None else linear_packed(x, packed, bias)


__all__ = ["AVAILABLE", "applies", "frozen_value", "frozen_weights", "linear_packed", "pack", "packed_linear"]
