"""GGUF export: an llmedu parameters file in the format llama.cpp runs (lesson 00, issue 16).

Lesson 00 (``00_two_files``) shows that an LLM is a parameters file plus code
that runs it. GGUF is the parameters file most people download today: one
file holding a header, typed key/value metadata (the hyperparameters, the
tokenizer, the chat template) and a table of named tensors. llama.cpp and
everything built on it (Ollama, LM Studio, llama-cpp-python) read it. The
writer here is the ``gguf`` package, maintained by the llama.cpp project.

What goes in, and why each choice matches what llama.cpp's ``llama`` loader
does with it:

- architecture ``llama``: our model is a Llama (RMSNorm, RoPE, SwiGLU,
  grouped-query attention, no biases);
- the tensors, renamed (``TENSOR_NAMES``) and split per layer
  (``blk.N.attn_q.weight`` ...). Our matrices are stored (out, in) and GGUF
  lists dimensions innermost first, so numpy's (out, in) is exactly the
  (in, out) llama.cpp expects: no transposes. Our RoPE rotates adjacent
  channel pairs (0,1), (2,3) ..., which is llama.cpp's normal RoPE for
  ``llama``: no query/key permutation either (that permutation exists only
  to undo Hugging Face's split-halves layout);
- the tokenizer as ``gpt2`` (byte-level BPE): every token's bytes written in
  GPT-2's bytes-to-unicode alphabet (``byte_level``), the merges in rank
  order as ``"left right"`` pairs, and ``tokenizer.ggml.pre = llama-bpe``.
  llama.cpp maps ``llama-bpe`` to its Llama 3 pre-tokenizer, whose split
  regex is the GPT-4 (cl100k) pattern we split with
  (``llmedu.bpe.GPT4_SPLIT_PATTERN``). The textual differences split text
  the same way: ``\\s*[\\r\\n]+`` against our ``\\s*[\\r\\n]`` (both take the
  longest run of whitespace that ends in a newline), greedy ``?`` and ``+``
  against our possessive ``?+`` and ``++`` (backtracking there could never
  produce another match), and the contractions spelled case by case
  instead of with ``(?i:...)``;
- special tokens as CONTROL tokens with their ids: bos and pad are
  ``<|endoftext|>`` (never prepended: ``add_bos_token`` is false, because
  our models were trained without a leading token); eos is ``<|im_end|>``
  when the tokenizer has the chat markers, so a chat model stops at the end
  of its turn as ``llmedu.chat`` does, and ``<|endoftext|>`` otherwise;
- ``tokenizer.chat_template``: a Jinja template (``CHAT_TEMPLATE``) that
  renders ``llmedu.chat``'s ``<|im_start|>{role}<|im_sep|>{content}<|im_end|>``
  and, when asked for a generation prompt, ``<|im_start|>assistant<|im_sep|>``.

dtypes: ``f32`` (exact), ``f16`` (half precision) and ``q8_0`` (blocks of 32
int8 with one f16 scale: 8.5 bits a weight). One-dimensional tensors (the
RMSNorm gains) stay f32, as in llama.cpp's own converter. A q8_0 tensor
whose rows are not a multiple of 32 cannot be cut into blocks; it is stored
in f16 instead, as llama.cpp's converter does, and ``export_gguf`` returns
which tensors that happened to.

``llama_cpp_greedy`` and ``agreement`` serve the comparison with llama.cpp
(tests/test_llama_cpp.py, benchmarks/bench_gguf_llama_cpp.py).

Left out: other quantisations (Q4_K ...), writing several files (splits),
reading GGUF back into llmedu.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from llmedu.chat import IM_END, IM_SEP, IM_START
from llmedu.checkpoint import load_params
from llmedu.model import ModelConfig

DTYPES = ("f32", "f16", "q8_0")
ARCH = "llama"
TOKENIZER_PRE = "llama-bpe"
ENDOFTEXT = "<|endoftext|>"
Q8_0_BLOCK = 32  # values per q8_0 block: rows must be a multiple of this

# llmedu name -> GGUF name; "{}" is the layer number for stacked tensors
TENSOR_NAMES = {
    "tok_embeddings": "token_embd.weight",
    "attention_norm": "blk.{}.attn_norm.weight",
    "wq": "blk.{}.attn_q.weight",
    "wk": "blk.{}.attn_k.weight",
    "wv": "blk.{}.attn_v.weight",
    "wo": "blk.{}.attn_output.weight",
    "ffn_norm": "blk.{}.ffn_norm.weight",
    "w1": "blk.{}.ffn_gate.weight",
    "w2": "blk.{}.ffn_down.weight",
    "w3": "blk.{}.ffn_up.weight",
    "norm": "output_norm.weight",
    "output": "output.weight",
}

# Jinja, as llama.cpp / llama-cpp-python / Ollama render it: the same text as
# llmedu.chat.render_prompt (add_generation_prompt) or render_conversation.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '" + IM_START + "' + message['role'] + '" + IM_SEP + "' + message['content'] + '" + IM_END + "' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '" + IM_START + "assistant" + IM_SEP + "' }}{% endif %}"
)


class GGUFExportError(ValueError):
    """Input that cannot become a GGUF file; the message says why and what to do."""


# ------------------------------------------------------------- tokenizer --

def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table.

    Bytes that are printable and not a space keep their own character; the
    other 68 (controls, space, a few Latin-1 gaps) get the characters from
    U+0100 on, in byte order. Every token is then a string without spaces or
    control characters, so a merge can be written as ``"left right"``.
    """
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, shifted = {}, 0
    for byte in range(256):
        if byte in kept:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + shifted)
            shifted += 1
    return table


BYTE_TO_UNICODE = _bytes_to_unicode()


def byte_level(data: bytes) -> str:
    """A token's bytes in the byte-level alphabet (b" the" -> "Ġthe")."""
    return "".join(BYTE_TO_UNICODE[b] for b in data)


def gguf_vocab(tokenizer, vocab_size: int) -> tuple[list[str], list[int], list[str]]:
    """(tokens, token types, merges) for GGUF's ``gpt2`` tokenizer keys.

    Byte and merge tokens are written byte-level and typed NORMAL; special
    tokens keep their text and are CONTROL (llama.cpp only matches them as
    markers, never inside ordinary text). Ids the model has beyond the
    tokenizer's (a padded vocabulary) become UNUSED placeholders.
    """
    from gguf import TokenType

    specials = {i: s for s, i in tokenizer.special_tokens.items()}
    tokens, types = [], []
    for i in range(len(tokenizer)):
        if i in specials:
            tokens.append(specials[i])
            types.append(TokenType.CONTROL)
        else:
            tokens.append(byte_level(tokenizer.vocab[i]))
            types.append(TokenType.NORMAL)
    for i in range(len(tokenizer), vocab_size):
        tokens.append(f"<|unused_{i}|>")
        types.append(TokenType.UNUSED)
    ranked = sorted(tokenizer.merges.items(), key=lambda item: item[1])  # rank = the order merges were learned
    merges = [f"{byte_level(tokenizer.vocab[a])} {byte_level(tokenizer.vocab[b])}" for (a, b), _ in ranked]
    return tokens, [int(t) for t in types], merges


def _special_ids(tokenizer) -> dict[str, int]:
    """bos/eos/pad ids (see the module docstring for the choice); GGUFExportError without <|endoftext|>."""
    specials = tokenizer.special_tokens
    if ENDOFTEXT not in specials:
        raise GGUFExportError(f"the tokenizer has no {ENDOFTEXT} special token, which the GGUF file needs as its "
                              "bos/pad token; train the tokenizer with special_tokens=CHAT_SPECIAL_TOKENS.")
    eos = IM_END if _is_chat_tokenizer(tokenizer) else ENDOFTEXT
    return {"bos": specials[ENDOFTEXT], "eos": specials[eos], "pad": specials[ENDOFTEXT]}


def _is_chat_tokenizer(tokenizer) -> bool:
    return all(marker in tokenizer.special_tokens for marker in (IM_START, IM_SEP, IM_END))


# --------------------------------------------------------------- tensors --

def gguf_tensors(params: dict, config: ModelConfig) -> dict[str, np.ndarray]:
    """GGUF name -> float32 array, stacked layer tensors split into ``blk.N`` ones."""
    out = {}
    for name, pattern in TENSOR_NAMES.items():
        array = np.asarray(params[name], dtype=np.float32)
        if "{}" in pattern:
            for layer in range(config.n_layers):
                out[pattern.format(layer)] = array[layer]  # e.g. wq[layer]: (dim, dim) = (out, in)
        else:
            out[pattern] = array
    return out


def storage_type(array: np.ndarray, dtype: str) -> str:
    """The type one tensor is written as: "f32", "f16" or "q8_0" (see the module docstring)."""
    if dtype == "f32" or array.ndim == 1:
        return "f32"
    if dtype == "q8_0" and array.shape[-1] % Q8_0_BLOCK == 0:
        return "q8_0"
    return "f16"


def _encode(name: str, array: np.ndarray, kind: str) -> tuple[np.ndarray, object]:
    """(data, GGML type) for the writer; GGUFExportError if f16 would turn a weight into inf."""
    from gguf import GGMLQuantizationType, quants

    if kind == "f32":
        return array, GGMLQuantizationType.F32
    # f16 holds values up to 65504; q8_0 stores each block's scale (its largest value / 127) as f16
    limit = float(np.finfo(np.float16).max) * (127 if kind == "q8_0" else 1)
    if np.abs(array).max(initial=0.0) > limit:
        raise GGUFExportError(f"parameter {name!r} has values beyond {limit:g}, more than {kind} can hold "
                              "(float16 stops at 65504); export it with --dtype f32.")
    if kind == "f16":
        return array.astype(np.float16), GGMLQuantizationType.F16
    return quants.quantize(array, GGMLQuantizationType.Q8_0), GGMLQuantizationType.Q8_0


# ------------------------------------------------------------------ file --

def export_gguf(params_file, out_path, dtype: str = "f32") -> dict[str, str]:
    """Write the parameters file ``params_file`` as a GGUF file at ``out_path``, atomically.

    Everything is checked and converted before a byte is written (no
    tokenizer, a tokenizer that is not BPE, an unknown dtype, a weight
    float16 cannot hold: GGUFExportError). Returns ``{gguf tensor name:
    type written}``, so a caller can say which q8_0 tensors fell back to f16.
    """
    if dtype not in DTYPES:
        raise GGUFExportError(f"dtype {dtype!r} is not supported; use one of {', '.join(DTYPES)}.")
    params, config, metadata = load_params(params_file)
    tokenizer = _bpe_tokenizer(params_file, metadata)
    if len(tokenizer) > config.vocab_size:
        raise GGUFExportError(f"{params_file}: the tokenizer has {len(tokenizer)} ids but the model only "
                              f"{config.vocab_size}; the two do not belong together.")
    tensors = gguf_tensors(params, config)
    kinds = {name: storage_type(array, dtype) for name, array in tensors.items()}
    encoded = {name: _encode(name, array, kinds[name]) for name, array in tensors.items()}
    _write_atomically(out_path, lambda path: _write(path, config, tokenizer, encoded, dtype))
    return kinds


def _bpe_tokenizer(params_file, metadata: dict):
    from llmedu.data import tokenizer_from_text
    from llmedu.tokenizer import BPETokenizer

    if "tokenizer" not in metadata:
        raise GGUFExportError(f"{params_file} holds no tokenizer, and a GGUF file must carry one; save the model "
                              "with save_params(..., tokenizer_text=tokenizer_to_text(tokenizer)).")
    tokenizer = tokenizer_from_text(metadata["tokenizer"], f"{params_file}'s tokenizer")
    if not isinstance(tokenizer, BPETokenizer):
        raise GGUFExportError(f"{params_file} has a {type(tokenizer).__name__}; GGUF's gpt2 tokenizer is byte-level "
                              "BPE, so train the model with a BPETokenizer (llmedu pretrain --tokenizer bpe).")
    _special_ids(tokenizer)  # fails here, before writing, if <|endoftext|> is missing
    return tokenizer


def _write(path, config: ModelConfig, tokenizer, encoded: dict, dtype: str) -> None:
    import gguf

    writer = gguf.GGUFWriter(path, ARCH)
    writer.add_name("llmedu")
    writer.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                          "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[dtype])
    writer.add_context_length(config.max_seq_len)
    writer.add_embedding_length(config.dim)
    writer.add_feed_forward_length(config.hidden_dim)
    writer.add_block_count(config.n_layers)
    writer.add_head_count(config.n_heads)
    writer.add_head_count_kv(config.n_kv_heads)
    writer.add_layer_norm_rms_eps(config.norm_eps)
    writer.add_rope_freq_base(config.rope_theta)
    writer.add_rope_dimension_count(config.head_dim)  # RoPE rotates every channel of a head
    writer.add_vocab_size(config.vocab_size)
    _add_tokenizer(writer, tokenizer, config.vocab_size)
    for name, (data, kind) in encoded.items():
        writer.add_tensor(name, data, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _add_tokenizer(writer, tokenizer, vocab_size: int) -> None:
    tokens, types, merges = gguf_vocab(tokenizer, vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(TOKENIZER_PRE)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    ids = _special_ids(tokenizer)
    writer.add_bos_token_id(ids["bos"])
    writer.add_eos_token_id(ids["eos"])
    writer.add_pad_token_id(ids["pad"])
    writer.add_add_bos_token(False)
    if _is_chat_tokenizer(tokenizer):
        writer.add_chat_template(CHAT_TEMPLATE)


def _write_atomically(out_path, write) -> None:
    """``write(temporary path)`` beside ``out_path``, then rename it over ``out_path``.

    The gguf writer opens files by name, so this is checkpoint's atomic write
    with a path instead of an open file: a failure part-way removes the
    temporary file and leaves any old ``out_path`` as it was.
    """
    folder = os.path.dirname(os.path.abspath(out_path))
    if not os.path.isdir(folder):
        raise GGUFExportError(f"{out_path}: the folder {folder} does not exist; create it first.")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".gguf.part")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out_path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# ------------------------------------------------- comparing with llama.cpp --

def llama_cpp_greedy(llm, prompt_ids: list[int], n: int) -> list[int]:
    """n tokens that llama.cpp picks greedily after ``prompt_ids``.

    ``llm`` is a ``llama_cpp.Llama`` made with ``logits_all=True``; each token
    is the argmax of its logits after everything so far (no sampler, no
    stop token), so it is comparable with ``generate(..., temperature=0)``.
    """
    llm.reset()
    llm.eval(prompt_ids)
    new = []
    for _ in range(n):
        token = int(np.argmax(llm.scores[llm.n_tokens - 1]))  # (vocab_size,) logits of the last position
        new.append(token)
        llm.eval([token])
    return new


def agreement(a, b) -> int:
    """How many leading tokens two sequences share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
