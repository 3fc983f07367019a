"""llama.cpp runs our exported model token for token (issue 16): `pytest -o addopts="" -m llama_cpp tests/test_llama_cpp.py`.

Needs llama-cpp-python (0.3.36 measured), which builds llama.cpp from source on
install (minutes on 2 cores), so the default run deselects this file with the
``llama_cpp`` marker and skips it where the package is missing.
"""

from pathlib import Path

import pytest

from llmedu.checkpoint import load_params
from llmedu.data import tokenizer_from_text
from llmedu.generate import generate
from llmedu.gguf_export import export_gguf, llama_cpp_greedy

llama_cpp = pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.llama_cpp

BASE = Path(__file__).resolve().parents[1] / "assets" / "base_model.safetensors"
MIXED_TEXT = ("Ada Lovelace lives in Lisbon. 你好，世界！ 🙂👍🏽 The year 2024 had 366 days.\n\n"
              "def add(a, b):\n    return a + b  # sum\n\tx = [1, 2, 3]\r\n")
PROMPTS = ["Ada lives in", "The", "In the year 1843,", "\n"]
GREEDY_TOKENS = 24


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """(our params, config, tokenizer, llama.cpp's Llama on the f32 GGUF export of the shipped base model)."""
    params, config, metadata = load_params(BASE)
    out = tmp_path_factory.mktemp("gguf") / "base-f32.gguf"
    export_gguf(BASE, out, "f32")
    llm = llama_cpp.Llama(model_path=str(out), n_ctx=config.max_seq_len, logits_all=True, verbose=False,
                          n_threads=1, seed=0)
    return params, config, tokenizer_from_text(metadata["tokenizer"]), llm


def test_llama_cpp_tokenizer_gives_our_ids_on_mixed_text(base):
    _, _, tokenizer, llm = base
    assert llm.tokenize(MIXED_TEXT.encode("utf-8"), add_bos=False, special=False) == tokenizer.encode(MIXED_TEXT)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_llama_cpp_greedy_tokens_equal_ours(base, prompt):
    params, config, tokenizer, llm = base
    ids = tokenizer.encode(prompt)
    ours = list(generate(params, config, ids, max_new_tokens=GREEDY_TOKENS, temperature=0.0))
    assert llama_cpp_greedy(llm, ids, GREEDY_TOKENS) == ours
