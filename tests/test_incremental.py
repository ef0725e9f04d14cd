"""ued.incremental: a conv and a linear map over images that change in few places, from step-to-step
differences."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ued import incremental
from ued.incremental import incremental_conv_linear

torch.set_num_threads(1)


def written_images(T: int, B: int, size: int = 6, seed: int = 0) -> torch.Tensor:
    """[T*B, 2, size, size] time-major: each env's image gains one random cell per step (sometimes a cell
    it already had, so that nothing changes)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.zeros(T, B, 2, size, size)
    images[0] = torch.rand(B, 2, size, size, generator=g) < 0.2
    for t in range(1, T):
        images[t] = images[t - 1]
        for b in range(B):
            y, x = (int(v) for v in torch.randint(0, size, (2,), generator=g))
            images[t, b, :, y, x] = torch.tensor([1.0, 0.5])
    return images.view(T * B, 2, size, size)


def plain(images, conv, extra, weight, bias):
    x = torch.cat([F.relu(conv(images)).permute(0, 2, 3, 1).flatten(1), extra], dim=1)  # position-major
    return x @ weight.t() + bias


@pytest.mark.parametrize("geometry", [{}, {"stride": 2, "padding": 1}, {"dilation": 2}], ids=str)
def test_equals_the_plain_computation_with_gradients_across_episode_starts(geometry):
    torch.manual_seed(0)
    T, B, O, E = 9, 3, 5, 2
    images = written_images(T, B)
    starts = torch.zeros(T, B)
    starts[0] = 1
    starts[4, 1] = starts[7, 2] = 1
    images.view(T, B, 2, 6, 6)[4, 1] = torch.rand(2, 6, 6)  # a new episode starts from another image
    conv = nn.Conv2d(2, 3, 3, **geometry)
    positions = conv(images[:1]).shape[2:].numel()
    extra = torch.randn(T * B, E, requires_grad=True)
    weight = torch.randn(O, 3 * positions + E, requires_grad=True)
    bias = torch.randn(O, requires_grad=True)
    probe = torch.randn(T, B, O)
    leaves = [conv.weight, conv.bias, extra, weight, bias]

    got = incremental_conv_linear(images, conv, extra, weight, bias, starts)
    want = plain(images, conv, extra, weight, bias).view(T, B, O)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    got_grads = torch.autograd.grad((got * probe).sum(), leaves)
    want_grads = torch.autograd.grad((want * probe).sum(), leaves)
    for name, g, e in zip(["conv weight", "conv bias", "extra", "weight", "bias"], got_grads, want_grads):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5, msg=name)


def test_a_start_mid_sequence_is_not_a_difference():
    # env 0's image at step 2 equals its step 1 image but starts an episode: its projection is whole, and
    # the run of unchanged steps 0-1 does not continue into it (the gradient of step 2 only counts once)
    T, B = 3, 1
    images = torch.ones(T * B, 1, 3, 3)
    conv = nn.Conv2d(1, 1, 3)
    nn.init.constant_(conv.weight, 1.0)
    nn.init.zeros_(conv.bias)
    weight = torch.ones(1, 1, requires_grad=True)
    starts = torch.tensor([[1.0], [0.0], [1.0]])
    out = incremental_conv_linear(images, conv, torch.zeros(T * B, 0), weight, torch.zeros(1), starts)
    assert out.view(-1).tolist() == [9.0, 9.0, 9.0]
    (d_conv,) = torch.autograd.grad(out.sum(), [conv.weight])
    assert d_conv.view(-1).tolist() == [3.0] * 9


def test_a_grouped_conv_is_refused():
    conv = nn.Conv2d(2, 4, 3, groups=2)
    images = written_images(2, 1)
    with pytest.raises(ValueError, match="groups"):
        incremental_conv_linear(
            images, conv, torch.zeros(2, 0), torch.zeros(3, 4 * 16), torch.zeros(3), torch.ones(2, 1)
        )


def test_envs_writing_the_same_windows_share_their_differences(monkeypatch):
    # every episode starts from one empty image and envs 0 and 2 write the same cells: most (step,
    # position) entries are shared; with every row hashed alike, the exact comparison must take over
    torch.manual_seed(0)
    T, B, O = 8, 4, 6
    images = written_images(T, B).view(T, B, 2, 6, 6)
    images[0] = 0.0
    images[:, 2] = images[:, 0]
    images = images.reshape(T * B, 2, 6, 6)
    starts = torch.zeros(T, B)
    starts[0] = 1
    conv = nn.Conv2d(2, 3, 3)
    extra = torch.randn(T * B, 1, requires_grad=True)
    weight = torch.randn(O, 3 * 16 + 1, requires_grad=True)
    bias = torch.randn(O, requires_grad=True)
    probe = torch.randn(T, B, O)
    leaves = [conv.weight, conv.bias, extra, weight, bias]
    want = plain(images, conv, extra, weight, bias).view(T, B, O)
    want_grads = torch.autograd.grad((want * probe).sum(), leaves)
    for hashing in ("hash", "all rows collide"):
        if hashing != "hash":
            monkeypatch.setattr(incremental, "_row_hash", lambda v: torch.zeros(len(v), dtype=torch.long))
        got = incremental_conv_linear(images, conv, extra, weight, bias, starts)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        got_grads = torch.autograd.grad((got * probe).sum(), leaves)
        for name, g, e in zip(["conv weight", "conv bias", "extra", "weight", "bias"], got_grads, want_grads):
            torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5, msg=f"{name} ({hashing})")


def test_distinct_rows_are_ordered_by_group_and_rebuild_every_row():
    values = torch.tensor([[1.0, 0.0], [0.5, 0.5], [1.0, 0.0], [1.0, 0.0], [0.5, 0.5]])
    group = torch.tensor([0, 0, 0, 1, 1])
    first, inverse = incremental._distinct_rows(values, group)
    assert len(first) == 4  # (0, a), (0, b), (1, a), (1, b)
    assert torch.equal(values[first][inverse], values) and torch.equal(group[first][inverse], group)
    assert group[first].tolist() == [0, 0, 1, 1]


def test_half_precision_is_refused_with_a_clear_message():
    conv = nn.Conv2d(2, 3, 3)
    images = written_images(2, 1).bfloat16()
    with pytest.raises(ValueError, match="float32 or float64"):
        incremental_conv_linear(
            images, conv, torch.zeros(2, 0), torch.zeros(3, 3 * 16), torch.zeros(3), torch.ones(2, 1)
        )
