"""Specifications of the optimizer, the learning-rate schedule and gradient clipping (lesson 03)."""

import math

import numpy as np
import pytest

from llmedu import model, optim


def small_params(dtype=np.float32):
    rng = np.random.default_rng(0)
    return {"wq": rng.standard_normal((3, 4)).astype(dtype),
            "attention_norm": (1 + rng.standard_normal((2, 3)) * 0.1).astype(dtype)}


def random_grads(params, seed):
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal(p.shape).astype(p.dtype) for n, p in params.items()}


def test_two_steps_match_the_update_computed_by_hand():
    params = small_params(np.float64)
    start = {n: p.copy() for n, p in params.items()}
    g1, g2 = random_grads(params, 1), random_grads(params, 2)
    opt = optim.AdamW(params, lr=0.5, betas=(0.9, 0.95), weight_decay=0.1, eps=1e-8)
    opt.step(g1, lr=0.1)  # the override is used instead of 0.5 ...
    opt.step(g2)  # ... for one step only
    for name in params:
        p, a, b = start[name], g1[name], g2[name]
        decay = 0.1 if name == "wq" else 0.0  # the RMSNorm gain is not decayed
        # step 1: m = 0.1 a, v = 0.05 a^2, and the bias corrections undo the factors exactly
        p = p * (1 - 0.1 * decay) - 0.1 * a / (np.abs(a) + 1e-8)
        # step 2 with lr = 0.5
        m, v = 0.9 * 0.1 * a + 0.1 * b, 0.95 * 0.05 * a * a + 0.05 * b * b
        p = p * (1 - 0.5 * decay) - 0.5 * (m / (1 - 0.9**2)) / (np.sqrt(v / (1 - 0.95**2)) + 1e-8)
        np.testing.assert_allclose(params[name], p, rtol=1e-12, atol=1e-14)


def test_fused_step_equals_the_numpy_reference_in_float32():
    config = model.PRESETS["tiny"]
    fast, ref = model.init_params(config, seed=0), model.init_params(config, seed=0)
    opt_fast, opt_ref = optim.AdamW(fast, lr=1e-2), optim.AdamW(ref, lr=1e-2)
    for seed in range(3):
        grads = random_grads(fast, seed)
        opt_fast.step(grads)
        opt_ref.step_reference(grads)
    for name in fast:
        assert fast[name].dtype == np.float32
        np.testing.assert_allclose(fast[name], ref[name], rtol=1e-5, atol=1e-7)


def test_weight_decay_shrinks_matrices_and_skips_norm_gains():
    config = model.PRESETS["tiny"]
    params = model.init_params(config, seed=0)
    start = {n: p.copy() for n, p in params.items()}
    opt = optim.AdamW(params, lr=0.01, weight_decay=0.5)
    opt.step({n: np.zeros_like(p) for n, p in params.items()})  # zero gradients: only the decay acts
    for name in params:
        if name in ("attention_norm", "ffn_norm", "norm"):
            assert np.array_equal(params[name], start[name]), name
        else:
            np.testing.assert_allclose(params[name], start[name] * (1 - 0.01 * 0.5), rtol=1e-6, err_msg=name)


def test_params_are_updated_in_place():
    params = small_params()
    arrays = dict(params)
    optim.AdamW(params, lr=0.1).step(random_grads(params, 3))
    assert all(params[n] is arrays[n] for n in params)
    assert not np.array_equal(params["wq"], small_params()["wq"])


def test_state_dict_round_trip_continues_identically():
    params_a = small_params()
    opt_a = optim.AdamW(params_a, lr=0.05)
    for seed in range(3):
        opt_a.step(random_grads(params_a, seed))
    state = opt_a.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values()) and int(state["step"]) == 3
    params_b = {n: p.copy() for n, p in params_a.items()}
    opt_b = optim.AdamW(params_b, lr=0.05)
    opt_b.load_state_dict(state)
    for seed in range(3, 6):
        opt_a.step(random_grads(params_a, seed))
        opt_b.step(random_grads(params_b, seed))
    assert all(np.array_equal(params_a[n], params_b[n]) for n in params_a)


def test_load_state_dict_refuses_a_mismatched_state():
    params = small_params()
    state = optim.AdamW(params, lr=0.1).state_dict()
    opt = optim.AdamW(small_params(), lr=0.1)
    with pytest.raises(ValueError, match="does not match"):
        opt.load_state_dict({k: v for k, v in state.items() if k != "m.wq"})
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict({**state, "v.wq": np.zeros((4, 3), np.float32)})


def test_cosine_lr_warms_up_decays_and_stays_at_min_lr():
    kw = dict(lr=1.0, min_lr=0.1, warmup_iters=10, lr_decay_iters=110)
    assert optim.cosine_lr(0, **kw) == pytest.approx(1 / 11)
    assert optim.cosine_lr(9, **kw) == pytest.approx(10 / 11)
    assert optim.cosine_lr(10, **kw) == pytest.approx(1.0)  # the peak, at the end of warm-up
    assert optim.cosine_lr(60, **kw) == pytest.approx(0.55)  # half way: half way between lr and min_lr
    assert optim.cosine_lr(35, **kw) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 4)))
    assert optim.cosine_lr(110, **kw) == pytest.approx(0.1)
    assert optim.cosine_lr(10_000, **kw) == 0.1
    decay = [optim.cosine_lr(s, **kw) for s in range(10, 111)]
    assert all(a > b for a, b in zip(decay, decay[1:]))


def test_cosine_lr_without_warmup_starts_at_lr():
    assert optim.cosine_lr(0, lr=3e-4, min_lr=3e-5, warmup_iters=0, lr_decay_iters=100) == pytest.approx(3e-4)


def test_clip_grad_norm_scales_to_max_norm_and_returns_the_norm_before():
    grads = {"a": np.array([3.0, 4.0], np.float32), "b": np.array([[12.0]], np.float32)}  # global norm 13
    total = optim.clip_grad_norm(grads, 1.3)
    assert total == pytest.approx(13.0)
    after = np.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads.values()))
    assert after == pytest.approx(1.3, rel=1e-6)
    np.testing.assert_allclose(grads["a"], [0.3, 0.4], rtol=1e-6)  # same direction


def test_clip_grad_norm_leaves_small_gradients_alone():
    grads = {"a": np.array([0.3, 0.4], np.float32)}
    assert optim.clip_grad_norm(grads, 1.0) == pytest.approx(0.5)
    assert np.array_equal(grads["a"], np.array([0.3, 0.4], np.float32))


def test_add_and_scale_grads_accumulate_micro_batches():
    total = {"a": np.zeros(2)}
    optim.add_grads(total, {"a": np.array([1.0, 2.0])})
    optim.add_grads(total, {"a": np.array([3.0, 4.0])}, scale=0.5)
    optim.scale_grads(total, 2.0)
    assert np.array_equal(total["a"], [5.0, 8.0])
