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

import torch
import torch.nn.functional as F


def _groups(changed: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
    """(group, rows) for every group g with changed[row, g] somewhere; changed is bool [N, G]."""
    rows, groups = changed.nonzero(as_tuple=True)
    order = torch.argsort(groups, stable=True)
    rows = rows[order]
    out, start = [], 0
    for g, n in enumerate(torch.bincount(groups, minlength=changed.shape[1]).tolist()):
        if n:
            out.append((g, rows[start : start + n]))
            start += n
    return out


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
        conv_t = conv_w.reshape(C, -1).t()  # [K, C]
        conv_b = conv_b if conv_b is not None else conv_w.new_zeros(C)

        def features(rows: torch.Tensor, g: int) -> torch.Tensor:
            """relu(conv) at position g of `rows`: [n, C] (only where needed, never the whole output)"""
            return torch.addmm(conv_b, patches[rows, :, g], conv_t).clamp_(min=0)

        # groups whose window changed since the step before (all of them where an episode starts)
        fresh = (keep.reshape(N) == 0).clone()
        fresh[:B] = True
        changed = fresh.unsqueeze(1).expand(N, G).clone()
        changed[B:] |= (patches[B:] != patches[:-B]).any(dim=1)
        has_prev = (~fresh).to(patches.dtype).unsqueeze(1)
        steps = patches.new_zeros(N, O)
        runs = []
        for g, rows in _groups(changed):
            now = features(rows, g)
            delta = now - has_prev[rows] * features((rows - B).clamp(min=0), g)
            steps.index_add_(0, rows, delta @ weight[:, g * C : (g + 1) * C].t())
            runs.append((g, rows, delta, now > 0))
        out = _running_sum(steps.view(T, B, O), keep)
        out += torch.addmm(bias, extra, weight[:, CG:].t()).view(T, B, O)
        nxt = _next_change(changed.view(T, B, G), fresh.view(T, B))
        ctx.save_for_backward(patches, extra, weight, keep, nxt)
        ctx.runs, ctx.shape, ctx.conv_shape = runs, (C, G), conv_w.shape
        return out

    @staticmethod
    def backward(ctx, d_out):  # type: ignore[override]
        patches, extra, weight, keep, nxt = ctx.saved_tensors
        T, B, O = d_out.shape
        (C, G), N = ctx.shape, T * B
        CG = C * G
        d_flat = d_out.reshape(N, O)
        # later[t] = the sum of d_out over steps t.. of the episode; a run of steps t0..t1-1 in which a
        # position's window stays the same has the sum later[t0] - later[t1]
        later = _running_sum(d_out, keep, reverse=True).reshape(N, O)
        d_w = weight.new_empty(O, weight.shape[1])  # every group is written: all are new at step 0
        d_w[:, CG:] = torch.mm(d_flat.t(), extra)
        d_conv = patches.new_zeros(C, patches.shape[1])
        d_conv_b = patches.new_zeros(C)
        for g, rows, delta, active in ctx.runs:
            w = weight[:, g * C : (g + 1) * C]  # [O, C]: position g's columns
            from_here = later[rows]
            # a difference counts in every later output of its episode
            d_w[:, g * C : (g + 1) * C] = torch.mm(from_here.t(), delta)
            ends = nxt[rows, g]
            run_sum = from_here - later[ends.clamp(min=0)] * (ends >= 0).unsqueeze(1)
            d_pre = torch.mm(run_sum, w).mul_(active)  # [n, C], summed over each run
            d_conv.addmm_(d_pre.t(), patches[rows, :, g])
            d_conv_b += d_pre.sum(0)
        d_extra = torch.mm(d_flat, weight[:, CG:]) if ctx.needs_input_grad[3] else None
        d_conv_b = d_conv_b if ctx.needs_input_grad[2] else None
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
    keep = 1.0 - starts.to(images.dtype)
    geometry = (conv.kernel_size, conv.padding, conv.stride, conv.dilation)
    return _IncrementalConvLinear.apply(
        images.contiguous(), conv.weight, conv.bias, extra, weight, bias, keep, geometry
    )
