"""`ued.packed_linear`: oneDNN's packed-weight product in rollouts, equal to F.linear to float32 rounding,
packed again in each `frozen_weights` block (of its own thread), and the LSTM step built on it equal to
torch.lstm_cell."""

from __future__ import annotations

import threading

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ued import packed_linear as pl
from ued.models import lstm_step

needs_onednn = pytest.mark.skipif(not pl.AVAILABLE, reason="oneDNN packed products: x86 CPUs with oneDNN")


@needs_onednn
@pytest.mark.parametrize("shape", [(32, 149, 1024), (7, 256, 1024), (32, 2000, 64), (1, 5, 3)])
def test_packed_product_equals_linear_inside_a_frozen_block_without_gradients(shape):
    n, k, m = shape
    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(n, k, generator=g), torch.randn(m, k, generator=g), torch.randn(m, generator=g)
    tol = {"rtol": 1e-5, "atol": 1e-4 * k**0.5}
    with torch.no_grad():
        assert not pl.applies(x)  # outside a block: F.linear
        assert torch.equal(pl.packed_linear(x, w, b), F.linear(x, w, b))
        with pl.frozen_weights():
            assert pl.applies(x)
            out = pl.packed_linear(x, w, b)
            assert torch.allclose(out, F.linear(x, w, b), **tol)
            assert torch.allclose(pl.packed_linear(x, w), F.linear(x, w), **tol)
            assert torch.equal(pl.packed_linear(x, w, b), out)  # the same packed copy, the same bits
            # a strided or broadcast bias, as F.linear takes them
            wide = torch.randn(2 * m, generator=g)
            strided = pl.packed_linear(x, w, wide[::2])
            assert torch.allclose(strided, F.linear(x, w, wide[::2]), **tol)
            assert torch.allclose(
                pl.packed_linear(x, w, wide[:1].expand(m)), F.linear(x, w, wide[:1].expand(m)), **tol
            )
            with torch.autocast("cpu", dtype=torch.bfloat16):
                assert not pl.applies(x)  # autocast's products are F.linear's
    with pl.frozen_weights():
        assert not pl.applies(x)  # gradients recorded: F.linear, differentiable
        w.requires_grad_(True)
        pl.packed_linear(x, w, b).sum().backward()
    assert w.grad is not None


@needs_onednn
def test_weights_changed_between_blocks_are_packed_again_even_by_fused_adam():
    layer = nn.Linear(64, 32)
    x = torch.randn(8, 64)
    opt = torch.optim.Adam(layer.parameters(), lr=0.1, fused=True)  # moves no version counter
    with torch.no_grad(), pl.frozen_weights():
        before = pl.packed_linear(x, layer.weight, layer.bias)
    layer(x).sum().backward()
    opt.step()
    with torch.no_grad(), pl.frozen_weights():
        after = pl.packed_linear(x, layer.weight, layer.bias)
        assert torch.allclose(after, F.linear(x, layer.weight, layer.bias), atol=1e-4)
        assert not torch.allclose(after, before, atol=1e-2)
        # a new tensor never reads another's packed copy, even at a recycled id
        for _ in range(3 * pl.MAX_PACKED):
            w = torch.randn(32, 64)
            assert torch.allclose(pl.packed_linear(x, w), F.linear(x, w), atol=1e-4)
        assert len(pl._block()) <= pl.MAX_PACKED
    assert pl._block() is None  # the copies go with the block


def test_lstm_step_equals_torch_lstm_cell_with_and_without_gradients():
    torch.manual_seed(0)
    lstm = nn.LSTM(149, 256)
    x, h, c = torch.randn(32, 149), torch.randn(32, 256), torch.randn(32, 256)
    args = (lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0)
    ref_h, ref_c = torch.lstm_cell(x, (h, c), *args)
    with torch.no_grad(), pl.frozen_weights():
        h1, c1 = lstm_step(lstm, x, h, c)
    assert torch.allclose(h1, ref_h, atol=1e-5) and torch.allclose(c1, ref_c, atol=1e-5)
    h2, c2 = lstm_step(lstm, x, h, c)  # gradients recorded: torch.lstm_cell itself
    assert torch.equal(h2, ref_h) and torch.equal(c2, ref_c) and h2.requires_grad


def test_blocks_belong_to_their_thread():
    opened, done = threading.Event(), threading.Event()

    def hold_a_block():
        with pl.frozen_weights():
            opened.set()
            done.wait(10)

    other = threading.Thread(target=hold_a_block)
    other.start()
    try:
        assert opened.wait(10)
        assert pl._block() is None  # another thread's block is not this thread's
        with pl.frozen_weights():
            assert pl._block() == {}
        assert pl._block() is None
    finally:
        done.set()
        other.join()


def test_frozen_value_is_made_once_per_block_and_owner_and_key():
    made: list[str] = []

    def make(name: str):
        return lambda: made.append(name) or len(made)

    class Owner:
        pass

    a, b = Owner(), Owner()
    value = pl.frozen_value
    assert value(a, "k", make("a")) == 1 and value(a, "k", make("a")) == 2  # outside a block: every call
    with pl.frozen_weights():
        first = value(a, "k", make("a"))
        assert value(a, "k", make("a")) == first and value(b, "k", make("b")) == first + 1
        assert value(a, "other", make("a2")) == first + 2  # another key of the same owner
        with pl.frozen_weights():  # a nested block shares the outer one's values
            assert value(a, "k", make("a")) == first
    with pl.frozen_weights():  # a new block makes them again
        assert value(a, "k", make("a")) == first + 3
    assert made == ["a", "a", "a", "b", "a2", "a"]
