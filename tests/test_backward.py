"""Specifications of the backward pass (lesson 03).

Every gradient in ``llmedu.backward`` is checked against central finite
differences in float64: per operation on every entry of every input, and for
the whole model on a sample of entries of every parameter. The fast path
(``loss_and_grads``) must agree with the readable numpy reference
(``loss_and_grads_reference``), and its loss with ``model.forward``.

Relative error, here: max |analytic - numeric| / max |numeric| over the
checked entries of one tensor.
"""

import math

import numpy as np
import pytest

from llmedu import backward, model

FD_STEP = 1e-5  # central differences: truncation ~ h^2, rounding ~ 1e-16 / h, both far below 1e-6
FD_TOL = 1e-6

CONFIGS = {
    # head_dim 4, two query heads per kv head: grouped-query attention
    "gqa": model.ModelConfig(vocab_size=11, dim=8, n_layers=2, n_heads=2, n_kv_heads=1, hidden_dim=12, max_seq_len=6),
    "mha": model.ModelConfig(vocab_size=9, dim=12, n_layers=1, n_heads=3, n_kv_heads=3, hidden_dim=10, max_seq_len=5,
                             norm_eps=1e-6, rope_theta=100.0),
}


def rel_err(actual, expected):
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def numeric_grad(f, x, entries=None):
    """Central differences of the scalar f() with respect to x (changed in place, then restored)."""
    entries = list(np.ndindex(x.shape)) if entries is None else entries
    out = np.zeros(len(entries))
    for n, idx in enumerate(entries):
        old = x[idx]
        x[idx] = old + FD_STEP
        up = f()
        x[idx] = old - FD_STEP
        down = f()
        x[idx] = old
        out[n] = (up - down) / (2 * FD_STEP)
    return out


def check_op(forward, backward_fn, inputs, seed=0):
    """FD-check every input of an op: the loss is a fixed random projection of its output."""
    rng = np.random.default_rng(seed)
    dout = rng.standard_normal(forward(*inputs).shape)
    analytic = backward_fn(dout, *inputs)
    for x, grad in zip(inputs, analytic):
        numeric = numeric_grad(lambda: float(np.sum(forward(*inputs) * dout)), x)
        assert grad.shape == x.shape
        assert rel_err(grad.reshape(-1), numeric) <= FD_TOL


def randn(rng, *shape, scale=1.0):
    return rng.standard_normal(shape) * scale


# ----------------------------------------------------- one op at a time --

def test_linear_backward_matches_finite_differences():
    rng = np.random.default_rng(1)
    check_op(lambda x, w: x @ w.T, backward.linear_backward, [randn(rng, 2, 3, 4), randn(rng, 5, 4)])


def test_rmsnorm_backward_matches_finite_differences():
    rng = np.random.default_rng(2)
    eps = 1e-5
    check_op(lambda x, w: model.rmsnorm(x, w, eps), lambda d, x, w: backward.rmsnorm_backward(d, x, w, eps),
             [randn(rng, 2, 3, 6), 1 + randn(rng, 6, scale=0.3)])


def test_rope_backward_matches_finite_differences():
    rng = np.random.default_rng(3)
    cos, sin = model.rope_tables(4, np.arange(5), 10000.0)
    check_op(lambda x: model.apply_rope(x, cos, sin), lambda d, x: (backward.rope_backward(d, cos, sin),),
             [randn(rng, 2, 5, 3, 4)])


def test_attention_backward_matches_finite_differences_with_grouped_heads():
    rng = np.random.default_rng(4)
    q, k, v = randn(rng, 2, 5, 4, 3), randn(rng, 2, 5, 2, 3), randn(rng, 2, 5, 2, 3)  # 2 query heads per kv head

    def grads(dout, q, k, v):
        return backward.attention_backward(dout, q, k, v, backward.attention_forward(q, k, v)[1])
    check_op(model.attention, grads, [q, k, v])


def test_attention_forward_returns_model_attention_and_causal_weights():
    rng = np.random.default_rng(5)
    q, k, v = randn(rng, 2, 5, 4, 3), randn(rng, 2, 5, 2, 3), randn(rng, 2, 5, 2, 3)
    out, weights = backward.attention_forward(q, k, v)
    assert rel_err(out, model.attention(q, k, v)) <= 1e-12
    assert np.allclose(weights.sum(-1), 1.0)
    assert np.all(np.triu(weights[0, 0], k=1) == 0)  # no weight on future keys


def test_swiglu_backward_matches_finite_differences():
    rng = np.random.default_rng(6)
    check_op(model.swiglu, backward.swiglu_backward,
             [randn(rng, 2, 3, 6), randn(rng, 5, 6), randn(rng, 6, 5), randn(rng, 5, 6)])


def test_cross_entropy_backward_matches_finite_differences_with_mask():
    rng = np.random.default_rng(7)
    logits, targets = randn(rng, 7, 5, scale=2.0), rng.integers(0, 5, 7)
    mask = np.array([1, 0, 1, 1, 0, 1, 1], dtype=np.float64)
    numeric = numeric_grad(lambda: backward.cross_entropy(logits, targets, mask), logits)
    analytic = backward.cross_entropy_backward(logits, targets, mask)
    assert rel_err(analytic.reshape(-1), numeric) <= FD_TOL
    assert np.all(analytic[mask == 0] == 0)


def test_embedding_backward_adds_up_repeated_tokens():
    rng = np.random.default_rng(8)
    table, tokens = randn(rng, 6, 3), np.array([[1, 4, 1], [0, 1, 5]])
    check_op(lambda t: t[tokens], lambda d, t: (backward.embedding_backward(d, tokens, 6),), [table])


# ----------------------------------------------------- the whole model --

def float64_params(config, seed):
    """Random float64 parameters far from init (gains not all one), so every term of the gradient matters."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in model.param_shapes(config).items():
        params[name] = 1 + randn(rng, *shape, scale=0.2) if name.endswith("norm") else randn(rng, *shape, scale=0.4)
    return params


def model_loss(params, config, tokens, targets, mask):
    """Masked mean cross-entropy computed from model.forward alone, independent of llmedu.backward."""
    logits = model.forward(params, config, tokens)  # (B, T, V)
    logp = logits - logits.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    picked = np.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]  # (B, T)
    return float(-(picked * mask).sum() / mask.sum())


def batch(config, seed, B=2, T=5, masked=False):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, config.vocab_size, (B, T))
    targets = rng.integers(0, config.vocab_size, (B, T))
    mask = (rng.random((B, T)) < 0.5).astype(np.int64) if masked else np.ones((B, T), np.int64)
    mask[0, 0] = 1  # at least one position counts
    return tokens, targets, mask


@pytest.mark.parametrize("masked", [False, True], ids=["all_positions", "loss_mask"])
@pytest.mark.parametrize("name", CONFIGS)
def test_loss_and_grads_matches_finite_differences_on_every_tensor(name, masked):
    config = CONFIGS[name]
    params = float64_params(config, seed=10)
    tokens, targets, mask = batch(config, seed=11, masked=masked)
    loss, grads = backward.loss_and_grads(params, config, tokens, targets, mask if masked else None)
    assert loss == pytest.approx(model_loss(params, config, tokens, targets, mask), rel=1e-12)
    rng = np.random.default_rng(12)
    for tensor, p in params.items():
        g = grads[tensor]
        # a few random entries, plus the two largest gradients so the scale is never ~0
        flat = list(rng.choice(p.size, 4, replace=False)) + list(np.argsort(np.abs(g).ravel())[-2:])
        entries = [np.unravel_index(i, p.shape) for i in flat]
        numeric = numeric_grad(lambda: model_loss(params, config, tokens, targets, mask), p, entries)
        analytic = np.array([g[idx] for idx in entries])
        assert rel_err(analytic, numeric) <= FD_TOL, tensor


def test_masked_positions_do_not_contribute():
    config = CONFIGS["gqa"]
    params = float64_params(config, seed=13)
    tokens, targets, mask = batch(config, seed=14, masked=True)
    other = np.where(mask == 1, targets, (targets + 1) % config.vocab_size)  # change only masked-out targets
    loss_a, grads_a = backward.loss_and_grads(params, config, tokens, targets, mask)
    loss_b, grads_b = backward.loss_and_grads(params, config, tokens, other, mask)
    assert loss_a == loss_b
    assert all(np.array_equal(grads_a[n], grads_b[n]) for n in params)


def test_grads_have_the_names_shapes_and_dtype_of_params():
    config = CONFIGS["gqa"]
    for dtype in (np.float32, np.float64):
        params = {n: p.astype(dtype) for n, p in model.init_params(config, seed=0).items()}
        tokens, targets, _ = batch(config, seed=15)
        loss, grads = backward.loss_and_grads(params, config, tokens, targets)
        assert isinstance(loss, float)
        assert set(grads) == set(params)
        for n, p in params.items():
            assert grads[n].shape == p.shape and grads[n].dtype == dtype, n


@pytest.mark.parametrize("name", CONFIGS)
def test_fast_path_equals_the_reference(name):
    config = CONFIGS[name]
    tokens, targets, mask = batch(config, seed=16, B=3, T=config.max_seq_len, masked=True)
    params64 = float64_params(config, seed=17)
    params32 = {n: p.astype(np.float32) for n, p in params64.items()}
    for params, tol in ((params64, 1e-12), (params32, 1e-4)):
        loss, grads = backward.loss_and_grads(params, config, tokens, targets, mask)
        loss_ref, grads_ref = backward.loss_and_grads_reference(params, config, tokens, targets, mask)
        assert loss == pytest.approx(loss_ref, rel=tol)
        for n in params:
            assert rel_err(grads[n], grads_ref[n]) <= tol, n


def test_float32_loss_equals_model_forward_cross_entropy():
    config = model.PRESETS["tiny"]
    params = model.init_params(config, seed=1, std=0.3)  # std 0.3: confident, far-from-uniform predictions
    tokens, targets, mask = batch(config, seed=18, B=4, T=32, masked=True)
    expected = model_loss(params, config, tokens, targets, mask)  # model.forward, cross-entropy written out in the test
    assert backward.loss_and_grads(params, config, tokens, targets, mask)[0] == pytest.approx(expected, rel=1e-5)
    assert backward.forward_loss(params, config, tokens, targets, mask) == pytest.approx(expected, rel=1e-5)


def test_fresh_model_loss_is_close_to_log_vocab_size():
    config = model.PRESETS["tiny"]
    tokens, targets, _ = batch(config, seed=19, B=4, T=32)
    loss, _ = backward.loss_and_grads(model.init_params(config, seed=0), config, tokens, targets)
    assert abs(loss - math.log(config.vocab_size)) <= 0.1


def test_one_sequence_is_a_batch_of_one():
    config = CONFIGS["gqa"]
    params = float64_params(config, seed=20)
    tokens, targets, _ = batch(config, seed=21, B=1)
    loss_1d, grads_1d = backward.loss_and_grads(params, config, tokens[0], targets[0])
    loss_2d, grads_2d = backward.loss_and_grads(params, config, tokens, targets)
    assert loss_1d == loss_2d and all(np.array_equal(grads_1d[n], grads_2d[n]) for n in params)


def test_results_are_deterministic():
    config = model.PRESETS["tiny"]
    params = model.init_params(config, seed=2)
    tokens, targets, _ = batch(config, seed=22, B=4, T=32)
    loss_a, grads_a = backward.loss_and_grads(params, config, tokens, targets)
    loss_b, grads_b = backward.loss_and_grads(params, config, tokens, targets)
    assert loss_a == loss_b and all(np.array_equal(grads_a[n], grads_b[n]) for n in params)


@pytest.mark.parametrize("fn", [backward.loss_and_grads, backward.forward_loss, backward.loss_and_grads_reference])
def test_bad_inputs_are_refused_with_a_clear_message(fn):
    config = CONFIGS["gqa"]
    params = model.init_params(config, seed=0)
    tokens, targets, _ = batch(config, seed=23)
    with pytest.raises(ValueError, match="selects no position"):
        fn(params, config, tokens, targets, np.zeros_like(tokens))
    with pytest.raises(ValueError, match="loss_mask has shape"):
        fn(params, config, tokens, targets, np.ones((2, 4)))
    with pytest.raises(ValueError, match="only 0 and 1"):
        fn(params, config, tokens, targets, np.full(tokens.shape, 2))
    with pytest.raises(ValueError, match="targets have shape"):
        fn(params, config, tokens, targets[:, :-1])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        fn(params, config, tokens, np.full_like(targets, config.vocab_size))
    with pytest.raises(ValueError, match="missing"):
        fn({n: p for n, p in params.items() if n != "wo"}, config, tokens, targets)


def test_saturated_swiglu_gate_stays_finite():
    config = CONFIGS["gqa"]
    params = model.init_params(config, seed=3, std=0.3)
    params["w1"] *= 1000.0  # gate pre-activations of +-hundreds: exp overflows float32 on both sides
    tokens, targets, _ = batch(config, seed=24)
    with np.errstate(over="ignore"):  # the reference's own exp(-a) overflows, harmlessly
        loss_ref, grads_ref = backward.loss_and_grads_reference(params, config, tokens, targets)
    loss, grads = backward.loss_and_grads(params, config, tokens, targets)
    assert math.isfinite(loss) and all(np.isfinite(g).all() for g in grads.values())
    assert loss == pytest.approx(loss_ref, rel=1e-4)
    assert all(rel_err(grads[n], grads_ref[n]) <= 1e-4 for n in params)


# -------------------------------------------- any loss of the logits (lessons 05-07) --

def tanh_loss(coefficients):
    """A smooth loss of every logit, with d loss / d logits written out: sum(c * tanh(logits))."""
    def loss_fn(logits):
        return float((coefficients * np.tanh(logits)).sum()), coefficients * (1 - np.tanh(logits) ** 2)
    return loss_fn


@pytest.mark.parametrize("name", CONFIGS)
def test_grads_from_logits_matches_finite_differences_on_every_tensor(name):
    config = CONFIGS[name]
    params = float64_params(config, seed=20)
    tokens, _, _ = batch(config, seed=21)
    coefficients = np.random.default_rng(22).normal(size=(*tokens.shape, config.vocab_size))
    loss_fn = tanh_loss(coefficients)
    loss, grads = backward.grads_from_logits(params, config, tokens, loss_fn)
    direct = lambda: loss_fn(model.forward(params, config, tokens))[0]  # noqa: E731 - independent of llmedu.backward
    assert loss == pytest.approx(direct(), rel=1e-12)
    rng = np.random.default_rng(23)
    for tensor, p in params.items():
        g = grads[tensor]
        flat = list(rng.choice(p.size, 4, replace=False)) + list(np.argsort(np.abs(g).ravel())[-2:])
        entries = [np.unravel_index(i, p.shape) for i in flat]
        numeric = numeric_grad(direct, p, entries)
        assert rel_err(np.array([g[idx] for idx in entries]), numeric) <= FD_TOL, tensor


@pytest.mark.parametrize("name", CONFIGS)
def test_grads_from_logits_fast_path_equals_the_reference(name):
    config = CONFIGS[name]
    params = float64_params(config, seed=24)
    tokens, _, _ = batch(config, seed=25, B=3, T=config.max_seq_len)
    loss_fn = tanh_loss(np.random.default_rng(26).normal(size=(*tokens.shape, config.vocab_size)))
    loss, grads = backward.grads_from_logits(params, config, tokens, loss_fn)
    loss_ref, grads_ref = backward.grads_from_logits_reference(params, config, tokens, loss_fn)
    assert loss == pytest.approx(loss_ref, rel=1e-12)
    for n in params:
        assert rel_err(grads[n], grads_ref[n]) <= 1e-12, n


def test_cross_entropy_as_a_loss_of_the_logits_gives_loss_and_grads():
    config = CONFIGS["gqa"]
    params = float64_params(config, seed=27)
    tokens, targets, mask = batch(config, seed=28, masked=True)

    def masked_cross_entropy(logits):  # (B, T, V)
        flat = logits.reshape(-1, config.vocab_size)
        return (backward.cross_entropy(flat, targets.reshape(-1), mask.reshape(-1)),
                backward.cross_entropy_backward(flat, targets.reshape(-1), mask.reshape(-1)).reshape(logits.shape))

    loss, grads = backward.grads_from_logits(params, config, tokens, masked_cross_entropy)
    expected_loss, expected = backward.loss_and_grads(params, config, tokens, targets, mask)
    assert loss == pytest.approx(expected_loss, rel=1e-12)
    for n in params:
        assert rel_err(grads[n], expected[n]) <= 1e-10, n


def test_dlogits_of_the_wrong_shape_are_refused():
    config = CONFIGS["gqa"]
    tokens, _, _ = batch(config, seed=29)
    with pytest.raises(ValueError, match="dlogits of shape"):
        backward.grads_from_logits(float64_params(config, seed=30), config, tokens, lambda logits: (0.0, logits[0]))


def distinct_tokens(config, seed, B=2, T=4):
    """Tokens (B, T) in which no id occurs twice, so each embedding row feeds exactly one position."""
    ids = np.random.default_rng(seed).permutation(config.vocab_size)[:B * T]
    return ids.reshape(B, T)


@pytest.mark.parametrize("name", CONFIGS)
def test_input_grads_match_finite_differences_on_the_embedding_rows(name):
    # Each id occurs once and the output matrix is not tied to the table, so nudging row tokens[b, t] of the
    # table moves the input at (b, t) alone: its finite difference is the gradient at that input.
    config = CONFIGS[name]
    params = float64_params(config, seed=40)
    tokens = distinct_tokens(config, seed=41)
    loss_fn = tanh_loss(np.random.default_rng(42).normal(size=(*tokens.shape, config.vocab_size)))
    loss, dx = backward.input_grads(params, config, tokens, loss_fn)
    direct = lambda: loss_fn(model.forward(params, config, tokens))[0]  # noqa: E731 - independent of llmedu.backward
    assert loss == pytest.approx(direct(), rel=1e-12)
    assert dx.shape == (*tokens.shape, config.dim)
    table = params["tok_embeddings"]
    for b, t in [(0, 0), (0, 3), (1, 2)]:
        entries = [(tokens[b, t], d) for d in range(config.dim)]
        assert rel_err(dx[b, t], numeric_grad(direct, table, entries)) <= FD_TOL, (b, t)


@pytest.mark.parametrize("name", CONFIGS)
def test_input_grads_fast_path_equals_the_reference(name):
    config = CONFIGS[name]
    params = float64_params(config, seed=43)
    tokens, _, _ = batch(config, seed=44, B=3, T=config.max_seq_len)
    loss_fn = tanh_loss(np.random.default_rng(45).normal(size=(*tokens.shape, config.vocab_size)))
    loss, dx = backward.input_grads(params, config, tokens, loss_fn)
    loss_ref, dx_ref = backward.input_grads_reference(params, config, tokens, loss_fn)
    assert loss == pytest.approx(loss_ref, rel=1e-12)
    assert rel_err(dx, dx_ref) <= 1e-12


def test_input_grads_summed_per_token_are_the_embedding_table_gradient():
    config = CONFIGS["gqa"]
    params = float64_params(config, seed=46)
    tokens, _, _ = batch(config, seed=47)  # ids repeat here: their inputs' gradients add up in the table
    loss_fn = tanh_loss(np.random.default_rng(48).normal(size=(*tokens.shape, config.vocab_size)))
    _, dx = backward.input_grads(params, config, tokens, loss_fn)
    _, grads = backward.grads_from_logits(params, config, tokens, loss_fn)
    assert rel_err(backward.embedding_backward(dx, tokens, config.vocab_size), grads["tok_embeddings"]) <= 1e-12
