"""Generate text from an llmedu parameters file, with numpy and nothing else (lesson 00).

    python run.py base_model.safetensors "Once upon a time" -n 40 --temperature 0.8 --seed 1337

An LLM is two files: a parameters file (weights, config, tokenizer) and the code that runs it. This is the
code, in the order of llama2.c's run.c: 1. the parameters file, 2. the tokenizer, 3. the forward pass, 4. sampling.
"""

import argparse
import json
import math

import numpy as np


class RunError(Exception):
    """A problem with the user's input: printed as one line, without a traceback."""


# ------------------------------------------------------- 1. the parameters file --
DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2")}  # safetensors stores little-endian


def read_safetensors(path):
    """path -> (tensors {name: array, in the file's dtype}, metadata {str: str})."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise RunError(f"cannot read {path}: {err.strerror}") from None
    try:
        header_len = int.from_bytes(data[:8], "little")  # 8 bytes: the JSON header's length
        if not 2 <= header_len <= len(data) - 8:
            raise ValueError(f"its first 8 bytes give a header length of {header_len}, which does not fit the file")
        header = json.loads(data[8:8 + header_len].decode("utf-8"))
        metadata = header.pop("__metadata__", {})
        start = 8 + header_len  # data_offsets count from the first byte after the header
        tensors = {}
        for name, entry in header.items():
            if entry["dtype"] not in DTYPES:
                raise ValueError(f"tensor {name} is {entry['dtype']}; this reader knows {', '.join(DTYPES)}")
            dtype, shape, (begin, end) = DTYPES[entry["dtype"]], entry["shape"], entry["data_offsets"]
            count = math.prod(shape)
            if end - begin != count * dtype.itemsize:
                raise ValueError(f"tensor {name} needs {count * dtype.itemsize} bytes, its offsets give {end - begin}")
            tensors[name] = np.frombuffer(data, dtype, count, start + begin).reshape(shape)
    except (ValueError, KeyError, TypeError, AttributeError) as err:  # bad JSON, an unknown dtype, a short file
        raise RunError(f"{path} is not a readable safetensors file ({type(err).__name__}: {err})") from None
    return tensors, metadata


def load_model(path):
    """path -> (weights {name: float32 array}, config dict, tokenizer (merges, vocab))."""
    tensors, metadata = read_safetensors(path)
    if metadata.get("format") != "llmedu" or "config" not in metadata or "tokenizer" not in metadata:
        raise RunError(f"{path} is a safetensors file but not an llmedu model: its metadata needs "
                       f"format 'llmedu', a config and a tokenizer (found {sorted(metadata)})")
    weights = {name: tensor.astype(np.float32) for name, tensor in tensors.items()}  # float16 files too
    return weights, json.loads(metadata["config"]), read_tokenizer(metadata["tokenizer"])


# ----------------------------------------------------------- 2. the tokenizer --
def read_tokenizer(text):
    """llmedu's tokenizer text -> (merges {(left, right): new_id}, vocab {id: bytes}). Its lines: 'llmedu-bpe v1',
    'pattern <json>', 'special_tokens <n>', n x '<id> <json string>', 'merges <m>', m x '<left> <right>'."""
    lines = text.split("\n")
    if lines[0] != "llmedu-bpe v1":
        raise RunError("the stored tokenizer is not an llmedu byte-level BPE (first line 'llmedu-bpe v1')")
    n_special = int(lines[2].split()[1])
    specials = [line.split(" ", 1) for line in lines[3:3 + n_special]]
    n_merges = int(lines[3 + n_special].split()[1])
    vocab = {i: bytes([i]) for i in range(256)}  # ids 0..255 are the bytes themselves
    merges = {}
    for k, line in enumerate(lines[4 + n_special:4 + n_special + n_merges]):
        left, right = map(int, line.split())
        merges[left, right] = 256 + k
        vocab[256 + k] = vocab[left] + vocab[right]
    for token_id, token in specials:  # e.g. <|endoftext|>, after the merges
        vocab[int(token_id)] = json.loads(token).encode("utf-8")
    return merges, vocab


def encode(text, merges):
    """text -> token ids: its UTF-8 bytes, then the merges, lowest id (earliest learned) first.
    Unlike llmedu's tokenizer, no regex cuts the text into words and numbers first."""
    ids = list(text.encode("utf-8"))
    while len(ids) >= 2:
        pair = min(set(zip(ids, ids[1:])), key=lambda p: merges.get(p, math.inf))  # the earliest merge present
        if pair not in merges:
            return ids  # no neighbouring pair was ever merged in training
        merged, i = [], 0
        while i < len(ids):  # replace every occurrence, left to right
            here = i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair
            merged.append(merges[pair] if here else ids[i])
            i += 2 if here else 1
        ids = merged
    return ids


def decode(ids, vocab):
    """token ids -> text; bytes that are not valid UTF-8 become U+FFFD."""
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")


# --------------------------------------------------------- 3. the forward pass --
# Weights (per-layer tensors stacked on a leading n_layers axis; matrices are
# (out_features, in_features)):
#   tok_embeddings (vocab, dim)      attention_norm, ffn_norm (n_layers, dim)
#   wq, wo (n_layers, dim, dim)      wk, wv (n_layers, n_kv_heads * head_dim, dim)
#   w1, w3 (n_layers, hidden, dim)   w2 (n_layers, dim, hidden)
#   norm (dim,)                      output (vocab, dim)

def rmsnorm(x, weight, eps):
    """x: (T, dim) -> each row scaled to root-mean-square 1, times the gain weight (dim,)."""
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def rope(x, theta):
    """Rotate each pair of channels (2i, 2i+1) of x: (T, heads, head_dim) by position * theta^(-2i/head_dim)."""
    T, _, head_dim = x.shape
    freqs = theta ** (-np.arange(0, head_dim, 2) / head_dim)  # (head_dim/2,)
    angles = np.outer(np.arange(T), freqs)[:, None, :]  # (T, 1, head_dim/2): the same for every head
    cos, sin = np.cos(angles).astype(x.dtype), np.sin(angles).astype(x.dtype)
    even, odd = x[..., 0::2], x[..., 1::2]
    rotated = np.stack([even * cos - odd * sin, even * sin + odd * cos], axis=-1)  # (T, heads, head_dim/2, 2)
    return rotated.reshape(x.shape)  # the pairs interleaved again


def forward(weights, config, ids):
    """token ids (T,) with T <= max_seq_len -> logits (T, vocab); row t scores the token after ids[t]."""
    T, dim, eps = len(ids), config["dim"], config["norm_eps"]
    n_heads, n_kv_heads = config["n_heads"], config["n_kv_heads"]
    head_dim, group = dim // n_heads, n_heads // n_kv_heads  # group: query heads sharing one key/value head
    future = np.triu(np.ones((T, T), dtype=bool), k=1)  # True where the key comes after the query
    x = weights["tok_embeddings"][np.asarray(ids)]  # (T, dim): the residual stream
    for layer in range(config["n_layers"]):
        w = {name: weights[name][layer] for name in
             ("attention_norm", "wq", "wk", "wv", "wo", "ffn_norm", "w1", "w2", "w3")}
        h = rmsnorm(x, w["attention_norm"], eps)
        q = rope((h @ w["wq"].T).reshape(T, n_heads, head_dim), config["rope_theta"])
        k = rope((h @ w["wk"].T).reshape(T, n_kv_heads, head_dim), config["rope_theta"])
        v = (h @ w["wv"].T).reshape(T, n_kv_heads, head_dim)
        k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)  # (T, n_heads, head_dim)
        scores = np.einsum("qhd,khd->hqk", q, k) / math.sqrt(head_dim)  # (n_heads, T, T)
        scores = np.where(future, -np.inf, scores)  # causal: no peeking at later tokens
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        attention = scores / scores.sum(axis=-1, keepdims=True)
        x = x + np.einsum("hqk,khd->qhd", attention, v).reshape(T, dim) @ w["wo"].T
        h = rmsnorm(x, w["ffn_norm"], eps)
        gate = h @ w["w1"].T
        x = x + (gate / (1 + np.exp(-gate)) * (h @ w["w3"].T)) @ w["w2"].T  # SwiGLU: silu(w1 h) * w3 h
    return rmsnorm(x, weights["norm"], eps) @ weights["output"].T  # (T, vocab)


# ---------------------------------------------------------------- 4. sampling --
def sample_token(logits, temperature, rng):
    """One token id from logits (vocab,): argmax at temperature 0, else one draw from softmax(logits / T)."""
    if temperature == 0:
        return int(np.argmax(logits))  # greedy: no randomness used
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    probs = np.exp(scaled - scaled.max())  # minus the max: exp never overflows
    probs /= probs.sum()
    return int(rng.choice(len(probs), p=probs))


def generate(next_logits, prompt_ids, n_new, temperature, rng, context_len):
    """The n_new token ids (a list of int) that follow prompt_ids. next_logits(ids) -> logits (vocab,)
    for the token after ids; it gets at most the last context_len ids, as the model reads no further back."""
    ids = list(prompt_ids)
    for _ in range(n_new):
        logits = next_logits(ids[-context_len:])
        ids.append(sample_token(logits, temperature, rng))
    return ids[len(prompt_ids):]


# ------------------------------------------------------------ 5. command line --
def main(argv=None):
    parser = argparse.ArgumentParser(description="Continue a prompt with an llmedu parameters file.")
    parser.add_argument("model", help="the parameters file, e.g. assets/base_model.safetensors")
    parser.add_argument("prompt", help="the text to continue")
    parser.add_argument("-n", type=int, default=40, help="how many tokens to generate (default 40)")
    parser.add_argument("--temperature", type=float, default=0.8, help="0 = greedy (default 0.8)")
    parser.add_argument("--seed", type=int, default=1337, help="seed of the sampler (default 1337)")
    args = parser.parse_args(argv)
    if args.n < 0 or not args.temperature >= 0:
        parser.error("-n and --temperature must not be negative")
    try:
        weights, config, (merges, vocab) = load_model(args.model)
    except RunError as err:  # the user's mistake: one line, no traceback
        raise SystemExit(f"run.py: {err}")
    prompt_ids = encode(args.prompt, merges)
    if not prompt_ids:
        parser.error("the prompt is empty: give the model at least one character to continue")
    new_ids = generate(lambda ids: forward(weights, config, ids)[-1], prompt_ids, args.n,
                       args.temperature, np.random.default_rng(args.seed), config["max_seq_len"])
    print(decode(new_ids, vocab))


if __name__ == "__main__":
    main()
