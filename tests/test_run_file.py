"""assets/run.py, the standalone run file of lesson 00: same files read, same logits, same text as llmedu."""

import ast
import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import regex

from notebooks import ROOT

from llmedu import check, generate, model
from llmedu.base_model import load_base_model, load_card
from llmedu.checkpoint import load_params, read_safetensors, save_params, write_safetensors
from llmedu.sample import sample_ids
from llmedu.world import make_world

RUN_FILE = ROOT / "assets" / "run.py"
MODEL_FILE = ROOT / "assets" / "base_model.safetensors"
PROMPTS = ["Niosteth Wowind was born in", "Once upon a time", "The botanist", "12+34=", "x",
           "Lebren Himaind died in Weadeas in", "hello, world!\n\nNew paragraph:  two spaces"]


def load_run_file():
    spec = importlib.util.spec_from_file_location("run_file", RUN_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run = load_run_file()


@pytest.fixture(scope="module")
def base():
    """(params, config, tokenizer) of the shipped model."""
    params, config, tokenizer, _ = load_base_model()
    return params, config, tokenizer


def random_gqa_file(path, dtype=None):
    """A small random model with grouped-query attention and non-default eps/theta, saved with save_params."""
    tokenizer_text = read_safetensors(MODEL_FILE)[1]["tokenizer"]
    config = model.ModelConfig(vocab_size=512, dim=48, n_layers=2, n_heads=6, n_kv_heads=2, hidden_dim=96,
                               max_seq_len=32, norm_eps=1e-6, rope_theta=500000.0)
    params = model.init_params(config, seed=3, std=0.2)  # large weights: differences would show
    save_params(path, params, config, tokenizer_text=tokenizer_text, dtype=dtype)
    return params, config


def run_cli(*args):
    return subprocess.run([sys.executable, str(RUN_FILE), *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def test_run_file_imports_only_numpy_and_the_standard_library():
    tree = ast.parse(RUN_FILE.read_text(encoding="utf-8"))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported - sys.stdlib_module_names == {"numpy"}


def test_running_the_file_loads_no_llmedu_regex_or_numba():
    code = ("import runpy, sys\n"
            f"sys.argv = ['run.py', {str(MODEL_FILE)!r}, 'Once upon a time', '-n', '3']\n"
            f"runpy.run_path({str(RUN_FILE)!r}, run_name='__main__')\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('llmedu', 'regex', 'numba')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"


def test_run_file_is_short_enough_to_read_in_one_sitting():
    assert len(RUN_FILE.read_text(encoding="utf-8").splitlines()) <= 200


@pytest.mark.parametrize("dtype", [None, np.float16], ids=["float32", "float16"])
def test_reader_gives_the_arrays_and_metadata_of_the_library(tmp_path, dtype):
    path = tmp_path / "model.safetensors"
    random_gqa_file(path, dtype)
    expected_tensors, expected_metadata = read_safetensors(path)
    tensors, metadata = run.read_safetensors(path)
    assert metadata == expected_metadata
    assert list(tensors) == list(expected_tensors)
    for name, expected in expected_tensors.items():
        assert tensors[name].dtype == expected.dtype and tensors[name].shape == expected.shape, name
        assert np.array_equal(tensors[name], expected), name


def test_forward_matches_the_library_on_the_shipped_model(base):
    params, config, tokenizer = base
    weights, run_config, _ = run.load_model(MODEL_FILE)
    ids = tokenizer.encode("Niosteth Wowind was born in 1811 and became a sculptor in Weadeas.")
    expected = model.forward(params, config, np.array(ids))
    np.testing.assert_allclose(run.forward(weights, run_config, ids), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [None, np.float16], ids=["float32", "float16"])
def test_forward_matches_the_library_on_a_random_gqa_model(tmp_path, dtype):
    path = tmp_path / "model.safetensors"
    random_gqa_file(path, dtype)
    params, config, _ = load_params(path)  # float16 files come back as float32, as in the run file
    weights, run_config, _ = run.load_model(path)
    ids = np.random.default_rng(0).integers(0, config.vocab_size, config.max_seq_len)
    expected = model.forward(params, config, ids)
    np.testing.assert_allclose(run.forward(weights, run_config, list(ids)), expected, rtol=1e-4, atol=1e-4)


def test_decode_equals_the_library(base):
    _, config, tokenizer = base
    _, _, (_, vocab) = run.load_model(MODEL_FILE)
    rng = np.random.default_rng(0)
    cases = [[i] for i in range(config.vocab_size)]  # every token alone, special tokens included
    cases += [list(rng.integers(0, config.vocab_size, 20)) for _ in range(20)]
    cases += [[0xE4, 0xBD], [104, 0xFF, 105], []]  # broken UTF-8 becomes U+FFFD in both
    for ids in cases:
        assert run.decode(ids, vocab) == tokenizer.decode(ids), ids


def test_encode_equals_the_library_on_the_prompts(base):
    _, _, tokenizer = base
    _, _, (merges, _) = run.load_model(MODEL_FILE)
    for prompt in PROMPTS:
        assert run.encode(prompt, merges) == tokenizer.encode(prompt), prompt


def world_sentences() -> list[str]:
    card = load_card()  # the world the shipped model read
    world = make_world(card["world"]["seed"], n_people=card["world"]["n_people"])
    return sorted({s for line in world.text.split("\n") for s in regex.split(r"(?<=\.) ", line) if s})


def test_encode_differs_from_the_library_only_by_the_missing_pre_split(base):
    """Run on each chunk of the library's split pattern, the run file's encode gives the library's ids."""
    _, _, tokenizer = base
    _, _, (merges, _) = run.load_model(MODEL_FILE)
    for sentence in world_sentences():
        chunked = [i for chunk in regex.findall(tokenizer.pattern, sentence) for i in run.encode(chunk, merges)]
        assert chunked == tokenizer.encode(sentence), sentence


def test_encode_can_differ_on_four_digit_numbers_as_the_lesson_says(base):
    _, _, tokenizer = base
    _, _, (merges, vocab) = run.load_model(MODEL_FILE)
    ids = run.encode(" in 1919.", merges)
    assert [vocab[i] for i in ids][-3:] == [b"19", b"19", b"."]  # "19" merged across the cut after 3 digits
    assert [tokenizer.decode([i]) for i in tokenizer.encode(" in 1919.")][-4:] == ["19", "1", "9", "."]


def test_encode_can_differ_after_an_apostrophe_as_the_lesson_says(base):
    _, _, tokenizer = base
    _, _, (merges, vocab) = run.load_model(MODEL_FILE)
    assert [vocab[i] for i in run.encode("'the end'", merges)][:2] == [b"'", b"the"]
    assert [tokenizer.decode([i]) for i in tokenizer.encode("'the end'")][:4] == ["'", "t", "h", "e"]  # "'t" cut off


def test_encode_round_trips_every_world_sentence(base):
    _, _, (merges, vocab) = run.load_model(MODEL_FILE)
    for sentence in world_sentences():
        assert run.decode(run.encode(sentence, merges), vocab) == sentence


def test_greedy_generation_equals_the_library(base):
    params, config, tokenizer = base
    weights, run_config, _ = run.load_model(MODEL_FILE)
    for prompt in PROMPTS[:2]:
        ids = tokenizer.encode(prompt)
        n_new = 30  # the library's generate stops when the context is full; this stays within it
        expected = list(generate.generate(params, config, ids, max_new_tokens=n_new, temperature=0))
        actual = run.generate(lambda context: run.forward(weights, run_config, context)[-1], ids, n_new, 0,
                              np.random.default_rng(0), run_config["max_seq_len"])
        assert actual == expected, prompt


def test_greedy_generation_past_the_context_crops_like_llmedu_sample(base):
    params, config, tokenizer = base
    weights, run_config, _ = run.load_model(MODEL_FILE)
    ids = tokenizer.encode(" ".join(world_sentences()[:4]))[:56]  # 8 short of the context, 20 new tokens
    expected = list(sample_ids(params, config, ids, max_new_tokens=20, temperature=0))
    actual = run.generate(lambda context: run.forward(weights, run_config, context)[-1], ids, 20, 0,
                          np.random.default_rng(0), run_config["max_seq_len"])
    assert actual == expected


def test_sample_token_and_generate_pass_the_lesson_checks(capsys):
    check.sample_token(run.sample_token)
    check.generate(run.generate)
    assert "passed" in capsys.readouterr().out


def test_cli_prints_the_same_text_for_the_same_seed():
    args = (MODEL_FILE, "Once upon a time", "-n", "25", "--temperature", "1.0", "--seed", "7")
    first, second = run_cli(*args), run_cli(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() and first.stdout == second.stdout


def test_cli_greedy_prints_the_library_continuation(base):
    params, config, tokenizer = base
    prompt = "Niosteth Wowind was born in"
    new = generate.generate(params, config, tokenizer.encode(prompt), max_new_tokens=20, temperature=0)
    result = run_cli(MODEL_FILE, prompt, "-n", "20", "--temperature", "0")
    assert result.stdout == tokenizer.decode(list(new)) + "\n"


def test_missing_file_is_one_clear_line(tmp_path):
    result = run_cli(tmp_path / "absent.safetensors", "hello")
    assert result.returncode == 1
    assert "cannot read" in result.stderr and "No such file" in result.stderr
    assert "Traceback" not in result.stderr


def test_safetensors_file_that_is_not_an_llmedu_model_is_one_clear_line(tmp_path):
    path = tmp_path / "other.safetensors"
    write_safetensors(path, {"weight": np.zeros((2, 3), np.float32)}, {"framework": "other"})
    result = run_cli(path, "hello")
    assert result.returncode == 1
    assert "not an llmedu model" in result.stderr and "Traceback" not in result.stderr


def test_file_that_is_not_safetensors_is_one_clear_line(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("these are not the weights you are looking for\n")
    result = run_cli(path, "hello")
    assert result.returncode == 1
    assert "not a readable safetensors file" in result.stderr and "Traceback" not in result.stderr
