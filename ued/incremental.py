"""A conv layer and a linear map over a sequence of images that change in few places from step to step.

PAIRED's adversary (dcd's layout) feeds a 3x3 conv of the level being written, 128 channels x 13 x 13 =
21,632 features, into its LSTM: the LSTM's input projection is ~44 MFLOP per sample, ~95% of the adversary's
work. But the adversary writes one token per step, so between steps its conv output changes only at the
few positions whose 3x3 window saw the new token. `incremental_conv_linear` computes the projection as a
running sum of (x_t - x_{t-1}) @ W^T over the changed positions, and the gradients from sums over the runs
of steps in which a position stays the same: equal in exact arithmetic (float32 rounding differs), ~20x
fewer multiply-adds in the forward pass and in the backward pass.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable


def _row_hash(values: torch.Tensor) -> torch.Tensor:
    """int64 [M] in [0, 2**40): a hash of the bits of float32 rows `values` [M, D], D < 2**14 (random
    multipliers below 2**31 times 16-bit halves: a row's sum stays below 2**62)."""
    bits = values.contiguous().view(torch.int32).to(torch.int64)
    halves = torch.cat([bits >> 16, bits & 0xFFFF], dim=1)
    mult = torch.randint(1, 2**31, (halves.shape[1],), generator=torch.Generator().manual_seed(0))
    return (halves * mult.to(values.device)).sum(1).remainder(2**40)


def _distinct_rows(values: torch.Tensor, group: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(first [U], inverse [M]) for float32 rows `values` [M, D] in groups `group` [M] (int64 >= 0): one
    row index per distinct (group, row), ordered by group, and each row's place in that list. Rows are
    compared by `_row_hash`, checked exactly; a collision falls back to comparing whole rows."""

    def firsts(inverse: torch.Tensor, count: int) -> torch.Tensor:
        out = torch.empty(count, dtype=torch.long, device=values.device)
        return out.scatter_(0, inverse, torch.arange(len(inverse), device=values.device))

    if values.shape[1] < 2**14:
        distinct, inverse = torch.unique(group * 2**40 + _row_hash(values), sorted=True, return_inverse=True)
        first = firsts(inverse, len(distinct))
        if torch.equal(values[first][inverse], values):
            return first, inverse
    tagged = torch.cat([group.unsqueeze(1).to(torch.float64), values.to(torch.float64)], dim=1)
    distinct, inverse = torch.unique(tagged, dim=0, return_inverse=True)
    return firsts(inverse, len(distinct)), inverse


def _gather_sum(into: torch.Tensor, rows: torch.Tensor, size: int, src: torch.Tensor) -> torch.Tensor:
    """out[into[i]] += src[rows[i]] for i < M: out [size, O] from src [R, O] (into, rows [M]), as one sparse
    matrix product: gathering M rows first would write and read M x O floats (70 MB for the adversary), 8x
    slower."""
    values = torch.ones(len(into), dtype=src.dtype, device=src.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch: "sparse CSR support is in beta"
        pick = torch.sparse_coo_tensor(
            torch.stack([into, rows]), values, (size, src.shape[0]), check_invariants=False
        )
        return pick.coalesce().to_sparse_csr() @ src


def _running_sum(d: torch.Tensor, keep: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """s_t = d_t + keep_t * s_{t-1} over d [T, B, O] (keep [T, B]: 0 where a new episode starts at t);
    `reverse`: s_t = d_t + keep_{t+1} * s_{t+1}."""
    out = torch.empty_like(d)
    T = d.shape[0]
    steps = range(T - 1, -1, -1) if reverse else range(T)
    acc = None
    for t in steps:
        if acc is None:
            acc = d[t]
        else:
            k = keep[t + 1] if reverse else keep[t]
            acc = torch.addcmul(d[t], acc, k.unsqueeze(1))
        out[t] = acc
    return out


def _next_change(changed: torch.Tensor, fresh: torch.Tensor) -> torch.Tensor:
    """For changed [T, B, G] (bool) and fresh [T, B] (a new episode starts): the flat row (t' * B + b) of
    the next step t' > t where group g changes, or -1 where there is none before the episode ends; [T*B, G]."""
    T, B, G = changed.shape
    rows = torch.arange(T * B, device=changed.device).view(T, B, 1).expand(T, B, G)
    nxt = torch.full((T, B, G), -1, dtype=torch.long, device=changed.device)
    for t in range(T - 2, -1, -1):
        nxt[t] = torch.where(changed[t + 1], rows[t + 1], nxt[t + 1])
        nxt[t][fresh[t + 1]] = -1
    return nxt.view(T * B, G)


class _IncrementalConvLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, images, conv_w, conv_b, extra, weight, bias, keep, conv):  # type: ignore[override]
        T, B = keep.shape
        N, O = T * B, weight.shape[0]
        kernel, padding, stride, dilation = conv
        patches = F.unfold(images, kernel, dilation, padding, stride)  # [N, K, G]
        C, G = conv_w.shape[0], patches.shape[2]
        CG = C * G
        conv_b = conv_b if conv_b is not None else conv_w.new_zeros(C)

        def features(patch: torch.Tensor) -> torch.Tensor:
            """relu(conv) of windows `patch` [n, K]: [n, C] (only where needed, never the whole output)"""
            return torch.addmm(conv_b, patch, conv_w.reshape(C, -1).t()).clamp_(min=0)

        # the (step, position) entries whose window changed since the step before (all at episode starts)
        fresh = (keep.reshape(N) == 0).clone()
        fresh[:B] = True
        changed = fresh.unsqueeze(1).expand(N, G).clone()
        changed[B:] |= (patches[B:] != patches[:-B]).any(dim=1)
        nxt = _next_change(changed.view(T, B, G), fresh.view(T, B))
        rows, groups = changed.nonzero(as_tuple=True)  # [M] each
        has_prev = (~fresh[rows]).to(patches.dtype).unsqueeze(1)  # [M, 1]
        now = patches[rows, :, groups]  # [M, K]
        prev = torch.where(has_prev > 0, patches[(rows - B).clamp(min=0), :, groups], 0.0)  # no -0.0
        pairs = torch.cat([now, prev, has_prev], dim=1)
        # entries whose window went from the same patch to the same patch share one difference: the first
        # step of every episode (one empty level) and more than half of the writing
        first, inverse = _distinct_rows(pairs, groups)
        pairs = pairs[first]
        # entries of position g: parts[g] of the distinct ones (every position has some: all are new at step 0)
        ends_at = torch.bincount(groups[first], minlength=G).cumsum(0).tolist()
        parts = [slice(a, b) for a, b in zip([0, *ends_at[:-1]], ends_at)]
        K = now.shape[1]
        now = pairs[:, :K].contiguous()
        now_features = features(now)
        delta = now_features - pairs[:, 2 * K :] * features(pairs[:, K : 2 * K])  # [U, C]
        proj = delta.new_empty(len(delta), O)
        for g, part in enumerate(parts):
            torch.mm(delta[part], weight[:, g * C : (g + 1) * C].t(), out=proj[part])
        steps = _gather_sum(rows, inverse, N, proj)
        out = _running_sum(steps.view(T, B, O), keep)
        out += torch.addmm(bias, extra, weight[:, CG:].t()).view(T, B, O)
        ctx.save_for_backward(
            extra, weight, keep, rows, nxt[rows, groups], inverse, delta, now, now_features > 0
        )
        ctx.parts, ctx.shape, ctx.conv_shape = parts, (C, G), conv_w.shape
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out):  # type: ignore[override]
        extra, weight, keep, rows, ends, inverse, delta, now, active = ctx.saved_tensors
        T, B, O = d_out.shape
        (C, G), N = ctx.shape, T * B
        CG = C * G
        d_flat = d_out.reshape(N, O)
        # later[t] = the sum of d_out over steps t.. of the episode; a run of steps t0..t1-1 in which a
        # position's window stays the same has the sum later[t0] - later[t1]
        later = _running_sum(d_out, keep, reverse=True).reshape(N, O)
        # summed over the entries that share a difference (and so a window and its activity)
        U, ended = len(delta), (ends >= 0).nonzero().squeeze(1)
        from_here = _gather_sum(inverse, rows, U, later)
        run_sum = from_here - _gather_sum(inverse[ended], ends[ended], U, later)
        d_w = weight.new_empty(O, weight.shape[1])  # every position is written: all are new at step 0
        d_w[:, CG:] = torch.mm(d_flat.t(), extra)
        d_pre = delta.new_empty(len(delta), C)
        for g, part in enumerate(ctx.parts):
            # a difference counts in every later output of its episode
            d_w[:, g * C : (g + 1) * C] = torch.mm(from_here[part].t(), delta[part])
            torch.mm(run_sum[part], weight[:, g * C : (g + 1) * C], out=d_pre[part])  # summed over each run
        d_pre.mul_(active)
        d_conv = torch.mm(d_pre.t(), now)
        d_extra = torch.mm(d_flat, weight[:, CG:]) if ctx.needs_input_grad[3] else None
        d_conv_b = d_pre.sum(0) if ctx.needs_input_grad[2] else None
        return None, d_conv.view(ctx.conv_shape), d_conv_b, d_extra, d_w, d_flat.sum(0), None, None


def incremental_conv_linear(
    images: torch.Tensor,
    conv: torch.nn.Conv2d,
    extra: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    starts: torch.Tensor,
) -> torch.Tensor:
    """[relu(conv(image_t)) flattened, extra_t] @ weight^T + bias for T steps of B envs: images [T*B, Cin,
    H, W] (time-major) that change in few places from one step to the next, extra [T*B, E] (used whole each
    step), weight [O, G*C + E] (G = the conv's output positions, position-major: the C features of position
    g are columns g*C .. g*C+C-1, as `AdversaryPolicy.encode` flattens them), bias [O]; starts [T, B] is 1 where a new episode starts at step t -> [T, B, O]. The same value as
    the plain computation up to float32 rounding, with gradients for the conv, extra, weight and bias (not
    the images)."""
    if conv.groups != 1 or not isinstance(conv.padding, tuple):
        raise ValueError("incremental_conv_linear needs a conv without groups and with numeric padding")
    if images.dtype not in (torch.float32, torch.float64) or weight.dtype != images.dtype:
        raise ValueError(
            "incremental_conv_linear runs in float32 or float64 (images and weight alike), not under autocast"
        )
    keep = 1.0 - starts.to(images.dtype)
    geometry = (conv.kernel_size, conv.padding, conv.stride, conv.dilation)
    return _IncrementalConvLinear.apply(
        images.contiguous(), conv.weight, conv.bias, extra, weight, bias, keep, geometry
    )
