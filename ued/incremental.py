"""A linear map of a sequence whose input changes in few places from one step to the next.

PAIRED's adversary (dcd's layout) feeds a 3x3 conv of the level being written, 128 channels x 13 x 13 =
21,632 features, into its LSTM: the LSTM's input projection is ~44 MFLOP per sample, ~95% of the adversary's
work. But the adversary writes one token per step, so between steps its conv output changes only at the
few positions whose 3x3 window saw the new token. `incremental_linear` computes x_t @ W^T as a running sum
of (x_t - x_{t-1}) @ W^T over the changed positions: equal in exact arithmetic (float32 rounding differs),
~20x fewer multiply-adds for the forward pass and the weight gradient.
"""

from __future__ import annotations

import torch


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


class _IncrementalLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, extra, weight, bias, keep):  # type: ignore[override]
        T, B, C, G = x.shape
        N, CG, O = T * B, C * G, weight.shape[0]
        flat = x.reshape(N, C, G)
        # which groups changed from the step before (all of them where an episode starts)
        fresh = (keep.reshape(N) == 0).clone()
        fresh[:B] = True
        changed = fresh.unsqueeze(1).expand(N, G).clone()
        changed[B:] |= (x[1:] != x[:-1]).any(dim=2).view(N - B, G)
        by_group = weight[:, :CG].view(O, C, G).permute(2, 1, 0).contiguous()  # [G, C, O]
        prev_weight = (~fresh).to(x.dtype).unsqueeze(1)  # [N, 1]: 0 where the step has no previous input
        steps = x.new_zeros(N, O)
        deltas = []
        for g, rows in _groups(changed):
            delta = flat[rows, :, g] - prev_weight[rows] * flat[(rows - B).clamp(min=0), :, g]
            steps.index_add_(0, rows, delta @ by_group[g])
            deltas.append((g, rows, delta))
        out = _running_sum(steps.view(T, B, O), keep)
        out += torch.addmm(bias, extra, weight[:, CG:].t()).view(T, B, O)
        ctx.save_for_backward(extra, weight, keep)
        ctx.deltas, ctx.shape = deltas, (T, B, C, G)
        return out

    @staticmethod
    def backward(ctx, d_out):  # type: ignore[override]
        extra, weight, keep = ctx.saved_tensors
        T, B, C, G = ctx.shape
        N, CG, O = T * B, C * G, weight.shape[0]
        d_flat = d_out.reshape(N, O)
        d_x = d_extra = d_w = d_bias = None
        if ctx.needs_input_grad[0]:
            # x_t enters step t's difference with +1 and step t+1's with -1: d x_t = d out_t @ W
            d_x = torch.mm(d_flat, weight[:, :CG]).view(T, B, C, G)
        if ctx.needs_input_grad[1]:
            d_extra = torch.mm(d_flat, weight[:, CG:])
        if ctx.needs_input_grad[2]:
            # each difference counts in every later output of its episode: the reversed running sum
            later = _running_sum(d_out, keep, reverse=True).reshape(N, O)
            d_w = weight.new_empty(O, weight.shape[1])  # every group is written: all are new at step 0
            d_by_group = d_w[:, :CG].view(O, C, G)
            for g, rows, delta in ctx.deltas:
                d_by_group[:, :, g] = torch.mm(later[rows].t(), delta)
            d_w[:, CG:] = torch.mm(d_flat.t(), extra)
        if ctx.needs_input_grad[3]:
            d_bias = d_flat.sum(0)
        return d_x, d_extra, d_w, d_bias, None


def incremental_linear(
    x: torch.Tensor, extra: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, starts: torch.Tensor
) -> torch.Tensor:
    """[x_t, extra_t] @ weight^T + bias for a sequence: x [T, B, C, G] changes in few of its G groups (e.g.
    conv positions, C channels each, flattened channel-major as a conv's output) from one step to the next;
    extra [T*B, E] is anything else (used whole each step); weight [O, C*G + E], bias [O] -> [T, B, O].
    `starts` [T, B]: 1 where a new episode starts at step t (its x is used whole, not as a difference).
    The same value as the plain product up to float32 rounding, with gradients for all four."""
    keep = 1.0 - starts.to(x.dtype)
    return _IncrementalLinear.apply(x.contiguous(), extra, weight, bias, keep)
