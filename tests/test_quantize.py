"""Q8_0 quantisation and runq.c's int8 file (lesson 08, exercise 8.3's library side)."""

import numpy as np
import pytest

from llmedu import model
from llmedu.checkpoint import export_llama2c
from llmedu.generate import KVCache, generate
from llmedu.quantize import (HEADER_BYTES, MATRICES, Q8, dequantize_q8, export_llama2c_q8, file_bytes, generate_q8,
                             group_size_for, matvec_q8, quantize_params, quantize_q8, read_llama2c_q8,
                             step_q8_reference)
from llmedu.quantize_kernels import matvec_q8_fast, step_q8

TINY = model.PRESETS["tiny"]


def cfg(dim, hidden_dim):
    return model.ModelConfig(vocab_size=8, dim=dim, n_layers=1, n_heads=2, n_kv_heads=2, hidden_dim=hidden_dim,
                             max_seq_len=8)


def test_scale_is_each_groups_max_over_127_and_q_is_w_over_scale_rounded():
    w = np.array([[0.5, -1.27, 0.1, 0.0, 2.54, 1.0, -0.3, 0.02]], np.float32)
    t = quantize_q8(w, 4)
    assert t.q.dtype == np.int8 and t.s.dtype == np.float32
    np.testing.assert_allclose(t.s, [[0.01, 0.02]], rtol=1e-6)
    assert t.q.tolist() == [[50, -127, 10, 0, 127, 50, -15, 1]]


def test_an_all_zero_group_gets_scale_zero_and_q_zero_not_nan():
    t = quantize_q8(np.zeros((2, 8), np.float32), 4)
    assert not t.s.any() and not t.q.any()
    assert not np.isnan(dequantize_q8(t)).any()


def test_ties_round_away_from_zero_as_c_round_does():
    w = np.array([[127.0, 0.5, -0.5, 1.5, -2.5, 2.5, 0.0, 0.0]], np.float32)  # scale exactly 1
    assert quantize_q8(w, 8).q.tolist() == [[127, 1, -1, 2, -3, 3, 0, 0]]


def test_dequantised_weights_lie_within_half_a_step_of_the_originals():
    w = np.random.default_rng(0).normal(size=(16, 64)).astype(np.float32)
    t = quantize_q8(w, 32)
    step = np.repeat(t.s, 32, axis=1)
    assert np.all(np.abs(dequantize_q8(t) - w) <= step / 2 * (1 + 1e-6))


@pytest.mark.parametrize("bad", [0, -8, 2.5, True, 5])
def test_a_bad_group_size_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="group"):
        quantize_q8(np.ones((2, 8), np.float32), bad)


@pytest.mark.parametrize("bad", [0, -64, "64"])
def test_group_size_for_refuses_a_group_size_that_is_not_a_positive_integer(bad):
    with pytest.raises(ValueError, match="positive integer"):
        group_size_for(TINY, bad)


@pytest.mark.parametrize("dim, hidden_dim, expected", [(768, 2048, 64), (288, 768, 32), (128, 344, 8),
                                                       (128, 512, 64), (96, 256, 32), (4, 10, 2)])
def test_group_size_halves_from_64_until_it_divides_dim_and_hidden_dim(dim, hidden_dim, expected):
    assert group_size_for(cfg(dim, hidden_dim)) == expected


def test_quantize_params_uses_the_backed_off_group_size_for_every_matrix():
    config = model.ModelConfig(vocab_size=16, dim=32, n_layers=1, n_heads=2, n_kv_heads=1, hidden_dim=40,
                               max_seq_len=8)
    qparams = quantize_params(model.init_params(config), config)
    assert {qparams[name].group_size for name in MATRICES} == {8}


def test_matvec_is_integer_dots_per_group_times_both_scales():
    rng = np.random.default_rng(1)
    w, x = quantize_q8(rng.normal(size=(3, 8)).astype(np.float32), 4), rng.normal(size=8).astype(np.float32)
    xq = quantize_q8(x, 4)
    by_hand = [sum(float(np.dot(w.q[i, g * 4:g * 4 + 4].astype(int), xq.q[g * 4:g * 4 + 4].astype(int)))
                   * w.s[i, g] * xq.s[g] for g in range(2)) for i in range(3)]
    np.testing.assert_allclose(matvec_q8(w, x), by_hand, rtol=1e-6)


@pytest.mark.parametrize("rows", [37, 3])  # 37: the last block of rows overlaps; 3: fewer rows than a block
@pytest.mark.parametrize("gs", [8, 12, 16, 32, 64])  # every compiled-in group size, and 12 for the general kernel
def test_numba_matvec_equals_the_numpy_reference_exactly(gs, rows):
    rng = np.random.default_rng(gs)
    w, x = quantize_q8(rng.normal(size=(rows, 192)).astype(np.float32), gs), rng.normal(size=192).astype(np.float32)
    assert np.array_equal(matvec_q8_fast(w, x), matvec_q8(w, x))


def test_numba_int8_step_matches_the_numpy_int8_step_token_by_token():
    qparams = quantize_params(model.init_params(TINY, seed=2, std=0.3), TINY)
    fast, slow = KVCache.empty(TINY), KVCache.empty(TINY)
    for token in [3, 1, 4, 1, 5, 9, 2, 6]:
        np.testing.assert_allclose(step_q8(qparams, TINY, token, fast), step_q8_reference(qparams, TINY, token, slow),
                                   rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fast.keys, slow.keys, rtol=1e-4, atol=1e-5)
    assert fast.pos == slow.pos == 8


def test_export_writes_runq_version_2_header_then_exactly_the_promised_bytes(tmp_path):
    config = model.ModelConfig(vocab_size=64, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=48,
                               max_seq_len=16)
    assert export_llama2c_q8(tmp_path / "m.bin", model.init_params(config), config) == 16
    raw = (tmp_path / "m.bin").read_bytes()
    assert raw[:4] == b"24ka"  # 0x616b3432 ("ak42") stored little-endian
    assert np.frombuffer(raw[4:36], "<i4").tolist() == [2, 32, 48, 2, 4, 2, 64, 16]
    assert raw[36] == 0 and int.from_bytes(raw[37:41], "little") == 16 and not any(raw[41:HEADER_BYTES])
    assert len(raw) == file_bytes(config) == HEADER_BYTES + 4 * (2 * 2 + 1) * 32 + sum(
        n * (1 + 4 / 16) for n in (64 * 32, 2 * 32 * 32, 2 * 2 * 16 * 32, 2 * 32 * 32, 3 * 2 * 48 * 32, 64 * 32))


def test_the_file_reads_back_as_the_quantised_model(tmp_path):
    params = model.init_params(TINY, seed=4)
    export_llama2c_q8(tmp_path / "m.bin", params, TINY)
    qparams, config = read_llama2c_q8(tmp_path / "m.bin")
    assert config == TINY
    for name, value in quantize_params(params, TINY).items():
        if isinstance(value, Q8):
            assert np.array_equal(qparams[name].q, value.q) and np.array_equal(qparams[name].s, value.s), name
        else:
            assert np.array_equal(qparams[name], value), name


def test_the_reader_refuses_a_file_that_is_not_version_2(tmp_path):
    export_llama2c(tmp_path / "v0.bin", model.init_params(TINY), TINY)
    with pytest.raises(ValueError, match="magic"):
        read_llama2c_q8(tmp_path / "v0.bin")
    export_llama2c_q8(tmp_path / "v1.bin", model.init_params(TINY), TINY)
    raw = bytearray((tmp_path / "v1.bin").read_bytes())
    raw[4] = 1
    (tmp_path / "v1.bin").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="version-1.*version 2"):
        read_llama2c_q8(tmp_path / "v1.bin")


def test_the_reader_refuses_a_truncated_file(tmp_path):
    export_llama2c_q8(tmp_path / "m.bin", model.init_params(TINY), TINY)
    (tmp_path / "m.bin").write_bytes((tmp_path / "m.bin").read_bytes()[:-3])
    with pytest.raises(ValueError, match="truncated"):
        read_llama2c_q8(tmp_path / "m.bin")


def test_export_refuses_a_model_runq_would_compute_differently(tmp_path):
    config = model.ModelConfig(**{**TINY.to_dict(), "rope_theta": 500000.0})
    with pytest.raises(ValueError, match="rope_theta"):
        export_llama2c_q8(tmp_path / "m.bin", model.init_params(config), config)
    assert not (tmp_path / "m.bin").exists()


def test_generate_q8_follows_float32_greedy_on_the_shipped_model_for_the_first_tokens():
    from llmedu.base_model import load_base_model

    params, config, tokenizer, _ = load_base_model()
    for prompt in ["Mira Okafor was born in", "The city of", "12 + 35 ="]:
        ids = tokenizer.encode(prompt)
        int8 = generate_q8(params, config, ids, max_new_tokens=8)
        float32 = list(generate(params, config, ids, max_new_tokens=8, temperature=0))
        assert int8[:4] == float32[:4], prompt


def test_generate_q8_refuses_to_run_past_the_context_window():
    with pytest.raises(ValueError, match="at most 61 new tokens"):
        generate_q8(model.init_params(TINY), TINY, [1, 2, 3], max_new_tokens=62)
