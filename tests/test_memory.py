"""Tests for the pure memory primitives in ``mann_zoo.memory``.

Every primitive is checked against an independent, deliberately naive reference
written below with explicit Python loops over batch / heads / slots (on plain
Python floats), plus hand-computed cases, gradchecks, NaN-safety cases,
invariants over rollouts, batch independence, dtype/device preservation and
argument validation.

Conventions (the contract): memory M[B,N,W], weightings w[B,H,N]; batch first,
heads an explicit dimension.
"""

from __future__ import annotations

import math

import pytest
import torch

from mann_zoo.memory import (
    allocation_weights,
    content_weights,
    directional_read_weights,
    interpolate,
    link,
    precedence,
    read,
    sharpen,
    sharpen_links,
    shift,
    usage,
    write,
)

# Sizes used by the randomized tests.
B, H, HW, HR, N, W = 3, 3, 2, 3, 6, 5

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
DTYPES = [torch.float32, torch.float64]


# --------------------------------------------------------------------------- #
# Random input helpers (generated in float64 on CPU, then cast / moved)
# --------------------------------------------------------------------------- #
def _gen(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def _randn(g, *shape):
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def _rand(g, *shape, lo=0.0, hi=1.0):
    return lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=torch.float64)


def _unit(x):
    """Normalize the last dimension to norm 1."""
    return x / x.norm(dim=-1, keepdim=True)


def _softmax(g, *shape):
    return torch.softmax(_randn(g, *shape), dim=-1)


def _subnormalized(g, *shape):
    """Nonnegative weightings summing to at most 1 along the last dim."""
    return _softmax(g, *shape) * _rand(g, *shape[:-1], 1)


def _distinct_usage(g, b, n):
    """Usage values in (0,1), well separated (gap >= 0.7/(n+1)) so sort is stable."""
    rows = []
    for _ in range(b):
        perm = torch.randperm(n, generator=g).to(torch.float64)
        rows.append((perm + 0.5 + 0.3 * (torch.rand(n, generator=g, dtype=torch.float64) - 0.5)) / (n + 1))
    return torch.stack(rows)


def _link_matrix(g, b, hw, n):
    L = _rand(g, b, hw, n, n) / n
    eye = torch.eye(n, dtype=torch.float64).expand(b, hw, n, n)
    return L * (1 - eye)


# --------------------------------------------------------------------------- #
# Naive references (explicit loops on Python floats, straight from the formulas)
# --------------------------------------------------------------------------- #
def _t(x):
    return torch.tensor(x, dtype=torch.float64)


def ref_content_weights(memory, keys, strengths, mask=None):
    M, K, S = memory.tolist(), keys.tolist(), strengths.tolist()
    Mk = mask.tolist() if mask is not None else None
    b_, n_, w_ = memory.shape
    h_ = keys.shape[1]
    out = []
    for b in range(b_):
        per_head = []
        for h in range(h_):
            scores = []
            for i in range(n_):
                k = list(K[b][h])
                m = list(M[b][i])
                if Mk is not None:
                    k = [k[x] * Mk[b][h][x] for x in range(w_)]
                    m = [m[x] * Mk[b][h][x] for x in range(w_)]
                dot = sum(k[x] * m[x] for x in range(w_))
                nk = math.sqrt(sum(v * v for v in k))
                nm = math.sqrt(sum(v * v for v in m))
                scores.append(S[b][h] * dot / (nk * nm))
            mx = max(scores)
            ex = [math.exp(s - mx) for s in scores]
            z = sum(ex)
            per_head.append([e / z for e in ex])
        out.append(per_head)
    return _t(out)


def ref_interpolate(content, previous, gate):
    C, P, G = content.tolist(), previous.tolist(), gate.tolist()
    b_, h_, n_ = content.shape
    return _t(
        [
            [[G[b][h] * C[b][h][i] + (1 - G[b][h]) * P[b][h][i] for i in range(n_)] for h in range(h_)]
            for b in range(b_)
        ]
    )


def ref_shift(weights, shift_weights):
    Wt, S = weights.tolist(), shift_weights.tolist()
    b_, h_, n_ = weights.shape
    s_ = shift_weights.shape[-1]
    out = []
    for b in range(b_):
        per_head = []
        for h in range(h_):
            row = [0.0] * n_
            for i in range(n_):
                for k in range(s_):
                    offset = k - s_ // 2
                    # a positive offset moves mass from slot i - offset to slot i
                    row[i] += S[b][h][k] * Wt[b][h][(i - offset) % n_]
            per_head.append(row)
        out.append(per_head)
    return _t(out)


def ref_sharpen(weights, gamma):
    Wt, G = weights.tolist(), gamma.tolist()
    b_, h_, n_ = weights.shape
    out = []
    for b in range(b_):
        per_head = []
        for h in range(h_):
            p = [Wt[b][h][i] ** G[b][h] for i in range(n_)]
            z = sum(p)
            per_head.append([v / z for v in p])
        out.append(per_head)
    return _t(out)


def ref_read(memory, weights):
    M, Wt = memory.tolist(), weights.tolist()
    b_, n_, w_ = memory.shape
    h_ = weights.shape[1]
    return _t(
        [
            [[sum(Wt[b][h][i] * M[b][i][x] for i in range(n_)) for x in range(w_)] for h in range(h_)]
            for b in range(b_)
        ]
    )


def ref_write(memory, weights, erase, add):
    M, Wt, E, A = memory.tolist(), weights.tolist(), erase.tolist(), add.tolist()
    b_, n_, w_ = memory.shape
    h_ = weights.shape[1]
    out = []
    for b in range(b_):
        rows = []
        for i in range(n_):
            row = []
            for x in range(w_):
                keep = 1.0
                for h in range(h_):
                    keep *= 1 - Wt[b][h][i] * E[b][h][x]
                added = sum(Wt[b][h][i] * A[b][h][x] for h in range(h_))
                row.append(M[b][i][x] * keep + added)
            rows.append(row)
        out.append(rows)
    return _t(out)


def ref_usage(u, write_weights, read_weights, free_gates):
    U, Ww, Wr, F = u.tolist(), write_weights.tolist(), read_weights.tolist(), free_gates.tolist()
    b_, n_ = u.shape
    hw_, hr_ = write_weights.shape[1], read_weights.shape[1]
    out = []
    for b in range(b_):
        row = []
        for i in range(n_):
            not_written = 1.0
            for h in range(hw_):
                not_written *= 1 - Ww[b][h][i]
            w = 1 - not_written
            psi = 1.0
            for r in range(hr_):
                psi *= 1 - F[b][r] * Wr[b][r][i]
            row.append((U[b][i] + w - U[b][i] * w) * psi)
        out.append(row)
    return _t(out)


def ref_allocation(u):
    U = u.tolist()
    out = []
    for row in U:
        n_ = len(row)
        order = sorted(range(n_), key=lambda i: row[i])
        a = [0.0] * n_
        running = 1.0
        for j in order:
            a[j] = (1 - row[j]) * running
            running *= row[j]
        out.append(a)
    return _t(out)


def ref_precedence(p, write_weights):
    P, Ww = p.tolist(), write_weights.tolist()
    b_, h_, n_ = p.shape
    out = []
    for b in range(b_):
        per_head = []
        for h in range(h_):
            s = sum(Ww[b][h])
            per_head.append([(1 - s) * P[b][h][i] + Ww[b][h][i] for i in range(n_)])
        out.append(per_head)
    return _t(out)


def ref_link(L, p, write_weights):
    Lm, P, Ww = L.tolist(), p.tolist(), write_weights.tolist()
    b_, h_, n_, _ = L.shape
    out = []
    for b in range(b_):
        per_head = []
        for h in range(h_):
            mat = []
            for i in range(n_):
                row = []
                for j in range(n_):
                    if i == j:
                        row.append(0.0)
                    else:
                        wi, wj = Ww[b][h][i], Ww[b][h][j]
                        row.append((1 - wi - wj) * Lm[b][h][i][j] + wi * P[b][h][j])
                mat.append(row)
            per_head.append(mat)
        out.append(per_head)
    return _t(out)


def ref_directional(L, read_weights):
    Lm, Wr = L.tolist(), read_weights.tolist()
    b_, hw_, n_, _ = L.shape
    hr_ = read_weights.shape[1]
    fwd, bwd = [], []
    for b in range(b_):
        fr, br = [], []
        for r in range(hr_):
            fh, bh = [], []
            for h in range(hw_):
                fh.append([sum(Lm[b][h][i][j] * Wr[b][r][j] for j in range(n_)) for i in range(n_)])
                bh.append([sum(Lm[b][h][j][i] * Wr[b][r][j] for j in range(n_)) for i in range(n_)])
            fr.append(fh)
            br.append(bh)
        fwd.append(fr)
        bwd.append(br)
    return _t(fwd), _t(bwd)


# --------------------------------------------------------------------------- #
# Registry: name -> (call, make_inputs(gen, b), reference, atol)
# make_inputs returns a tuple of float64 CPU tensors, all in valid ranges.
# --------------------------------------------------------------------------- #
def _in_content(g, b):
    return (_unit(_randn(g, b, N, W)), _unit(_randn(g, b, H, W)), _rand(g, b, H, lo=0.5, hi=5.0))


def _in_content_masked(g, b):
    return _in_content(g, b) + (_rand(g, b, H, W, lo=0.2, hi=1.0),)


def _in_interpolate(g, b):
    return (_softmax(g, b, H, N), _softmax(g, b, H, N), _rand(g, b, H))


def _in_shift(s):
    def make(g, b):
        return (_softmax(g, b, H, N), _softmax(g, b, H, s))

    return make


def _in_sharpen(g, b):
    return (_softmax(g, b, H, N), _rand(g, b, H, lo=1.0, hi=4.0))


def ref_sharpen_links(renormalise):
    """Csordas & Schmidhuber's link sharpness as their code spells it: d + 1e-6, / max, ^s, / sum (and,
    keeping the mass, times the weighting's sum before)."""
    def ref(weights, sharpness):
        out = []
        for rows, exponents in zip(weights.tolist(), sharpness.tolist()):
            per_head = []
            for row, s in zip(rows, exponents):
                d = [v + 1e-6 for v in row]
                top = max(d)
                d = [(v / top) ** s for v in d]
                mass = 1.0 if renormalise else sum(row)
                per_head.append([v / sum(d) * mass for v in d])
            out.append(per_head)
        return _t(out)

    return ref


def _in_sharpen_links(g, b):
    return (_subnormalized(g, b, H, N), _rand(g, b, H, lo=1.0, hi=4.0))


def _in_read(g, b):
    return (_unit(_randn(g, b, N, W)), _softmax(g, b, H, N))


def _in_write(g, b):
    return (
        _unit(_randn(g, b, N, W)),
        _subnormalized(g, b, HW, N),
        _rand(g, b, HW, W),
        _unit(_randn(g, b, HW, W)),
    )


def _in_usage(g, b):
    return (_rand(g, b, N), _subnormalized(g, b, HW, N), _softmax(g, b, HR, N), _rand(g, b, HR))


def _in_allocation(g, b):
    return (_distinct_usage(g, b, N),)


def _in_precedence(g, b):
    return (_subnormalized(g, b, HW, N), _subnormalized(g, b, HW, N))


def _in_link(g, b):
    return (_link_matrix(g, b, HW, N), _subnormalized(g, b, HW, N), _subnormalized(g, b, HW, N))


def _in_directional(g, b):
    return (_link_matrix(g, b, HW, N), _softmax(g, b, HR, N))


PRIMITIVES = {
    "content_weights": (lambda m, k, s: content_weights(m, k, s), _in_content, ref_content_weights, 1e-4),
    "content_weights_masked": (
        lambda m, k, s, mk: content_weights(m, k, s, mask=mk),
        _in_content_masked,
        ref_content_weights,
        1e-4,
    ),
    "interpolate": (interpolate, _in_interpolate, ref_interpolate, 1e-5),
    "shift3": (shift, _in_shift(3), ref_shift, 1e-5),
    "shift5": (shift, _in_shift(5), ref_shift, 1e-5),
    "sharpen": (sharpen, _in_sharpen, ref_sharpen, 1e-4),
    "sharpen_links": (sharpen_links, _in_sharpen_links, ref_sharpen_links(False), 1e-4),
    "sharpen_links_renormalised": (lambda w, s: sharpen_links(w, s, renormalise=True), _in_sharpen_links,
                                   ref_sharpen_links(True), 1e-4),
    "read": (read, _in_read, ref_read, 1e-5),
    "write": (write, _in_write, ref_write, 1e-5),
    "usage": (usage, _in_usage, ref_usage, 1e-5),
    "allocation_weights": (allocation_weights, _in_allocation, ref_allocation, 1e-5),
    "precedence": (precedence, _in_precedence, ref_precedence, 1e-5),
    "link": (link, _in_link, ref_link, 1e-5),
    "directional_read_weights": (directional_read_weights, _in_directional, ref_directional, 1e-5),
}
NAMES = list(PRIMITIVES)


def _as_tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


# --------------------------------------------------------------------------- #
# 1. Against the naive references
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_matches_reference(name, dtype):
    fn, make, ref, atol = PRIMITIVES[name]
    args = make(_gen(1234), B)
    out = _as_tuple(fn(*(a.to(dtype) for a in args)))
    expected = _as_tuple(ref(*args))
    assert len(out) == len(expected)
    tol = atol if dtype == torch.float64 else max(atol, 1e-4)
    for o, e in zip(out, expected):
        assert o.shape == e.shape
        torch.testing.assert_close(o.double(), e, atol=tol, rtol=0)


def test_reference_shapes():
    """Spot check the shapes stated in the contract."""
    g = _gen(0)
    assert content_weights(*_in_content(g, B)).shape == (B, H, N)
    assert read(*_in_read(g, B)).shape == (B, H, W)
    assert write(*_in_write(g, B)).shape == (B, N, W)
    assert usage(*_in_usage(g, B)).shape == (B, N)
    assert allocation_weights(*_in_allocation(g, B)).shape == (B, N)
    assert precedence(*_in_precedence(g, B)).shape == (B, HW, N)
    assert link(*_in_link(g, B)).shape == (B, HW, N, N)
    fwd, bwd = directional_read_weights(*_in_directional(g, B))
    assert fwd.shape == (B, HR, HW, N) and bwd.shape == (B, HR, HW, N)


# ----- tiny hand-computed cases ---------------------------------------------
def test_hand_content_weights():
    memory = _t([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]])
    keys = _t([[[2.0, 0.0]]])  # cosine does not depend on the key's norm
    out = content_weights(memory, keys, _t([[1.0]]))
    e = [math.e, 1.0, 1 / math.e]
    expected = _t([[[v / sum(e) for v in e]]])
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_hand_content_weights_mask():
    # The mask hides the second coordinate, so slots 0 and 1 both match the key perfectly.
    memory = _t([[[1.0, 5.0], [1.0, -3.0], [-1.0, 0.0]]])
    keys = _t([[[1.0, 0.0]]])
    mask = _t([[[1.0, 0.0]]])
    out = content_weights(memory, keys, _t([[2.0]]), mask=mask)
    e = [math.exp(2), math.exp(2), math.exp(-2)]
    torch.testing.assert_close(out, _t([[[v / sum(e) for v in e]]]), atol=1e-5, rtol=0)


def test_hand_interpolate():
    out = interpolate(_t([[[1.0, 0.0, 0.0]]]), _t([[[0.0, 0.0, 1.0]]]), _t([[0.25]]))
    torch.testing.assert_close(out, _t([[[0.25, 0.0, 0.75]]]), atol=1e-7, rtol=0)


@pytest.mark.parametrize(
    "shift_weights, expected_slot",
    [
        ([0.0, 0.0, 1.0], 1),  # +1: slot 0 -> slot 1
        ([1.0, 0.0, 0.0], 4),  # -1: slot 0 -> slot N-1
        ([0.0, 1.0, 0.0], 0),  # 0: stays
        ([0.0, 0.0, 0.0, 0.0, 1.0], 2),  # +2
        ([1.0, 0.0, 0.0, 0.0, 0.0], 3),  # -2
    ],
)
def test_hand_shift_direction(shift_weights, expected_slot):
    w = _t([[[1.0, 0.0, 0.0, 0.0, 0.0]]])
    out = shift(w, _t([[shift_weights]]))
    expected = torch.zeros(1, 1, 5, dtype=torch.float64)
    expected[0, 0, expected_slot] = 1.0
    torch.testing.assert_close(out, expected, atol=1e-7, rtol=0)


def test_hand_shift_mixture():
    w = _t([[[0.0, 1.0, 0.0, 0.0]]])
    out = shift(w, _t([[[0.2, 0.5, 0.3]]]))
    torch.testing.assert_close(out, _t([[[0.2, 0.5, 0.3, 0.0]]]), atol=1e-7, rtol=0)


def test_hand_sharpen():
    out = sharpen(_t([[[0.5, 0.25, 0.25]]]), _t([[2.0]]))
    torch.testing.assert_close(out, _t([[[2 / 3, 1 / 6, 1 / 6]]]), atol=1e-4, rtol=0)


def test_hand_read():
    memory = _t([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]])
    out = read(memory, _t([[[0.5, 0.0, 0.5], [0.0, 1.0, 0.0]]]))
    torch.testing.assert_close(out, _t([[[3.0, 4.0], [3.0, 4.0]]]), atol=1e-7, rtol=0)


def test_hand_write_one_hot_erase_replaces_row():
    g = _gen(7)
    memory = _randn(g, 2, 4, 3)
    weights = torch.zeros(2, 1, 4, dtype=torch.float64)
    weights[:, 0, 2] = 1.0
    erase = torch.ones(2, 1, 3, dtype=torch.float64)
    add = _randn(g, 2, 1, 3)
    out = write(memory, weights, erase, add)
    expected = memory.clone()
    expected[:, 2, :] = add[:, 0, :]
    torch.testing.assert_close(out, expected, atol=1e-7, rtol=0)


def test_hand_write_two_heads():
    memory = _t([[[1.0, 1.0], [1.0, 1.0]]])
    weights = _t([[[1.0, 0.0], [0.5, 0.5]]])
    erase = _t([[[0.5, 0.0], [1.0, 1.0]]])
    add = _t([[[1.0, 0.0], [0.0, 2.0]]])
    # slot 0: keep = (1 - 1*[0.5,0]) * (1 - 0.5*[1,1]) = [0.25, 0.5]; add = [1,0] + 0.5*[0,2] = [1,1]
    # slot 1: keep = 1 * (1 - 0.5) = [0.5, 0.5]; add = 0.5*[0,2] = [0,1]
    out = write(memory, weights, erase, add)
    torch.testing.assert_close(out, _t([[[1.25, 1.5], [0.5, 1.5]]]), atol=1e-7, rtol=0)


def test_hand_usage():
    u = _t([[0.5, 0.0, 0.2]])
    ww = _t([[[0.5, 1.0, 0.0]]])
    wr = _t([[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    f = _t([[0.0, 0.5]])
    # before freeing: [0.5+0.5-0.25, 1, 0.2] = [0.75, 1, 0.2]; psi = [1, 1, 0.5]
    out = usage(u, ww, wr, f)
    torch.testing.assert_close(out, _t([[0.75, 1.0, 0.1]]), atol=1e-7, rtol=0)
    # a free gate of 1 on a one-hot read frees the slot completely
    out = usage(u, ww, wr, _t([[1.0, 0.0]]))
    torch.testing.assert_close(out, _t([[0.0, 1.0, 0.2]]), atol=1e-7, rtol=0)


def test_hand_usage_two_write_heads():
    u = _t([[0.0, 0.0]])
    ww = _t([[[0.5, 0.0], [0.5, 0.0]]])
    # w = 1 - (1-0.5)(1-0.5) = 0.75 on slot 0
    out = usage(u, ww, torch.zeros(1, 1, 2, dtype=torch.float64), _t([[0.0]]))
    torch.testing.assert_close(out, _t([[0.75, 0.0]]), atol=1e-7, rtol=0)


@pytest.mark.parametrize(
    "u, expected",
    [
        # sorted: slot1 (0.0), slot0 (0.5), slot2 (1.0): a = [0.5*0, 1, 0*...] = [0, 1, 0]
        ([0.5, 0.0, 1.0], [0.0, 1.0, 0.0]),
        # sorted: slot1 (0.2), slot0 (0.5), slot2 (0.9): a1 = 0.8, a0 = 0.5*0.2, a2 = 0.1*0.2*0.5
        ([0.5, 0.2, 0.9], [0.1, 0.8, 0.01]),
        ([1.0, 1.0, 1.0], [0.0, 0.0, 0.0]),
    ],
)
def test_hand_allocation(u, expected):
    out = allocation_weights(_t([u]))
    torch.testing.assert_close(out, _t([expected]), atol=1e-5, rtol=0)


def test_hand_precedence():
    out = precedence(_t([[[0.5, 0.5, 0.0]]]), _t([[[0.0, 0.5, 0.0]]]))
    torch.testing.assert_close(out, _t([[[0.25, 0.75, 0.0]]]), atol=1e-7, rtol=0)


def test_hand_link():
    L = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    p = _t([[[0.3, 0.2, 0.5]]])
    w = _t([[[0.0, 0.0, 1.0]]])
    out = link(L, p, w)
    # L'_2j = w_2 p_j off the diagonal
    expected = _t([[[[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.3, 0.2, 0.0]]]])
    torch.testing.assert_close(out, expected, atol=1e-7, rtol=0)


def test_hand_link_sequence_and_directional():
    # write slot 0, then slot 1, then slot 2 (one-hot writes)
    n = 3
    L = torch.zeros(1, 1, n, n, dtype=torch.float64)
    p = torch.zeros(1, 1, n, dtype=torch.float64)
    for slot in range(n):
        w = torch.zeros(1, 1, n, dtype=torch.float64)
        w[0, 0, slot] = 1.0
        L = link(L, p, w)
        p = precedence(p, w)
    expected = _t([[[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]]])
    torch.testing.assert_close(L, expected, atol=1e-7, rtol=0)
    torch.testing.assert_close(p, _t([[[0.0, 0.0, 1.0]]]), atol=1e-7, rtol=0)
    # reading at slot 1: forward -> slot 2 (written after), backward -> slot 0 (written before)
    fwd, bwd = directional_read_weights(L, _t([[[0.0, 1.0, 0.0]]]))
    torch.testing.assert_close(fwd, _t([[[[0.0, 0.0, 1.0]]]]), atol=1e-7, rtol=0)
    torch.testing.assert_close(bwd, _t([[[[1.0, 0.0, 0.0]]]]), atol=1e-7, rtol=0)


# --------------------------------------------------------------------------- #
# 2. gradcheck in float64
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("name", NAMES)
def test_gradcheck(name):
    fn, make, _, _ = PRIMITIVES[name]
    args = tuple(a.detach().clone().requires_grad_(True) for a in make(_gen(99), 2))
    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-5, rtol=1e-3)


# --------------------------------------------------------------------------- #
# 3. NaN safety
# --------------------------------------------------------------------------- #
def _assert_finite_grads(out, inputs, seed=3):
    """Backprop a random projection of the outputs (plain .sum() of a softmax has zero gradient)."""
    g = _gen(seed)
    outs = _as_tuple(out)
    loss = sum((o * _randn(g, *o.shape).to(o.dtype)).sum() + o.sum() for o in outs)
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    for x, gr in zip(inputs, grads):
        if gr is not None:
            assert torch.isfinite(gr).all(), f"non-finite gradient for input of shape {tuple(x.shape)}"


@pytest.mark.parametrize("case", ["zero_memory", "zero_keys", "both_zero", "one_zero_slot"])
@pytest.mark.parametrize("masked", [False, True])
def test_content_weights_zero_inputs_finite(case, masked):
    g = _gen(5)
    memory = _unit(_randn(g, 2, 4, 3))
    keys = _unit(_randn(g, 2, 2, 3))
    if case in ("zero_memory", "both_zero"):
        memory = torch.zeros_like(memory)
    if case in ("zero_keys", "both_zero"):
        keys = torch.zeros_like(keys)
    if case == "one_zero_slot":
        memory[:, 1] = 0.0
    strengths = _rand(g, 2, 2, lo=1.0, hi=3.0)
    inputs = [memory.requires_grad_(True), keys.requires_grad_(True), strengths.requires_grad_(True)]
    if masked:
        mask = _rand(g, 2, 2, 3, lo=0.2, hi=1.0).requires_grad_(True)
        inputs.append(mask)
        out = content_weights(memory, keys, strengths, mask=mask)
    else:
        out = content_weights(memory, keys, strengths)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.sum(-1), torch.ones(2, 2, dtype=torch.float64), atol=1e-6, rtol=0)
    if case != "one_zero_slot":
        # all cosines are 0 -> uniform weighting
        torch.testing.assert_close(out, torch.full_like(out, 0.25), atol=1e-6, rtol=0)
    _assert_finite_grads(out, inputs)


def test_content_weights_zero_mask_finite():
    g = _gen(6)
    memory = _unit(_randn(g, 2, 4, 3)).requires_grad_(True)
    keys = _unit(_randn(g, 2, 2, 3)).requires_grad_(True)
    strengths = _rand(g, 2, 2, lo=1.0, hi=3.0).requires_grad_(True)
    mask = torch.zeros(2, 2, 3, dtype=torch.float64, requires_grad=True)
    out = content_weights(memory, keys, strengths, mask=mask)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.sum(-1), torch.ones(2, 2, dtype=torch.float64), atol=1e-6, rtol=0)
    _assert_finite_grads(out, [memory, keys, strengths, mask])


@pytest.mark.parametrize("dtype", DTYPES)
def test_content_weights_huge_strength_finite(dtype):
    g = _gen(8)
    memory = _unit(_randn(g, 2, 5, 4))
    keys = memory[:, [1, 3]].clone()  # keys match slots 1 and 3 exactly
    memory = memory.to(dtype).requires_grad_(True)
    keys = keys.to(dtype).requires_grad_(True)
    strengths = torch.full((2, 2), 1e4, dtype=dtype, requires_grad=True)
    out = content_weights(memory, keys, strengths)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.sum(-1), torch.ones(2, 2, dtype=dtype), atol=1e-5, rtol=0)
    assert (out[:, 0, 1] > 0.99).all() and (out[:, 1, 3] > 0.99).all()
    _assert_finite_grads(out, [memory, keys, strengths])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gamma_value", [1.0, 3.0, 20.0])
@pytest.mark.parametrize("kind", ["one_hot", "all_zero", "tiny"])
def test_sharpen_degenerate_finite(kind, gamma_value, dtype):
    w = torch.zeros(2, 2, 5, dtype=dtype)
    if kind == "one_hot":
        w[:, :, 2] = 1.0
    elif kind == "tiny":
        w[:, :, 0] = 1.0 - 4e-30
        w[:, :, 1:] = 1e-30
    w.requires_grad_(True)
    gamma = torch.full((2, 2), gamma_value, dtype=dtype, requires_grad=True)
    out = sharpen(w, gamma)
    assert torch.isfinite(out).all()
    if kind == "one_hot":
        assert (out[:, :, 2] > 1 - 1e-4).all()
    if kind != "all_zero":
        torch.testing.assert_close(out.sum(-1), torch.ones(2, 2, dtype=dtype), atol=1e-5, rtol=0)
    _assert_finite_grads(out, [w, gamma])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["all_zero", "all_one", "ties", "ties_with_zero", "mixed_extremes"])
def test_allocation_degenerate_finite(case, dtype):
    u = {
        "all_zero": [[0.0] * 5, [0.0] * 5],
        "all_one": [[1.0] * 5, [1.0] * 5],
        "ties": [[0.5, 0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.3, 0.3, 0.3]],
        "ties_with_zero": [[0.0, 0.0, 0.7, 0.7, 1.0], [1.0, 1.0, 0.0, 0.0, 0.0]],
        "mixed_extremes": [[0.0, 1.0, 0.0, 1.0, 0.5], [1.0, 0.0, 1.0, 0.0, 1.0]],
    }[case]
    u = torch.tensor(u, dtype=dtype, requires_grad=True)
    a = allocation_weights(u)
    assert torch.isfinite(a).all()
    assert (a >= -1e-7).all()
    assert (a.sum(-1) <= 1 + 1e-6).all()
    if case == "all_zero":
        # exactly one slot (the first in sort order) gets everything
        torch.testing.assert_close(a.sum(-1), torch.ones(2, dtype=dtype), atol=1e-5, rtol=0)
        assert (a.max(-1).values > 1 - 1e-5).all()
    if case == "all_one":
        torch.testing.assert_close(a, torch.zeros_like(a), atol=1e-5, rtol=0)
    # total allocation is 1 - prod(u) whatever the order of ties
    ud = u.detach().double()
    torch.testing.assert_close(a.sum(-1).double(), 1 - ud.prod(-1), atol=1e-5, rtol=0)
    _assert_finite_grads(a, [u])


def test_usage_write_read_degenerate_finite():
    """Extreme-but-valid values in the DNC update primitives give finite values and gradients."""
    u = torch.tensor([[0.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]], dtype=torch.float64, requires_grad=True)
    ww = torch.zeros(2, 2, 4, dtype=torch.float64)
    ww[:, 0, 0] = 1.0
    ww.requires_grad_(True)
    wr = torch.zeros(2, 1, 4, dtype=torch.float64)
    wr[:, 0, 1] = 1.0
    wr.requires_grad_(True)
    f = torch.ones(2, 1, dtype=torch.float64, requires_grad=True)
    out = usage(u, ww, wr, f)
    assert torch.isfinite(out).all()
    _assert_finite_grads(out, [u, ww, wr, f])
    a = allocation_weights(out)
    assert torch.isfinite(a).all()
    memory = torch.zeros(2, 4, 3, dtype=torch.float64, requires_grad=True)
    new = write(memory, ww, torch.ones(2, 2, 3, dtype=torch.float64), torch.zeros(2, 2, 3, dtype=torch.float64))
    r = read(new, wr)
    assert torch.isfinite(r).all()
    _assert_finite_grads(r, [memory])


# --------------------------------------------------------------------------- #
# 4. Invariants
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("dtype", DTYPES)
def test_weightings_sum_to_one(dtype):
    g = _gen(11)
    b, h, n, w = 4, 3, 8, 5
    memory = _randn(g, b, n, w).to(dtype)
    keys = _randn(g, b, h, w).to(dtype)
    strengths = _rand(g, b, h, lo=0.0, hi=20.0).to(dtype)
    mask = _rand(g, b, h, w).to(dtype)
    ones = torch.ones(b, h, dtype=dtype)
    tol = 1e-5

    wc = content_weights(memory, keys, strengths)
    torch.testing.assert_close(wc.sum(-1), ones, atol=tol, rtol=0)
    wcm = content_weights(memory, keys, strengths, mask=mask)
    torch.testing.assert_close(wcm.sum(-1), ones, atol=tol, rtol=0)

    wprev = _softmax(g, b, h, n).to(dtype)
    wg = interpolate(wc, wprev, _rand(g, b, h).to(dtype))
    torch.testing.assert_close(wg.sum(-1), ones, atol=tol, rtol=0)

    ws = shift(wg, _softmax(g, b, h, 3).to(dtype))
    torch.testing.assert_close(ws.sum(-1), ones, atol=tol, rtol=0)

    wf = sharpen(ws, _rand(g, b, h, lo=1.0, hi=10.0).to(dtype))
    torch.testing.assert_close(wf.sum(-1), ones, atol=tol, rtol=0)
    assert (wf >= 0).all()

    # a read of a constant memory with a normalized weighting returns that constant
    r = read(torch.full((b, n, w), 2.5, dtype=dtype), wf)
    torch.testing.assert_close(r, torch.full((b, h, w), 2.5, dtype=dtype), atol=1e-4, rtol=0)


def test_ntm_addressing_rollout_sums_to_one():
    g = _gen(12)
    b, h, n, w = 2, 2, 10, 4
    memory = _randn(g, b, n, w)
    prev = torch.full((b, h, n), 1.0 / n, dtype=torch.float64)
    for _ in range(30):
        wc = content_weights(memory, _randn(g, b, h, w), _rand(g, b, h, lo=0.0, hi=10.0))
        wg = interpolate(wc, prev, _rand(g, b, h))
        ws = shift(wg, _softmax(g, b, h, 3))
        prev = sharpen(ws, _rand(g, b, h, lo=1.0, hi=30.0))
        assert torch.isfinite(prev).all() and (prev >= 0).all()
        torch.testing.assert_close(prev.sum(-1), torch.ones(b, h, dtype=torch.float64), atol=1e-5, rtol=0)
        memory = write(memory, prev, _rand(g, b, h, w), _randn(g, b, h, w))


def test_allocation_bounds_random():
    g = _gen(13)
    for n in (1, 2, 7, 16):
        u = _rand(g, 64, n)
        a = allocation_weights(u)
        assert (a >= 0).all()
        assert (a.sum(-1) <= 1 + 1e-6).all()
        # closed form of the total: 1 - prod(u)
        torch.testing.assert_close(a.sum(-1), 1 - u.prod(-1), atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_usage_stays_in_unit_interval_over_rollout(dtype):
    g = _gen(14)
    b, hw, hr, n = 4, 2, 3, 8
    u = torch.zeros(b, n, dtype=dtype)
    for _ in range(50):
        # write weightings: allocation-like mixtures, sum <= 1 per head
        ww = _subnormalized(g, b, hw, n).to(dtype)
        wr = _softmax(g, b, hr, n).to(dtype)
        f = _rand(g, b, hr).to(dtype)
        u = usage(u, ww, wr, f)
        assert torch.isfinite(u).all()
        assert (u >= 0).all() and (u <= 1 + 1e-6).all()
        a = allocation_weights(u)
        assert (a >= 0).all() and (a.sum(-1) <= 1 + 1e-6).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_link_invariants_over_rollout(dtype):
    g = _gen(15)
    b, hw, hr, n = 3, 2, 2, 7
    L = torch.zeros(b, hw, n, n, dtype=dtype)
    p = torch.zeros(b, hw, n, dtype=dtype)
    tol = 1e-5
    for step in range(50):
        if step % 5 == 0:
            # sometimes a sharp (one-hot) write
            ww = torch.zeros(b, hw, n, dtype=dtype)
            idx = torch.randint(n, (b, hw), generator=g)
            ww.scatter_(-1, idx.unsqueeze(-1), 1.0)
        else:
            ww = _subnormalized(g, b, hw, n).to(dtype)
        L = link(L, p, ww)
        p = precedence(p, ww)
        assert torch.isfinite(L).all()
        diag = torch.diagonal(L, dim1=-2, dim2=-1)
        assert (diag.abs() <= 1e-7).all(), "link matrix must have a zero diagonal"
        assert (L >= -tol).all() and (L <= 1 + tol).all()
        assert (L.sum(-1) <= 1 + tol).all(), "rows of L must sum to at most 1"
        assert (L.sum(-2) <= 1 + tol).all(), "columns of L must sum to at most 1"
        assert (p >= -tol).all() and (p.sum(-1) <= 1 + tol).all()
        fwd, bwd = directional_read_weights(L, _softmax(g, b, hr, n).to(dtype))
        assert (fwd >= -tol).all() and (bwd >= -tol).all()
        assert (fwd.sum(-1) <= 1 + tol).all() and (bwd.sum(-1) <= 1 + tol).all()


# --------------------------------------------------------------------------- #
# 5. Batch independence
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("name", NAMES)
def test_batch_independence(name):
    fn, make, _, _ = PRIMITIVES[name]
    args = make(_gen(21), 3)
    other = make(_gen(22), 3)  # valid inputs, different values
    perturbed = []
    for a, o in zip(args, other):
        p = a.clone()
        p[0] = o[0]
        perturbed.append(p)
    out = _as_tuple(fn(*args))
    out_p = _as_tuple(fn(*perturbed))
    for o, op in zip(out, out_p):
        assert not torch.allclose(o[0], op[0]), "perturbation of example 0 should change its output"
        torch.testing.assert_close(op[1:], o[1:], atol=1e-12, rtol=0)


# --------------------------------------------------------------------------- #
# 6. dtype / device
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_dtype_and_device_preserved(name, dtype, device):
    fn, make, _, _ = PRIMITIVES[name]
    args = tuple(a.to(device=device, dtype=dtype) for a in make(_gen(31), 2))
    for o in _as_tuple(fn(*args)):
        assert o.dtype == dtype
        assert o.device.type == torch.device(device).type
        assert torch.isfinite(o).all()


# --------------------------------------------------------------------------- #
# 7. Argument validation
# --------------------------------------------------------------------------- #
def _z(*shape):
    return torch.rand(*shape, dtype=torch.float64)


@pytest.mark.parametrize("s", [2, 4])
def test_shift_even_number_of_weights_raises(s):
    with pytest.raises(ValueError, match="shift_weights"):
        shift(torch.softmax(_z(2, 2, 5), -1), torch.softmax(_z(2, 2, s), -1))


def test_content_weights_key_width_mismatch_raises():
    with pytest.raises(ValueError, match="keys"):
        content_weights(_z(2, 4, 3), _z(2, 2, 5), _z(2, 2))


def test_content_weights_zero_slots_raises():
    with pytest.raises(ValueError, match="memory"):
        content_weights(_z(2, 0, 3), _z(2, 2, 3), _z(2, 2))


def test_read_zero_slots_raises():
    with pytest.raises(ValueError, match="memory"):
        read(_z(2, 0, 3), _z(2, 2, 0))


def test_write_zero_slots_raises():
    with pytest.raises(ValueError, match="memory"):
        write(_z(2, 0, 3), _z(2, 2, 0), _z(2, 2, 3), _z(2, 2, 3))


def test_memory_without_batch_dim_raises():
    with pytest.raises(ValueError, match="memory"):
        content_weights(_z(4, 3), _z(2, 2, 3), _z(2, 2))


@pytest.mark.parametrize(
    "call, pattern",
    [
        (lambda: content_weights(_z(2, 4, 3), _z(2, 2, 3), _z(2, 3)), "strengths"),
        (lambda: content_weights(_z(2, 4, 3), _z(2, 2, 3), _z(2, 2), mask=_z(2, 2, 4)), "mask"),
        (lambda: interpolate(_z(2, 2, 4), _z(2, 2, 4), _z(2, 3)), "gate"),
        (lambda: interpolate(_z(2, 2, 4), _z(2, 2, 5), _z(2, 2)), "previous|content"),
        (lambda: sharpen(_z(2, 2, 4), _z(2, 3)), "gamma"),
        (lambda: write(_z(2, 4, 3), _z(2, 2, 4), _z(2, 2, 5), _z(2, 2, 3)), "erase"),
        (lambda: write(_z(2, 4, 3), _z(2, 2, 4), _z(2, 2, 3), _z(2, 2, 5)), "add"),
        (lambda: read(_z(2, 4, 3), _z(2, 2, 5)), "weights|memory"),
        (lambda: usage(_z(2, 4), _z(2, 1, 4), _z(2, 2, 4), _z(2, 3)), "free_gates|read_weights"),
        (lambda: usage(_z(2, 4), _z(2, 1, 5), _z(2, 2, 4), _z(2, 2)), "write_weights|usage"),
        (lambda: link(_z(2, 1, 4, 4), _z(2, 1, 4), _z(2, 1, 5)), "write_weights|link|precedence"),
        (lambda: directional_read_weights(_z(2, 1, 4, 4), _z(2, 2, 5)), "read_weights|link"),
    ],
)
def test_shape_mismatch_raises(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


# --------------------------------------------------------------------------- #
# The fused link update + directional reads (the DNC's hand-written backward)
# --------------------------------------------------------------------------- #
def _fused_inputs(seed: int, read_heads: int):
    g = _gen(seed)
    return (_link_matrix(g, B, HW, N), _subnormalized(g, B, HW, N), _subnormalized(g, B, HW, N),
            _softmax(g, B, read_heads, N))


@pytest.mark.parametrize("kernels", ["native", "torch"])
@pytest.mark.parametrize("read_heads", [1, HR])
def test_fused_link_and_directional_reads_gradcheck_from_a_generic_state(read_heads, kernels, monkeypatch):
    """Random link, precedence, write and previous read weightings, two write heads, one and several read
    heads: every term of the backward is non-zero (from the zero state most of them vanish). With the C
    kernels (``link_kernel.c``) and with the torch kernels that stand in for them without a compiler."""
    from mann_zoo.memory import link_and_directional_read_weights, native

    if kernels == "torch":
        monkeypatch.setattr(native, "usable", lambda *tensors: False)
    else:
        assert native.kernels() is not None, "the C kernels did not build (no C compiler?)"
    args = tuple(a.clone().requires_grad_(True) for a in _fused_inputs(7, read_heads))
    assert all(a.abs().sum() > 0 for a in args)
    assert torch.autograd.gradcheck(link_and_directional_read_weights, args, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_fused_link_and_directional_reads_equal_the_two_primitives():
    """Values and gradients of the fused function equal those of ``link`` then ``directional_read_weights``
    differentiated by autograd through the plain formulas (the compiled path)."""
    from mann_zoo.memory import link_and_directional_read_weights

    inputs = _fused_inputs(11, HR)
    fused_in = [a.clone().requires_grad_(True) for a in inputs]
    plain_in = [a.clone().requires_grad_(True) for a in inputs]
    fused = link_and_directional_read_weights(*fused_in)
    L, p, w, r = plain_in
    w_i, w_j = w.unsqueeze(-1), w.unsqueeze(-2)
    new_link = ((1 - w_i - w_j) * L + w_i * p.unsqueeze(-2)) * (1 - torch.eye(N, dtype=L.dtype))
    plain = (new_link, *directional_read_weights(new_link, r))
    g = _gen(12)
    projections = [_randn(g, *out.shape) for out in plain]
    for outputs, leaves in ((fused, fused_in), (plain, plain_in)):
        sum((o * proj).sum() for o, proj in zip(outputs, projections)).backward()
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    for a, b in zip(fused_in, plain_in):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("read_heads, transposed", [(1, False), (HR, False), (HR, True)])
def test_fused_link_custom_operator_passes_opcheck(read_heads, transposed):
    """The fused link update is a custom operator (so that torch.compile calls its kernels): its fake
    kernel's shapes and strides, its autograd registration and its schema agree with the real kernels, also
    for a link whose strides are not a fresh tensor's (a transposed one: the compiler may pass such)."""
    import mann_zoo.memory.linkage  # noqa: F401  registers the operators

    args = [a.clone() for a in _fused_inputs(13, read_heads)]
    if transposed:
        args[0] = args[0].transpose(-1, -2).contiguous().transpose(-1, -2)  # same values, column-major
    args = tuple(a.requires_grad_(True) for a in args)
    from mann_zoo.memory import linkage

    torch.library.opcheck(getattr(torch.ops, linkage.NAMESPACE).link_and_directional_reads.default, args)


@pytest.mark.parametrize("used", ["link", "forward", "backward"])
def test_fused_link_gradients_when_some_outputs_feed_nothing(used):
    """Outputs without a gradient reach the hand-written backward as None (not as zeros): the gradients
    still equal autograd's through the plain formulas, with only one output used."""
    from mann_zoo.memory import link_and_directional_read_weights

    inputs = _fused_inputs(17, HR)
    fused_in = [a.clone().requires_grad_(True) for a in inputs]
    plain_in = [a.clone().requires_grad_(True) for a in inputs]
    which = ["link", "forward", "backward"].index(used)
    L, p, w, r = plain_in
    new_link = link(L, p, w)
    plain = (new_link, *directional_read_weights(new_link, r))
    fused = link_and_directional_read_weights(*fused_in)
    projection = _randn(_gen(18), *plain[which].shape)
    for outputs in (fused, plain):
        (outputs[which] * projection).sum().backward()
    for a, b in zip(fused_in, plain_in):  # no gradient (None) through the plain formulas: zeros here
        torch.testing.assert_close(a.grad, torch.zeros_like(a) if b.grad is None else b.grad, rtol=1e-10, atol=1e-12)


GRADIENTS_GIVEN = {"all": (True, True, True), "no link": (False, True, True), "no forward": (True, False, True),
                   "no backward": (True, True, False), "backward only": (False, False, True)}


@pytest.mark.parametrize("given", list(GRADIENTS_GIVEN))
@pytest.mark.parametrize("read_heads", [1, HR])
@pytest.mark.parametrize("dtype", DTYPES)
def test_native_link_kernels_equal_the_torch_kernels(dtype, read_heads, given):
    """The C kernels (forward and backward, one pass over the link each) against the operator's torch
    kernels, in float64 and float32, two write heads, with each output's gradient given or not (None); a
    transposed (non-contiguous) link; and no example of the batch changes another's values."""
    from mann_zoo.memory import linkage, native

    assert native.kernels() is not None, "the C kernels did not build (no C compiler?)"
    L, p, w, r = (a.to(dtype) for a in _fused_inputs(23, read_heads))
    L = L.transpose(-1, -2).contiguous().transpose(-1, -2)  # same values, column-major
    ours, theirs = native.link_reads_forward(L, p, w, r), linkage._torch_link_and_reads(L, p, w, r)
    tolerance = dict(rtol=1e-12, atol=1e-14) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
    for a, b in zip(ours, theirs):
        assert a.is_contiguous()
        torch.testing.assert_close(a, b, **tolerance)
    g = _gen(24)
    grads = [_randn(g, *out.shape).to(dtype) if present else None for out, present in zip(ours, GRADIENTS_GIVEN[given])]
    reference_link_grad = grads[0] if grads[0] is not None else torch.zeros_like(L)
    ours_grad = native.link_reads_backward(L, p, w, r, *grads)
    theirs_grad = linkage._torch_link_and_reads_grad(L, p, w, r, theirs[0], reference_link_grad, *grads[1:])
    for a, b in zip(ours_grad, theirs_grad):
        torch.testing.assert_close(a, b, **tolerance)
    # batch independence: other inputs for example 1 leave example 0's values and gradients as they were
    L2, p2, w2, r2 = (a.clone() for a in (L, p, w, r))
    for a, b in zip((L2, p2, w2, r2), (a.to(dtype) for a in _fused_inputs(25, read_heads))):
        a[1] = b[1]
    moved = native.link_reads_forward(L2, p2, w2, r2), native.link_reads_backward(L2, p2, w2, r2, *grads)
    for a, b in zip((*moved[0], *moved[1]), (*ours, *ours_grad)):
        assert torch.equal(a[0], b[0]) and not torch.equal(a[1], b[1])


def test_native_link_kernels_are_off_without_a_compiler_and_when_switched_off(monkeypatch, tmp_path):
    """No C compiler, a build that fails (a compiler that exits 1, a CC that does not parse, one whose library
    lacks the functions), or MANN_ZOO_NATIVE=0: no kernels (a warning says why, except when switched off), and
    the operator runs its torch kernels, with the same values. A build leaves no temporary folder behind."""
    import warnings

    from mann_zoo.memory import link_and_directional_read_weights, native

    inputs = _fused_inputs(29, HR)
    with_kernels = link_and_directional_read_weights(*inputs)
    cases = [("CC", "/nonexistent/cc", True), ("CC", "false", True), ("CC", '"cc', True),
             ("CC", "cc -fvisibility=hidden", True), ("MANN_ZOO_NATIVE", "0", False), ("MANN_ZOO_NATIVE", "off", False)]
    try:
        for variable, value, warned in cases:
            with monkeypatch.context() as patch, warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                patch.setenv(variable, value)
                native.kernels.cache_clear()
                assert native.kernels() is None and not native.usable(*inputs), (variable, value)
                for a, b in zip(link_and_directional_read_weights(*inputs), with_kernels):
                    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
            said = [str(w.message) for w in caught if "C kernels did not build" in str(w.message)]
            assert len(said) == warned, (variable, value, said)
        monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
        monkeypatch.setenv("MANN_ZOO_CACHE_DIR", "0")  # built here, not loaded from the cache
        native.kernels.cache_clear()
        assert native.kernels() is not None and list(tmp_path.iterdir()) == []
    finally:
        native.kernels.cache_clear()  # built again, with the environment restored, at the next use


def test_native_kernels_are_kept_in_the_cache_and_a_broken_one_is_built_again(monkeypatch, tmp_path):
    """A build leaves its library in the cache folder (under a name that hashes the program, compiler, flags
    and CPU) and no temporary folder; a cached library that does not load (truncated) is built again and
    replaced; the next build loads the cached one without calling the compiler; with the cache off nothing is
    kept, and a cache folder that cannot be made is passed over. Built at -O0 here, for speed (the flags are
    in the name, so the suite's own cache is not touched)."""
    import subprocess

    from mann_zoo.memory import native

    cache, scratch = tmp_path / "cache", tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("MANN_ZOO_CACHE_DIR", str(cache))
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    monkeypatch.setattr(native, "FLAGS", (*(flag for flag in native.FLAGS if flag != "-O3"), "-O0"))
    assert isinstance(native._build(), native.Kernels)
    [library] = list(cache.iterdir())
    assert library.name.startswith("kernels-") and library.suffix == ".so" and list(scratch.iterdir()) == []
    size = library.stat().st_size
    library.write_bytes(library.read_bytes()[:100])  # a broken cache entry: built again, replaced whole
    assert isinstance(native._build(), native.Kernels) and library.stat().st_size == size
    assert list(cache.iterdir()) == [library]

    def no_compiler(command, *args, **kwargs):  # the preprocessor may run (native._target), a build may not
        if "-E" in command:
            return real_run(command, *args, **kwargs)
        raise AssertionError("the compiler ran although the library was in the cache")

    real_run = subprocess.run
    with monkeypatch.context() as patch:
        patch.setattr(subprocess, "run", no_compiler)
        assert isinstance(native._build(), native.Kernels)
        patch.setattr(native, "FLAGS", (*native.FLAGS, "-g"))  # other flags: another library, so it compiles
        with pytest.raises(AssertionError, match="the compiler ran"):
            native._build()

    (tmp_path / "a_file").write_text("")  # a cache folder that cannot be made: built, nothing kept, no error
    monkeypatch.setenv("MANN_ZOO_CACHE_DIR", str(tmp_path / "a_file" / "cache"))
    assert isinstance(native._build(), native.Kernels) and list(scratch.iterdir()) == []
    for off in ("0", "off", "false", "no"):
        monkeypatch.setenv("MANN_ZOO_CACHE_DIR", off)
        assert native.cache_folder() is None
    library.unlink()
    assert isinstance(native._build(), native.Kernels) and list(cache.iterdir()) == [] and list(scratch.iterdir()) == []
    monkeypatch.delenv("MANN_ZOO_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert native.cache_folder() == tmp_path / "xdg" / "mann_zoo"


def test_native_kernel_cache_keeps_the_most_recent_builds(monkeypatch, tmp_path):
    """Keeping a library removes all but the ``CACHED_BUILDS`` most recently written ones, never the new one, and
    leaves other files alone."""
    import os

    from mann_zoo.memory import native

    monkeypatch.setattr(native, "CACHED_BUILDS", 3)
    cache = tmp_path / "cache"
    cache.mkdir()
    for age in range(5):  # kernels-0.so the newest
        old = cache / f"kernels-{age}.so"
        old.write_bytes(b"x")
        os.utime(old, ns=(10**18 - age * 10**9, 10**18 - age * 10**9))
    (cache / "notes.txt").write_text("")
    built = tmp_path / "kernels.so"
    built.write_bytes(b"new")
    native._keep(built, cache / "kernels-new.so")
    assert sorted(p.name for p in cache.iterdir()) == ["kernels-0.so", "kernels-1.so", "kernels-new.so", "notes.txt"]


def test_native_kernels_fingerprint_names_what_the_compiler_targets(monkeypatch):
    """The cache's key holds the compiler's predefined macros under -march=native (its version and instruction
    sets), so that a cache copied to a machine the compiler targets differently (no /proc/cpuinfo there, or a
    compiler behind a wrapper) builds its own library instead of loading one that may not run there; a
    compiler that does not run gives an empty target, not an error."""
    import shutil

    from mann_zoo.memory import native

    assert native._target(["/nonexistent/cc"]) == ""
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is not None:
        assert "__VERSION__" in native._target([compiler])
    keys = set()
    for target in ("#define __AVX2__ 1", "#define __AVX512F__ 1"):
        monkeypatch.setattr(native, "_target", lambda compiler, target=target: target)
        keys.add(native._fingerprint("int f(void);", ["cc"]))
    assert len(keys) == 2


@pytest.mark.parametrize("diagonal", [1e6, math.inf])
def test_native_link_backward_ignores_the_old_links_diagonal(diagonal):
    """The new link's diagonal is 0 whatever the old one holds: a large or infinite old diagonal changes none
    of the values and no gradient but its own (whose entries are 0), as with the torch kernels."""
    from mann_zoo.memory import linkage, native

    L, p, w, r = (a.to(torch.float32) for a in _fused_inputs(31, HR))
    big = L.clone()
    big.diagonal(dim1=-2, dim2=-1).fill_(diagonal)
    g = _gen(32)
    grads = [_randn(g, *shape).to(torch.float32) for shape in (L.shape, (B, HR, HW, N), (B, HR, HW, N))]
    reference = native.link_reads_forward(L, p, w, r), native.link_reads_backward(L, p, w, r, *grads)
    for ours, theirs in ((native.link_reads_forward(big, p, w, r), reference[0]),
                         (native.link_reads_backward(big, p, w, r, *grads)[1:], reference[1][1:])):
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    assert torch.equal(native.link_reads_backward(big, p, w, r, *grads)[0], reference[1][0])
    torch_grads = linkage._torch_link_and_reads_grad(L, p, w, r, reference[0][0], *grads)
    torch.testing.assert_close(reference[1][3], torch_grads[3], rtol=1e-5, atol=1e-6)


def test_fused_link_backward_operator_passes_opcheck():
    """The hand-written backward is a custom operator too: its fake kernel agrees with the real one."""
    from mann_zoo.memory import linkage

    L, p, w, r = _fused_inputs(19, HR)
    new_link, forward, _ = linkage._link_and_reads(L, p, w, r)
    g = _gen(20)
    op = getattr(torch.ops, linkage.NAMESPACE).link_and_directional_reads_backward.default
    torch.library.opcheck(op, (L, p, w, r, new_link, _randn(g, *L.shape), _randn(g, *forward.shape), None),
                          test_utils=("test_schema", "test_faketensor"))


# --- the NTM's fused step: address_read_write (ntm_access.py, ntm_kernel.c) ---------------------------------


def _ntm_access_inputs(seed: int, read_heads: int, write_heads: int, width: int, shifts: int, batch: int = 3,
                       slots: int = 9):
    """A generic state: random memory, previous weightings, keys, strengths, gates, shift weights, gammas,
    erase and add vectors (every term of the backward non-zero)."""
    g, heads = _gen(seed), read_heads + write_heads
    return (_randn(g, batch, slots, width), _softmax(g, batch, heads, slots), _randn(g, batch, heads, width),
            _rand(g, batch, heads, lo=0.5, hi=5.0), _rand(g, batch, heads, lo=0.1, hi=0.9),
            _softmax(g, batch, heads, shifts), _rand(g, batch, heads, lo=1.0, hi=4.0),
            _rand(g, batch, write_heads, width, lo=0.1, hi=0.9), torch.tanh(_randn(g, batch, write_heads, width)))


# (read heads, write heads, word size, shift range): W = 20 with 1 + 1 heads and with several heads are the
# kernel's copies compiled for those constants; the others its generic loops.
NTM_ACCESS_CASES = [(1, 1, 20, 3), (2, 3, 20, 5), (1, 1, 7, 3), (3, 2, 5, 1), (1, 2, 4, 9)]


@pytest.mark.parametrize("given", ["all", "no weights", "no memory", "reads only", "weights only", "memory only"])
@pytest.mark.parametrize("read_heads, write_heads, width, shifts", NTM_ACCESS_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_ntm_access_equals_the_composed_primitives(dtype, read_heads, write_heads, width, shifts, given):
    """``address_read_write`` (the C kernels on the CPU) against content_weights -> interpolate -> shift ->
    sharpen -> read, write composed and differentiated by autograd: values and the gradients of all nine
    inputs, in float64 and float32, with some outputs' gradients absent (None: the last step's weights and
    memory feed nothing)."""
    from mann_zoo.memory import native, ntm_access

    assert native.kernels() is not None, "the C kernels did not build (no C compiler?)"
    inputs = [a.to(dtype) for a in _ntm_access_inputs(31, read_heads, write_heads, width, shifts)]
    ours_in = [a.clone().requires_grad_(True) for a in inputs]
    theirs_in = [a.clone().requires_grad_(True) for a in inputs]
    ours = ntm_access.address_read_write(*ours_in, read_heads)
    theirs = ntm_access._composed(*theirs_in, read_heads)
    tolerance = dict(rtol=1e-11, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, **tolerance)
    used = {"all": (0, 1, 2), "no weights": (1, 2), "no memory": (0, 1), "reads only": (1,), "weights only": (0,),
            "memory only": (2,)}[given]
    g = _gen(32)
    projections = [_randn(g, *out.shape).to(dtype) for out in theirs]
    for outputs in (ours, theirs):
        sum((outputs[k] * projections[k]).sum() for k in used).backward()
    for name, a, b in zip(("memory", "previous", "keys", "strengths", "gates", "shifts", "gammas", "erase", "add"),
                          ours_in, theirs_in):
        expected = torch.zeros_like(a) if b.grad is None else b.grad  # no path through the primitives: zeros
        torch.testing.assert_close(a.grad, expected, **tolerance, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("read_heads, write_heads, width, shifts", [(1, 1, 20, 3), (2, 2, 5, 5)])
def test_ntm_access_gradcheck_from_a_generic_state(read_heads, write_heads, width, shifts):
    """The hand-written backward (``ntm_kernel.c``) against finite differences, float64, all nine inputs."""
    from mann_zoo.memory import address_read_write

    args = tuple(a.requires_grad_(True) for a in _ntm_access_inputs(37, read_heads, write_heads, width, shifts,
                                                                    batch=2, slots=6))
    assert torch.autograd.gradcheck(lambda *a: address_read_write(*a, read_heads), args, eps=1e-6, atol=1e-6,
                                    rtol=1e-4)


def test_ntm_access_examples_do_not_interact():
    """Other inputs for example 1 leave example 0's outputs and gradients exactly as they were."""
    from mann_zoo.memory import address_read_write

    def run(inputs):
        leaves = [a.clone().requires_grad_(True) for a in inputs]
        outputs = address_read_write(*leaves, 1)
        sum((o * (k + 1.5)).sum() for k, o in enumerate(outputs)).backward()
        return [o.detach() for o in outputs] + [a.grad for a in leaves]

    inputs = _ntm_access_inputs(41, 1, 1, 20, 3)
    moved = [a.clone() for a in inputs]
    for a, b in zip(moved, _ntm_access_inputs(42, 1, 1, 20, 3)):
        a[1] = b[1]
    for a, b in zip(run(inputs), run(moved)):
        assert torch.equal(a[0], b[0]) and not torch.equal(a[1], b[1])


@pytest.mark.parametrize("case", ["zero memory", "zero keys", "one-hot weights", "large strengths",
                                  "large gammas", "one-hot shifts"])
@pytest.mark.parametrize("heads, width", [((1, 1), 20), ((2, 2), 7)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_ntm_access_is_finite_and_equal_to_the_primitives_in_degenerate_states(case, dtype, heads, width):
    """Zero memory, zero keys, one-hot previous weightings, strengths of 1e4, gammas of 60 and one-hot shift
    weights: finite values and gradients, the same as the composed primitives' (in float32, as close to the
    float64 result as they are: a gamma of 60 multiplies rounding errors of the logarithm)."""
    from mann_zoo.memory import native, ntm_access

    read_heads = heads[0]
    memory, previous, keys, strengths, gates, shifts, gammas, erase, add = (
        a.to(dtype) for a in _ntm_access_inputs(43, *heads, width, 3))
    if case == "zero memory":
        memory = torch.zeros_like(memory)
    elif case == "zero keys":
        keys = torch.zeros_like(keys)
    elif case == "one-hot weights":
        slots = torch.tensor([[0, 4, 2, 7], [8, 8, 0, 1], [3, 1, 1, 5]])[:, :previous.shape[1]]
        previous = torch.nn.functional.one_hot(slots, memory.shape[1]).to(dtype)
    elif case == "large strengths":
        strengths = torch.full_like(strengths, 1e4)
    elif case == "large gammas":
        gammas = torch.full_like(gammas, 60.0)
    else:
        offsets = torch.tensor([[0, 2, 1, 0], [1, 1, 2, 2], [2, 0, 0, 1]])[:, :previous.shape[1]]
        shifts = torch.nn.functional.one_hot(offsets, 3).to(dtype)
    inputs = (memory, previous, keys, strengths, gates, shifts, gammas, erase, add)
    assert native.usable(*inputs)
    results = []
    for function, dtype_run in ((ntm_access.address_read_write, dtype), (ntm_access._composed, dtype),
                                (ntm_access._composed, torch.float64)):
        leaves = [a.clone().to(dtype_run).requires_grad_(True) for a in inputs]
        outputs = function(*leaves, read_heads)
        sum((o * (k + 1.5)).sum() for k, o in enumerate(outputs)).backward()
        results.append([o.detach() for o in outputs] + [a.grad for a in leaves])
    for ours, theirs, exact in zip(*results):
        assert torch.isfinite(ours).all()
        if dtype == torch.float64:
            torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-10)
        else:
            theirs_error = (theirs.double() - exact).abs().max().item()
            assert (ours.double() - exact).abs().max().item() <= 2 * theirs_error + 1e-5 * (1 + exact.abs().max().item())


def test_ntm_access_operator_passes_opcheck():
    """The fused NTM step is an operator (so that torch.compile calls its kernels): its fake kernels' shapes,
    its autograd registration and its schema agree with the real kernels, forward and backward."""
    from mann_zoo.memory import ntm_access

    args = tuple(a.float().requires_grad_(True) for a in _ntm_access_inputs(47, 1, 1, 20, 3))
    torch.library.opcheck(ntm_access._ntm_access, (*args, 1))
    outputs = ntm_access._ntm_access(*(a.detach() for a in args), 1)
    grads = [torch.randn_like(o) for o in outputs[:3]]
    torch.library.opcheck(ntm_access._ntm_access_grad, (*(a.detach() for a in args), outputs[0], outputs[3],
                                                         *grads, 1))


def test_ntm_access_without_the_kernels_is_the_composed_primitives(monkeypatch):
    """Where the kernels do not apply (no compiler, switched off, another device or dtype) the function is the
    primitives composed, with the same values; bad arguments are one-line errors naming the argument."""
    from mann_zoo.memory import address_read_write, native, ntm_access

    inputs = _ntm_access_inputs(53, 2, 1, 6, 3)
    with_kernels = address_read_write(*inputs, 2)
    monkeypatch.setattr(native, "usable", lambda *tensors: False)
    for a, b in zip(address_read_write(*inputs, 2), with_kernels):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)
    for a, b in zip(address_read_write(*inputs, 2), ntm_access._composed(*inputs, 2)):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="read_heads must be in \\[1, 2\\]"):
        address_read_write(*inputs, 3)
    with pytest.raises(ValueError, match="shift_weights must have an odd size"):
        address_read_write(*inputs[:5], inputs[5][..., :2], *inputs[6:], 2)
    with pytest.raises(ValueError, match="erase must have shape"):
        address_read_write(*inputs[:7], inputs[7][:, :0], inputs[8], 2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ntm_access_passes_a_nan_on_as_the_primitives_do(dtype):
    """A NaN in one example's read key gives NaN weights and read vector for that example, as the composed
    primitives do (the float32 kernels' own exp and log keep NaN), and leaves the other examples finite."""
    from mann_zoo.memory import address_read_write, ntm_access

    inputs = [a.to(dtype) for a in _ntm_access_inputs(59, 1, 1, 20, 3)]
    inputs[2][0, 0, 0] = math.nan
    ours, theirs = address_read_write(*inputs, 1), ntm_access._composed(*inputs, 1)
    assert ours[0][0, 0].isnan().all() and ours[1][0].isnan().all()
    for a, b in zip(ours, theirs):
        assert torch.equal(a.isnan(), b.isnan())
        assert torch.isfinite(a[1:]).all()


def test_ntm_access_operators_refuse_what_their_kernels_cannot_take():
    """Called directly, the operators check what their kernels trust (shapes, one CPU dtype): a one-line
    error, no read or write past a tensor; and they have no second derivative (a clear error, not zeros)."""
    from mann_zoo.memory import address_read_write, ntm_access

    inputs = [a.float() for a in _ntm_access_inputs(61, 1, 1, 4, 3, slots=5)]
    with pytest.raises(ValueError, match="shift_weights must have an odd size S <= N=5"):
        ntm_access._ntm_access(*inputs[:5], torch.softmax(torch.randn(3, 2, 9), -1), *inputs[6:], 1)
    with pytest.raises(ValueError, match="C kernels take float32 or float64 CPU tensors, all of one dtype"):
        ntm_access._ntm_access(*inputs[:8], inputs[8].double(), 1)
    outputs = ntm_access._ntm_access(*inputs, 1)
    with pytest.raises(ValueError, match="saved must have shape"):
        ntm_access._ntm_access_grad(*inputs, outputs[0], outputs[3][:-1], None, None, None, 1)
    leaves = [a.requires_grad_(True) for a in inputs]
    first = torch.autograd.grad(address_read_write(*leaves, 1)[1].sum(), leaves, create_graph=True)
    with pytest.raises(RuntimeError, match="no second derivative"):
        torch.autograd.grad(first[0].sum(), leaves[0])
