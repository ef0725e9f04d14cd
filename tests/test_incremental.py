"""ued.incremental: a linear map of a sequence computed from step-to-step differences."""

from __future__ import annotations

import torch

from ued.incremental import incremental_linear

torch.set_num_threads(1)


def sparse_sequence(T: int, B: int, C: int, G: int, seed: int = 0) -> torch.Tensor:
    """x [T, B, C, G] changing in one or two random groups per step (and sometimes not at all)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, B, C, G, generator=g).repeat(T, 1, 1, 1)
    for t in range(1, T):
        x[t:] = x[t - 1 : t].clone()
        for b in range(B):
            for _ in range(int(torch.randint(0, 3, (1,), generator=g))):
                x[t, b, :, int(torch.randint(0, G, (1,), generator=g))] = torch.randn(C, generator=g)
    return x


def test_incremental_linear_equals_the_dense_map_with_gradients_across_episode_starts():
    T, B, C, G, O, E = 9, 3, 4, 6, 5, 2
    x = sparse_sequence(T, B, C, G).requires_grad_()
    extra = torch.randn(T * B, E, requires_grad=True)
    w = torch.randn(O, C * G + E, requires_grad=True)
    bias = torch.randn(O, requires_grad=True)
    starts = torch.zeros(T, B)
    starts[0] = 1
    starts[4, 1] = starts[7, 2] = 1
    x.data[4, 1] = torch.randn(C, G)  # a new episode starts from another input altogether
    probe = torch.randn(T, B, O)

    got = incremental_linear(x, extra, w, bias, starts)
    want = (torch.cat([x.reshape(T * B, C * G), extra], dim=1) @ w.t() + bias).view(T, B, O)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    leaves = [x, extra, w, bias]
    got_grads = torch.autograd.grad((got * probe).sum(), leaves)
    want_grads = torch.autograd.grad((want * probe).sum(), leaves)
    for g, e in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)


def test_a_start_mid_sequence_is_not_a_difference():
    # without the start at step 2, the new input would be taken as a change from env 0's step 1
    T, B, C, G = 4, 1, 2, 3
    x = torch.zeros(T, B, C, G)
    x[:2] = 1.0
    x[2:] = 5.0
    w = torch.ones(2, C * G)
    starts = torch.tensor([[1.0], [0.0], [1.0], [0.0]])
    out = incremental_linear(x, torch.zeros(T * B, 0), w, torch.zeros(2), starts)
    assert out[:, 0, 0].tolist() == [6.0, 6.0, 30.0, 30.0]
