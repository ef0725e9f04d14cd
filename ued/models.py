"""Policy networks: the `Policy` interface shared by students and teachers, reusable building blocks, and the
published maze student (`MazePolicy`).

A policy acts one step at a time for B environments (`forward`) and re-evaluates whole rollouts at once for
PPO (`evaluate_sequence`): encoders and heads run batched over all T*B samples, and only the LSTM recurrence
runs over time, in as few chunks as the episode boundaries allow.

To write a new network, subclass `EncoderPolicy`: implement `encode(obs) -> [N, F]` (N samples, any obs
structure with the batch on dim 0) and `distribution(params) -> torch.distributions.Distribution`, and pass
the feature size, the LSTM size (0 = feed-forward) and the heads to its constructor. A network whose
observations have structure over time may override `sequence_features` (PAIRED's adversary computes its
LSTM input step to step, `ued.incremental`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Beta, Categorical, Distribution, Independent

from ued.errors import UsageError
from ued.packed_linear import applies, frozen_value, linear_packed, pack, packed_linear

#: recurrent state: an LSTM's (h, c), each [layers, B, H]; None for feed-forward policies
State = Any


# ----- building blocks ---------------------------------------------------------------------------------
def init_orthogonal(module: nn.Module, gain: float = math.sqrt(2.0)) -> nn.Module:
    """Orthogonal weights with `gain` and zero biases for every Linear / Conv layer in `module` (in place)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.Conv1d)):
            nn.init.orthogonal_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


def init_xavier(module: nn.Module, gain: float = 1.0, bias: float = 0.0) -> nn.Module:
    """xavier_uniform weights with `gain` and constant biases for every Conv layer in `module` (in place):
    dcd's conv initialisation (`apply_init_`; its CarRacing student uses the ReLU gain and bias 0.1)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv1d)):
            nn.init.xavier_uniform_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.constant_(m.bias, bias)
    return module


#: activations of hidden layers, by name (network options)
ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}


def mlp(
    in_size: int,
    hidden: Sequence[int],
    out_size: int | None = None,
    activation: type[nn.Module] = nn.ReLU,
    out_gain: float = 1.0,
    hidden_gain: float = math.sqrt(2.0),
) -> nn.Sequential:
    """Linear + activation layers of sizes `hidden`, then an optional linear output layer (orthogonal init,
    `hidden_gain` on the hidden layers, `out_gain` on the output: 0.01 for policy logits, 1 for values)."""
    layers: list[nn.Module] = []
    size = in_size
    for h in hidden:
        layers += [init_orthogonal(nn.Linear(size, h), gain=hidden_gain), activation()]
        size = h
    if out_size is not None:
        layers.append(init_orthogonal(nn.Linear(size, out_size), gain=out_gain))
    return nn.Sequential(*layers)


def lstm_initial_state(
    lstm: nn.LSTM, batch: int, device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero (h, c) for `lstm`, each [num_layers, batch, hidden_size]."""
    shape = (lstm.num_layers, batch, lstm.hidden_size)
    return torch.zeros(shape, device=device), torch.zeros(shape, device=device)


def mask_state(state: State, done: torch.Tensor) -> State:
    """The state with the envs where `done` [B] is 1 reset to zero (batch on dim 1 of every tensor)."""
    if state is None:
        return None
    keep = (1.0 - done.float()).view(1, -1, 1)
    if isinstance(state, tuple):
        return tuple(s * keep for s in state)
    return state * keep


class _LSTMSequence(torch.autograd.Function):
    """One LSTM layer over x [T, B, F] with per-step state masks, forward and backward written out.

    The input projection (all T*B samples at once) and, in the backward pass, the weight gradients are single
    large matrix products; only h @ W_hh (forward) and dgates @ W_hh (backward) run per step, so the cost does
    not depend on where episodes start. `keep` [T, B, 1] multiplies the state before step t (0 = reset);
    `cuts[t]` says whether step t has any reset. `dtype` is the matrix products' dtype (bfloat16 under CPU
    autocast); states, gates and gradients stay float32. PyTorch gate order: i, f, g, o. With `w_ih` None,
    x [T, B, 4H] is the input projection itself, biases included (`lstm_recurrence`).

    Speed: the per-step work is a few element-wise ops on [B, H] and [B, 4H] tensors, each touched while it is
    in cache (no passes over whole [T, B, 4H] arrays in the backward pass), and tanh is computed as
    2 sigmoid(2a) - 1 (the g rows of the weights are doubled, which is exact), because torch's CPU tanh costs
    ~5x its sigmoid per element. In float32 on x86 CPUs the input projection and the per-step products are
    oneDNN's, the per-step weights packed once per call (`ued.packed_linear.pack`: ~20% faster fwd+bwd than
    torch's MKL products on a 2-core AMD EPYC). Results agree with torch's LSTM to float32 rounding
    (tests/test_models.py).
    """

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, bias, keep, cuts, dtype):  # type: ignore[override]
        T, B, F_in = x.shape
        H = w_hh.shape[1]
        if w_ih is None:  # x holds the input projections, biases included: [T, B, 4H]
            xb = wb = None
            gates = x.reshape(T * B, 4 * H).to(torch.float32, copy=True)
            gates[:, 2 * H : 3 * H].mul_(2.0)
        else:
            # [x, 1, 0...] @ [W_ih, bias, 0...]^T: the bias rides in the product, and a width that is a
            # multiple of 16 keeps the BLAS kernels on their fast path (149 -> 160 is ~1.5x faster on AVX-512)
            width = (F_in + 1 + 15) // 16 * 16
            xb = x.new_zeros(T * B, width, dtype=dtype)
            xb[:, :F_in] = x.reshape(T * B, F_in)
            xb[:, F_in] = 1.0
            wb = w_ih.new_zeros(4 * H, width, dtype=dtype)
            wb[:, :F_in] = w_ih
            wb[:, F_in] = bias
            wb2 = wb.clone()
            wb2[2 * H : 3 * H].mul_(2.0)
            packed_ih = pack(wb2, T * B)
            gates = torch.mm(xb, wb2.t()) if packed_ih is None else linear_packed(xb, packed_ih)
            if dtype != torch.float32:
                gates = gates.float()
        gates = gates.view(T, B, 4 * H)
        out = x.new_empty(T, B, H, dtype=torch.float32)
        cells = torch.empty_like(out)
        tanh_cells = torch.empty_like(out)
        whh2 = w_hh.to(dtype=dtype, copy=True)
        whh2[2 * H : 3 * H].mul_(2.0)
        whh_t = whh2.t()
        packed_hh = pack(whh2, B)
        gv = gates.view(T, B, 4, H)
        i_s, f_s, g_s, o_s = (gv[:, :, k].unbind(0) for k in range(4))
        h, c = h0, c0
        for t, (a, i_t, f_t, g_t, o_t, h_t, c_t, tc_t) in enumerate(
            zip(
                gates.unbind(0),
                i_s,
                f_s,
                g_s,
                o_s,
                out.unbind(0),
                cells.unbind(0),
                tanh_cells.unbind(0),
                strict=True,
            )
        ):
            if cuts[t]:
                h, c = h * keep[t], c * keep[t]
            if packed_hh is not None:
                a.add_(linear_packed(h, packed_hh))
            elif dtype == torch.float32:
                a.addmm_(h, whh_t)
            else:
                a.add_(torch.mm(h.to(dtype), whh_t))
            a.sigmoid_()
            g_t.mul_(2.0).sub_(1.0)  # tanh of the g gate's pre-activation
            c = torch.mul(f_t, c, out=c_t).addcmul_(i_t, g_t)
            torch.mul(c, 2.0, out=tc_t).sigmoid_().mul_(2.0).sub_(1.0)  # tanh(c)
            h = torch.mul(o_t, tc_t, out=h_t)
        ctx.save_for_backward(xb, wb, h0, c0, w_hh, keep, gates, out, cells, tanh_cells)
        ctx.cuts, ctx.dtype, ctx.f_in = cuts, dtype, F_in
        return out, h, c

    @staticmethod
    def backward(ctx, d_out, d_h, d_c):  # type: ignore[override]
        xb, wb, h0, c0, w_hh, keep, gates, out, cells, tanh_cells = ctx.saved_tensors
        cuts, dtype, F_in = ctx.cuts, ctx.dtype, ctx.f_in
        T, B, H4 = gates.shape
        H = H4 // 4
        # the state each step started from (after its reset)
        h_in = torch.cat([h0.unsqueeze(0), out[:-1]])
        c_in = torch.cat([c0.unsqueeze(0), cells[:-1]])
        for t, cut in enumerate(cuts):
            if cut:
                h_in[t].mul_(keep[t])
                c_in[t].mul_(keep[t])
        d_gates = torch.empty_like(gates)
        mm_hh = w_hh.to(dtype)
        packed_hh_t = pack(w_hh.t().contiguous(), B) if dtype == torch.float32 else None
        dh = d_h.clone() if d_h is not None else torch.zeros_like(h0)
        dc = d_c.clone() if d_c is not None else torch.zeros_like(c0)
        ones = torch.ones_like(h0)
        scratch = torch.empty_like(h0)
        gv = gates.view(T, B, 4, H)
        dv = d_gates.view(T, B, 4, H)
        i_s, f_s, g_s, o_s = (gv[:, :, k].unbind(0) for k in range(4))
        di_s, df_s, dg_s, do_s = (dv[:, :, k].unbind(0) for k in range(4))
        d_outs = d_out.unbind(0) if d_out is not None else [None] * T
        steps = zip(
            d_outs,
            gates.unbind(0),
            d_gates.unbind(0),
            i_s,
            f_s,
            g_s,
            o_s,
            di_s,
            df_s,
            dg_s,
            do_s,
            tanh_cells.unbind(0),
            c_in.unbind(0),
            strict=True,
        )
        for t, (d_o, a, da, i_t, f_t, g_t, o_t, di, df, dg, do, tc, c_prev) in reversed(
            list(enumerate(steps))
        ):
            if d_o is not None:
                dh.add_(d_o)
            # dc += dh * o * (1 - tanh(c)^2)
            torch.addcmul(ones, tc, tc, value=-1, out=scratch).mul_(o_t)
            dc.addcmul_(dh, scratch)
            # sigmoid'(a) = s (1 - s) for all four slots; the g slot is then replaced by tanh' = 1 - g^2
            torch.addcmul(a, a, a, value=-1, out=da)
            torch.addcmul(ones, g_t, g_t, value=-1, out=dg)
            di.mul_(g_t).mul_(dc)
            df.mul_(c_prev).mul_(dc)
            dg.mul_(i_t).mul_(dc)
            do.mul_(tc).mul_(dh)
            if packed_hh_t is not None:
                dh = linear_packed(da, packed_hh_t)
            elif dtype == torch.float32:
                dh = torch.mm(da, w_hh)
            else:
                dh = torch.mm(da.to(dtype), mm_hh).float()
            dc = dc * f_t
            if cuts[t]:
                dh.mul_(keep[t])
                dc.mul_(keep[t])
        flat = d_gates.view(T * B, H4).to(dtype)
        d_w_hh = torch.mm(flat.t(), h_in.view(T * B, H).to(dtype)).float()
        if wb is None:  # the input projections were given: their gradient is the gates'
            return (
                (d_gates if ctx.needs_input_grad[0] else None),
                dh,
                dc,
                None,
                d_w_hh,
                None,
                None,
                None,
                None,
            )
        d_wb = torch.mm(flat.t(), xb).float()
        d_x = None
        if ctx.needs_input_grad[0]:
            d_x = torch.mm(flat, wb)[:, :F_in].float().reshape(T, B, F_in)
        return d_x, dh, dc, d_wb[:, :F_in], d_w_hh, d_wb[:, F_in], None, None, None


#: `lstm_sequence` runs the recurrence step by step (`_LSTMSequence`) when a sequence of T steps would be cut
#: into more than T / STEPWISE_ABOVE chunks; fewer, longer chunks run faster as fused oneDNN calls, whose
#: fixed cost per call dominates when there are many (crossover 32-64 chunks of T = 256 for the maze student
#: on a 2-core AVX-512 CPU, 1 or 2 threads: benchmarks/README.md)
STEPWISE_ABOVE = 5


def _cuts(dones: torch.Tensor) -> list[bool]:
    """Per step of dones [T, B]: whether some env starts an episode there; always True at step 0 (state0 may
    belong to finished episodes, so its mask is always applied)."""
    any_done = (dones > 0).any(dim=1)
    any_done[0] = True
    return any_done.tolist()


def _fused_lstm_ok(x: torch.Tensor) -> bool:
    """Whether torch's fused LSTM can run `x` under the current autocast: oneDNN has no bfloat16 LSTM on
    CPUs without bf16 instructions (e.g. AVX2-only), where the stepwise recurrence must run instead."""
    if x.device.type != "cpu" or not torch.is_autocast_enabled("cpu"):
        return True
    if torch.get_autocast_dtype("cpu") != torch.bfloat16:
        return True
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def lstm_sequence(
    lstm: nn.LSTM,
    x: torch.Tensor,
    state: tuple[torch.Tensor, torch.Tensor],
    dones: torch.Tensor,
    method: str = "auto",
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Run `lstm` (one layer) over x [T, B, F] from `state`, zeroing the state of env b before step t where
    dones[t, b] is 1. Returns (outputs [T, B, H], final state), as stepping `lstm` one step at a time would.

    Two equivalent methods: "chunks" cuts the sequence at the steps where some env starts an episode and runs
    each chunk as one fused `lstm` call; "steps" (CPU, single-layer LSTMs) runs the recurrence step by step
    with the input projection and the weight gradients batched over all T*B samples (`_LSTMSequence`), so its
    cost does not depend on the episode starts. "auto" picks "steps" on the CPU when there are more than
    T / STEPWISE_ABOVE chunks, or when the fused LSTM cannot run bfloat16 on this CPU (`_fused_lstm_ok`). Both
    follow `torch.autocast` (bfloat16 matrix products, float32 states)."""
    T = x.shape[0]
    cuts = _cuts(dones)
    stepwise_ok = x.device.type == "cpu" and lstm.num_layers == 1 and lstm.bias and not lstm.bidirectional
    if method not in ("auto", "chunks", "steps"):
        raise ValueError(f"unknown lstm_sequence method {method!r}; use auto, chunks or steps")
    if method == "steps" and not stepwise_ok:
        raise ValueError("lstm_sequence method 'steps' needs a one-layer, unidirectional CPU LSTM with bias")
    many_chunks = sum(cuts) * STEPWISE_ABOVE > T
    if method == "steps" or (method == "auto" and stepwise_ok and (many_chunks or not _fused_lstm_ok(x))):
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else torch.float32
        h0, c0 = state
        with torch.autocast("cpu", enabled=False):
            out, h, c = _LSTMSequence.apply(
                x.float(),
                h0[0].float(),
                c0[0].float(),
                lstm.weight_ih_l0,
                lstm.weight_hh_l0,
                lstm.bias_ih_l0 + lstm.bias_hh_l0,
                (1.0 - dones.float()).unsqueeze(-1),
                cuts,
                dtype,
            )
        return out, (h.unsqueeze(0), c.unsqueeze(0))
    starts = [t for t, cut in enumerate(cuts) if cut] + [T]
    outputs = []
    # split, not sliced: the backward pass then joins the chunks' gradients once instead of adding each
    # chunk's, zero-padded to [T, B, F]
    pieces = x.split([end - start for start, end in itertools.pairwise(starts)])
    for start, piece in zip(starts[:-1], pieces, strict=True):
        state = mask_state(state, dones[start])
        out, state = lstm(piece, state)
        outputs.append(out)
    return (outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=0)), state


def lstm_step(
    lstm: nn.LSTM, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of the one-layer `lstm`: x [B, F], h and c [B, H] -> the next (h, c). `torch.lstm_cell`
    (~60% of an nn.LSTM call at batch 32), except in a CPU rollout (a `frozen_weights` block, no gradients),
    where the gate products are `ued.packed_linear`'s (weights packed once per rollout: 3x faster for
    PAIRED's adversary)."""
    w_ih, w_hh, b_ih, b_hh = lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0
    if not applies(x):
        return torch.lstm_cell(x, (h, c), w_ih, w_hh, b_ih, b_hh)
    gates = packed_linear(x, w_ih, b_ih).add_(packed_linear(h, w_hh, b_hh))
    gates[:, 2 * h.shape[1] : 3 * h.shape[1]].mul_(2.0)
    return lstm_cell_from_gates(gates, c)


def lstm_cell_from_gates(gates: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The LSTM cell's element-wise part: gate pre-activations [B, 4H] (PyTorch order i, f, g, o), the g slot
    doubled (overwritten), and c [B, H] -> the next (h, c). tanh(a) is computed as 2 sigmoid(2a) - 1, with one
    sigmoid over all gates: torch's CPU tanh costs ~5x its sigmoid, and this element-wise part takes ~30
    instead of ~50 microseconds at B = 32, H = 256."""
    i, f, g, o = gates.sigmoid_().chunk(4, 1)
    c = torch.mul(f, c).addcmul_(i, g.mul_(2.0).sub_(1.0))
    return torch.mul(c, 2.0).sigmoid_().mul_(2.0).sub_(1.0).mul_(o), c


def run_heads(actor: nn.Module, critic: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(actor(x), critic(x)) for x [N, F]; where both heads are Sequentials that begin with a Linear layer (with
    biases alike), those two layers run as one product (equal to float32 rounding; PPO's forward and backward
    through the maze student's heads at [8192, 256] take 6.7 instead of ~12.5 ms on 2 threads). Plain
    `nn.Sequential` and `nn.Linear` only, without hooks: a subclass's own `forward` is called as it is."""
    a, c = _first_linear(actor), _first_linear(critic)
    if a is None or c is None or a.in_features != c.in_features or (a.bias is None) != (c.bias is None):
        return actor(x), critic(x)
    bias = None if a.bias is None else torch.cat([a.bias, c.bias])
    y_actor, y_critic = F.linear(x, torch.cat([a.weight, c.weight]), bias).split(
        [a.out_features, c.out_features], dim=-1
    )
    for layer in list(actor)[1:]:
        y_actor = layer(y_actor)
    for layer in list(critic)[1:]:
        y_critic = layer(y_critic)
    return y_actor, y_critic


def _plain(module: nn.Module, kind: type) -> bool:
    """Whether `module` is exactly a `kind` (not a subclass with its own forward) without forward hooks: a
    layer whose product may be computed in its place."""
    return type(module) is kind and not (module._forward_hooks or module._forward_pre_hooks)


def _first_linear(head: nn.Module) -> nn.Linear | None:
    """The first layer of a plain Sequential head when it is a plain Linear layer."""
    if not _plain(head, nn.Sequential) or not len(head) or not _plain(head[0], nn.Linear):
        return None
    return head[0]


#: activation layers applied in place to a product's fresh output (a module call costs a few microseconds)
_IN_PLACE: dict[type, Callable[[torch.Tensor], torch.Tensor]] = {nn.Tanh: torch.tanh_, nn.ReLU: torch.relu_}


class MergedHeads:
    """An actor and a critic MLP of the same shape (plain Sequentials of plain Linear layers, `_plain`, and the
    same element-wise activations after them: tanh or ReLU; the critic's output one value), as one MLP for
    rollout steps: the first layers' weights stacked, the later ones block-diagonal. Half the products per
    step; the outputs are equal to the two heads' to float32 rounding. `of(actor, critic)` is None for heads
    of other shapes. torch's own products: at these sizes faster than oneDNN's packed ones, which cost ~11
    microseconds a call whatever the size. (`run_heads` is the counterpart with gradients: the weights stay
    the modules' own, and only the first layers merge.)"""

    def __init__(self, layers: list[tuple[torch.Tensor, torch.Tensor | None, Callable | None]]):
        self.layers = layers  # (weight, bias, activation after it)

    @classmethod
    @torch.no_grad()
    def of(cls, actor: nn.Module, critic: nn.Module) -> MergedHeads | None:
        if not _plain(actor, nn.Sequential) or not _plain(critic, nn.Sequential):
            return None
        a_layers, c_layers = list(actor.children()), list(critic.children())
        if len(a_layers) != len(c_layers) or not a_layers or not isinstance(a_layers[-1], nn.Linear):
            return None
        layers: list[tuple[torch.Tensor, torch.Tensor | None, Callable | None]] = []
        for a, c in zip(a_layers, c_layers, strict=True):
            if _plain(a, nn.Linear) and _plain(c, nn.Linear):
                if (a.bias is None) != (c.bias is None):
                    return None
                if not layers:
                    if a.in_features != c.in_features:
                        return None
                    weight = torch.cat([a.weight, c.weight])
                else:
                    weight = torch.block_diag(a.weight, c.weight)
                bias = None if a.bias is None else torch.cat([a.bias, c.bias])
                layers.append((weight.contiguous(), bias, None))
            elif type(a) in _IN_PLACE and _plain(a, type(a)) and _plain(c, type(a)) and layers:
                if layers[-1][2] is not None:
                    return None
                layers[-1] = (layers[-1][0], layers[-1][1], _IN_PLACE[type(a)])
            else:
                return None
        if c_layers[-1].out_features != 1:
            return None
        return cls(layers)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, in] -> (actor outputs [B, A], values [B])."""
        for weight, bias, activation in self.layers:
            x = F.linear(x, weight, bias)
            if activation is not None:
                x = activation(x)
        return x[:, :-1], x[:, -1]


def lstm_recurrence(
    lstm: nn.LSTM, projected: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], dones: torch.Tensor
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """`lstm_sequence` for a caller that computed the input projection itself: projected [T, B, 4H] =
    x @ weight_ih^T + bias_ih + bias_hh (e.g. faster, from the structure of x). Runs the one-layer recurrence
    step by step in float32 (`_LSTMSequence`), zeroing the state of env b before step t where dones[t, b]
    is 1. Returns (outputs [T, B, H], final state)."""
    if lstm.num_layers != 1 or lstm.bidirectional:
        raise ValueError("lstm_recurrence needs a one-layer, unidirectional LSTM")
    h0, c0 = state
    out, h, c = _LSTMSequence.apply(
        projected.float(),
        h0[0].float(),
        c0[0].float(),
        None,
        lstm.weight_hh_l0,
        None,
        (1.0 - dones.float()).unsqueeze(-1),
        _cuts(dones),
        torch.float32,
    )
    return out, (h.unsqueeze(0), c.unsqueeze(0))


def flatten_time(obs: Any) -> Any:
    """[T, B, ...] -> [T*B, ...] for a tensor or a dict of tensors (a view, no copy, when contiguous)."""
    if isinstance(obs, dict):
        return {k: flatten_time(v) for k, v in obs.items()}
    return obs.reshape(obs.shape[0] * obs.shape[1], *obs.shape[2:])


class _Categorical(Categorical):
    """`Categorical(logits=...)` with lighter construction, `sample()` and `log_prob` for the common case (one
    sample, actions shaped like the batch): the same numbers and the same random draws (torch.multinomial on
    the same probabilities), at a third of the per-step overhead of the general code."""

    def __init__(self, logits: torch.Tensor):
        self.logits = logits - logits.logsumexp(dim=-1, keepdim=True)
        self._param = self.logits
        self._num_events = logits.shape[-1]
        Distribution.__init__(self, logits.shape[:-1], validate_args=False)

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> torch.Tensor:
        if len(sample_shape):
            return super().sample(sample_shape)
        with torch.no_grad():
            draw = torch.multinomial(self.probs.reshape(-1, self._num_events), 1, True)
        return draw.view(self._batch_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if value.shape != self._batch_shape:
            return super().log_prob(value)
        return self.logits.gather(-1, value.long().unsqueeze(-1)).squeeze(-1)


def categorical(logits: torch.Tensor) -> Categorical:
    """A categorical over the last dim of `logits` (argument validation off: it costs time every step)."""
    return _Categorical(logits)


def beta_from_params(params: torch.Tensor) -> Independent:
    """Independent Beta per action dim from raw params [..., 2*A]: alpha, beta = 1 + softplus (dcd CarRacing);
    samples lie in [0, 1] (rescale to the action range in the env); log_prob / entropy sum over the A dims."""
    alpha, beta = params.chunk(2, dim=-1)
    return Independent(Beta(1.0 + F.softplus(alpha), 1.0 + F.softplus(beta), validate_args=False), 1)


def deterministic_action(dist: Distribution) -> torch.Tensor:
    """The distribution's most likely action (its mode; its mean where no mode is defined)."""
    try:
        return dist.mode
    except (NotImplementedError, AttributeError):
        return dist.mean


# ----- the interface -----------------------------------------------------------------------------------
class Policy(nn.Module):
    """Actor-critic interface used by students and teachers (see CONTRIBUTING.md).

    `forward(obs, state, done)` acts for one step of B envs: `done` [B] float is 1 where a new episode
    starts at this step (the state is reset before the step). Returns (dist, value [B], next state);
    `dist.log_prob(action)` and `dist.entropy()` are [B]. `evaluate_sequence` re-evaluates a rollout for PPO.
    """

    is_recurrent: bool = False

    @classmethod
    def for_family(cls, family: Any, **options: Any) -> Policy:
        """The network for level family `family`, built with `options` (default: `cls(**options)`; a
        network whose sizes follow the family, e.g. its observation length, overrides this)."""
        return cls(**options)

    def initial_state(self, batch: int, device: torch.device | str = "cpu") -> State:
        """Recurrent state at the start of an episode (None for feed-forward policies)."""
        return None

    def forward(self, obs: Any, state: State, done: torch.Tensor) -> tuple[Distribution, torch.Tensor, State]:
        raise NotImplementedError

    def evaluate_sequence(
        self, obs: Any, state0: State, dones: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Re-evaluate T steps of B envs: obs [T, B, ...] (or dict), state0 the state before step 0, dones
        [T, B] as in `forward`, actions [T, B, ...] -> (log_prob [T, B], entropy [T, B], value [T, B]).
        This generic version steps `forward` over time; subclasses batch it."""
        log_probs, entropies, values = [], [], []
        state = state0
        for t in range(dones.shape[0]):
            step_obs = {k: v[t] for k, v in obs.items()} if isinstance(obs, dict) else obs[t]
            dist, value, state = self(step_obs, state, dones[t])
            log_probs.append(dist.log_prob(actions[t]))
            entropies.append(dist.entropy())
            values.append(value)
        return torch.stack(log_probs), torch.stack(entropies), torch.stack(values)


class EncoderPolicy(Policy):
    """encoder -> optional LSTM -> actor and critic heads, with batched `evaluate_sequence`.

    Subclasses implement `encode(obs) -> features [N, feature_size]` and usually `distribution(params)`
    (default: categorical over the actor's outputs). `hidden_size` 0 makes the policy feed-forward.
    """

    def __init__(self, feature_size: int, hidden_size: int, actor: nn.Module, critic: nn.Module):
        super().__init__()
        self.feature_size = feature_size
        self.hidden_size = hidden_size
        self.is_recurrent = hidden_size > 0
        self.core = nn.LSTM(feature_size, hidden_size) if self.is_recurrent else None
        if self.core is not None:
            for name, p in self.core.named_parameters():
                if "weight" in name:
                    nn.init.orthogonal_(p)
                else:
                    nn.init.zeros_(p)
        self.actor = actor
        self.critic = critic

    def encode(self, obs: Any) -> torch.Tensor:
        """Observation batch (batch on dim 0) -> features [N, feature_size]."""
        raise NotImplementedError

    def distribution(self, params: torch.Tensor, obs: Any = None) -> Distribution:
        """Actor output [N, ...] (and the observations [N, ...] it came from, for policies that mask
        actions) -> action distribution with per-sample log_prob / entropy."""
        return categorical(params)

    def initial_state(self, batch: int, device: torch.device | str = "cpu") -> State:
        return lstm_initial_state(self.core, batch, device) if self.core is not None else None

    def _heads(self, features: torch.Tensor, obs: Any) -> tuple[Distribution, torch.Tensor]:
        params, value = run_heads(self.actor, self.critic, features)
        return self.distribution(params, obs), value.squeeze(-1)

    def forward(self, obs: Any, state: State, done: torch.Tensor) -> tuple[Distribution, torch.Tensor, State]:
        x = self.encode(obs)
        if self.core is not None:
            h, c = mask_state(state, done)
            h, c = lstm_step(self.core, x, h[0], c[0])
            x, state = h, (h.unsqueeze(0), c.unsqueeze(0))
        dist, value = self._heads(x, obs)
        return dist, value, state

    def evaluate_sequence(
        self, obs: Any, state0: State, dones: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batched over all T*B samples; only the LSTM recurrence runs over time (`lstm_sequence`). Under
        `torch.autocast` only the LSTM runs in reduced precision (PPOConfig.bf16); encoder and heads stay
        float32, so log-probs and values keep float32 resolution."""
        T, B = dones.shape
        device_type = dones.device.type
        flat = flatten_time(obs)
        x = self.sequence_features(flat, state0, dones)
        with torch.autocast(device_type, enabled=False):
            dist, value = self._heads(x, flat)
            log_prob = dist.log_prob(flatten_time(actions))
            entropy = dist.entropy()
        return log_prob.view(T, B), entropy.view(T, B), value.view(T, B)

    def sequence_features(self, flat: Any, state0: State, dones: torch.Tensor) -> torch.Tensor:
        """The heads' input for T steps of B envs: observations flattened to [T*B, ...], the state before
        step 0 and dones [T, B] -> [T*B, core output]: `encode`, then the LSTM over time (`lstm_sequence`)."""
        T, B = dones.shape
        with torch.autocast(dones.device.type, enabled=False):
            x = self.encode(flat)
        if self.core is None:
            return x
        out, _ = lstm_sequence(self.core, x.view(T, B, -1), state0, dones)
        return out.reshape(T * B, -1).float()


# ----- student networks by name ----------------------------------------------------------------------
#: student networks (`ued train --student NAME`, `LevelFamily.default_student`): name -> Policy class
STUDENTS: dict[str, type[Policy]] = {}


def register_student(name: str) -> Callable[[type[Policy]], type[Policy]]:
    """Class decorator: make a `Policy` class available as student network `name`."""

    def register(cls: type[Policy]) -> type[Policy]:
        old = STUDENTS.get(name)
        if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"student network name {name!r} is taken by {old.__qualname__}")
        STUDENTS[name] = cls
        return cls

    return register


def make_student(family: Any, name: str | None = None, options: dict[str, Any] | None = None) -> Policy:
    """The student network `name` (default: the family's `default_student`) for `family`, with `options`;
    an unknown name or option is a UsageError."""
    name = name or family.default_student
    if name is None:
        raise UsageError(
            f"environment {family.name!r} declares no default student network; pass --student NAME "
            f"(one of: {', '.join(sorted(STUDENTS))})"
        )
    if name not in STUDENTS:
        raise UsageError(f"unknown student network {name!r}; choose one of: {', '.join(sorted(STUDENTS))}")
    try:
        return STUDENTS[name].for_family(family, **dict(options or {}))
    except TypeError as exc:
        raise UsageError(f"bad option for student network {name!r}: {exc}") from None


# ----- the maze student ------------------------------------------------------------------------------
@register_student("maze-lstm")
class MazePolicy(EncoderPolicy):
    """The published maze student (dcd's `MultigridNetwork`): the 5x5x3 partial view divided by 10 through a
    3x3 conv (16 channels, xavier init) and a ReLU, the direction one-hot through a linear layer (5), an
    LSTM 256, and actor and critic heads of one tanh layer of 32 (dcd's "(32, 32)" argument builds one),
    over the 7 categorical MiniGrid actions.

    Observations: {"image": uint8 [B, V, V, 3] (minigrid object, colour, state indices), "direction":
    int64 [B] in 0..3}.
    """

    def __init__(
        self,
        view_size: int = 5,
        num_actions: int = 7,
        conv_channels: int = 16,
        direction_embedding: int = 5,
        hidden_size: int = 256,
        head_sizes: Sequence[int] = (32,),
        activation: str = "tanh",
        image_scale: float = 10.0,
    ):
        conv_out = conv_channels * (view_size - 2) ** 2
        feature_size = conv_out + direction_embedding
        core_out = hidden_size if hidden_size > 0 else feature_size
        act = ACTIVATIONS[activation]
        super().__init__(
            feature_size,
            hidden_size,
            actor=mlp(core_out, head_sizes, num_actions, activation=act, out_gain=0.01),
            critic=mlp(core_out, head_sizes, 1, activation=act, out_gain=1.0),
        )
        self.view_size = view_size
        self.num_actions = num_actions
        self.image_scale = float(image_scale)
        self.conv = init_xavier(nn.Conv2d(3, conv_channels, kernel_size=3))
        self.direction = nn.Linear(4, direction_embedding)  # on the one-hot direction, torch's default init

    def forward(self, obs: Any, state: State, done: torch.Tensor) -> tuple[Distribution, torch.Tensor, State]:
        """As `EncoderPolicy.forward`; in a CPU rollout (`ued.packed_linear.applies`) through the folded weights
        of `_MazeRolloutWeights` (one step ~200 instead of ~350 microseconds at batch 32, 2 threads)."""
        if self.core is None or not applies(state[0][0]):
            return super().forward(obs, state, done)
        folded = frozen_value(self, "rollout", lambda: _MazeRolloutWeights.of(self, done.shape[0]))
        if folded is None:
            return super().forward(obs, state, done)
        h, c = mask_state(state, done)
        image = obs["image"].reshape(done.shape[0], -1).to(torch.float32, copy=True).div_(self.image_scale)
        conv = F.linear(image, folded.conv, folded.conv_bias).relu_()
        gates = linear_packed(torch.cat([conv, h[0]], 1), folded.gates)
        gates.add_(folded.direction.index_select(0, obs["direction"].long().view(-1)))
        h, c = lstm_cell_from_gates(gates, c[0])
        params, value = folded.heads(h)
        return self.distribution(params, obs), value, (h.unsqueeze(0), c.unsqueeze(0))

    def encode(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        image = obs["image"].permute(0, 3, 1, 2).float() / self.image_scale  # [N, 3, V, V]
        x = F.relu(self.conv(image)).flatten(1)
        direction = F.one_hot(obs["direction"].long().view(-1), 4).float()
        return torch.cat([x, self.direction(direction)], dim=1)


#: the largest conv matrix (entries) that `_MazeRolloutWeights` folds: views up to 7x7 at 16 channels
MAX_FOLDED_CONV = 1 << 16


@dataclass(frozen=True)
class _MazeRolloutWeights:
    """`MazePolicy`'s weights folded for rollout steps (the same function, float32 rounding apart): the conv as
    one matrix on the flattened image, its output and the state in one gate product, and the direction
    embedding, the LSTM's biases included, as a table of the 4 directions' gate offsets (the g slot doubled
    in both, for `lstm_cell_from_gates`)."""

    conv: torch.Tensor  # [C*(V-2)^2, V*V*3]: the image [V, V, 3] flattened -> conv outputs (C, y, x)
    conv_bias: torch.Tensor  # [C*(V-2)^2]
    gates: torch.Tensor  # packed [4H, C*(V-2)^2 + H]: [conv outputs, h] -> gate pre-activations
    direction: torch.Tensor  # [4, 4H]
    heads: MergedHeads

    @classmethod
    def of(cls, policy: MazePolicy, batch: int) -> _MazeRolloutWeights | None:
        """The folded weights of `policy` (no gradients; the gate product packed, `ued.packed_linear.pack`), or
        None where they would not be the same function or not faster: a subclass's own `encode` or `_heads`,
        a conv other than a plain 3x3 one, a conv matrix above `MAX_FOLDED_CONV` entries (it grows as the
        view's 4th power: at a 15x15 view the folded step is 2x slower), heads that do not merge."""
        conv = policy.conv
        plain_conv = (
            type(conv) is nn.Conv2d
            and conv.stride == (1, 1)
            and conv.padding == (0, 0)
            and conv.dilation == (1, 1)
            and conv.groups == 1
            and conv.bias is not None
        )
        v = policy.view_size
        if (
            type(policy).encode is not MazePolicy.encode
            or type(policy)._heads is not EncoderPolicy._heads
            or not plain_conv
            or v * v * 3 * conv.out_channels * (v - 2) ** 2 > MAX_FOLDED_CONV
        ):
            return None
        heads = MergedHeads.of(policy.actor, policy.critic)
        if heads is None:
            return None
        with torch.no_grad():
            core = policy.core
            basis = torch.eye(v * v * 3, device=conv.weight.device).view(-1, v, v, 3).permute(0, 3, 1, 2)
            conv_matrix = F.conv2d(basis, conv.weight).flatten(1).t().contiguous()
            conv_out = conv_matrix.shape[0]
            w_ih = core.weight_ih_l0
            gates = torch.cat([w_ih[:, :conv_out], core.weight_hh_l0], 1)
            embedded = policy.direction.weight.t() + policy.direction.bias  # [4, E]: each one-hot's output
            direction = embedded @ w_ih[:, conv_out:].t() + core.bias_ih_l0 + core.bias_hh_l0
            hidden = core.hidden_size
            gates[2 * hidden : 3 * hidden] *= 2.0  # the g slot doubled, as `lstm_cell_from_gates` takes it
            direction[:, 2 * hidden : 3 * hidden] *= 2.0
            packed_gates = pack(gates, batch)
        if packed_gates is None:
            return None
        bias = conv.bias.detach().repeat_interleave(conv_out // conv.out_channels)
        return cls(conv_matrix, bias, packed_gates, direction.contiguous(), heads)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
