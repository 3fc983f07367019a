"""A lossless compressor driven by a language model (lesson 08, ``08_frontiers``).

Pretraining is called a lossy zip of its text. An arithmetic coder makes it
lossless: the model gives the next token a probability p, and the range coder
(``llmedu.range_coder``) spends -log2 p bits on it. A model that predicts well
writes short files; its cross-entropy in bits per byte is what they cost.

How bytes become coded symbols:

1. **Bytes to tokens, bit-exact.** Any bytes, valid UTF-8 or not. Runs of
   valid UTF-8 go through the model's byte-level BPE (special-token strings
   stay ordinary text); every byte that is not part of valid UTF-8 becomes its
   single-byte token (ids 0..255 are the bytes). Decoding joins the tokens'
   bytes, never going through ``str``.
2. **Probabilities.** ``llmedu.kernels.step`` with a KV cache, one token at
   a time, starting from ``<|endoftext|>`` (or a newline if the tokenizer has
   no such token). When the window is full, both sides restart from the last
   half-window (``prefill`` of its tokens): the same rule, the same calls.
3. **Integer frequencies** (``frequencies``): softmax in float64, every token
   at least 1, the total exactly 2**24.

The file (``FORMAT``): magic ``LLMZ``, a version byte, the original length in
bytes and in tokens, the model file's SHA-256, the original's SHA-256, where it
was made (``machine_fingerprint``), the coded stream, and a CRC-32 of all that.
The CRC catches truncation and damage before any decoding; the original's
SHA-256 catches the one failure the CRC cannot: a decoder whose probabilities
differ from the encoder's. Either way: an error, never a wrong file.

**Floating-point determinism.** The decoder must compute, token after token,
bit-identical frequencies to the encoder's, or it decodes garbage from then on.
On one machine with one installation it does: both sides run exactly the same
code path (``_Predictor``: ``step``, ``prefill`` at the same restarts, the same
numpy softmax and rounding). The thread count does not matter: the kernels'
parallel loops split rows of a matrix product or heads of attention between
threads, and each output value is summed by one thread in a fixed order
(``tests/test_compress.py`` checks logits are bit-identical with 1 and 2
threads), so nothing is pinned. Across machines it is not guaranteed: Numba
compiles the kernels for the host CPU with ``fastmath``, so a CPU with wider
vector registers (AVX-512 vs AVX2, or ARM) sums dot products in another order;
numpy's ``exp`` may take a SIMD path on one CPU and not another; other
numba/numpy/LLVM versions may compile differently. One last-bit difference that
moves a frequency by one unit changes every later symbol. So the header
records the machine, and a decode that fails the original's SHA-256 says so.
To make files fully portable one would compute the probabilities in integer
or fixed-point arithmetic (as some neural compressors do), at a large cost in
speed; we chose to detect rather than prevent.
"""

from __future__ import annotations

import hashlib
import platform
import re
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from . import kernels
from .generate import KVCache
from .model import ModelConfig
from .range_coder import RangeDecoder, RangeEncoder, TruncatedStream

__all__ = ["FORMAT", "MAGIC", "VERSION", "TOTAL", "CompressError", "WrongModel", "Header", "bytes_to_ids", "ids_to_bytes",
           "frequencies", "compress", "decompress", "read_header", "machine_fingerprint", "load_model",
           "compress_file", "decompress_file"]

MAGIC, VERSION = b"LLMZ", 1
TOTAL = 1 << 24  # every distribution is scaled to this integer total
# magic, version, n_bytes, n_tokens, model SHA-256, original SHA-256, fingerprint length; then the fingerprint,
# the coded stream and a CRC-32 (little-endian) of everything before it.
FORMAT = struct.Struct("<4sBQQ32s32sH")
_ESCAPED = re.compile("([\udc80-\udcff]+)")  # bytes that are not UTF-8, as surrogateescape decodes them


class CompressError(ValueError):
    """A compressed file that cannot be decoded: damaged, made with another model, or on another machine."""


class WrongModel(CompressError):
    """The file was compressed with another parameters file than the one given."""


@dataclass(frozen=True)
class Header:
    n_bytes: int
    n_tokens: int
    model_sha256: str  # hex
    data_sha256: str  # hex
    fingerprint: str  # where the file was made (machine_fingerprint)


def machine_fingerprint() -> str:
    """What the model's floating-point results depend on: CPU architecture and model, numpy and numba versions."""
    import llvmlite.binding
    import numba
    return (f"{platform.machine()} cpu={llvmlite.binding.get_host_cpu_name()} numpy={np.__version__} "
            f"numba={numba.__version__}")


# ------------------------------------------------------------ bytes <-> ids --

def bytes_to_ids(tokenizer, data: bytes) -> list[int]:
    """Token ids whose bytes join to exactly ``data``: BPE on valid UTF-8 runs, byte tokens for the rest."""
    ids = []
    text = bytes(data).decode("utf-8", errors="surrogateescape")  # invalid byte b -> the character U+DC00 + b
    for i, piece in enumerate(_ESCAPED.split(text)):
        if i % 2:  # a run of invalid bytes: ids 0..255 are the bytes themselves
            ids.extend(ord(c) - 0xDC00 for c in piece)
        elif piece:
            ids.extend(tokenizer.encode(piece))
    return ids


def ids_to_bytes(tokenizer, ids) -> bytes:
    """The bytes of ``ids``, joined (never through ``str``)."""
    return tokenizer.decode_bytes(ids)


# ------------------------------------------------------- the probabilities --

def frequencies(logits: np.ndarray, total: int = TOTAL) -> np.ndarray:
    """Integer frequencies (vocab,) int64 from logits (vocab,): each >= 1, summing to exactly ``total``.

    freq = floor(p * (total - vocab)) + 1; what flooring leaves over goes to
    the most probable token (the first, on ties). Deterministic for given
    logits on a given numpy.
    """
    z = np.asarray(logits, dtype=np.float64)
    p = np.exp(z - z.max())
    p /= p.sum()
    freq = np.floor(p * (total - len(p))).astype(np.int64) + 1  # (vocab,)
    freq[np.argmax(p)] += total - freq.sum()
    return freq


def _exact_bits(logits: np.ndarray, token: int) -> float:
    """-log2 softmax(logits)[token] in float64, without rounding to integer frequencies."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max()
    return float((np.log(np.exp(z).sum()) - z[token]) / np.log(2))


def _start_id(tokenizer) -> int:
    """The token both sides put first: the document separator, or the newline byte."""
    return tokenizer.special_tokens.get("<|endoftext|>", 10)


class _Predictor:
    """Frequencies of the next token, one token at a time; the encoder and decoder share it, call for call."""

    def __init__(self, params: dict, config: ModelConfig, start: int):
        self.params, self.config = params, config
        self.cache = KVCache.empty(config)
        self.history = [start]
        self.logits = kernels.step(params, config, start, self.cache)  # (vocab,)

    def frequencies(self) -> np.ndarray:
        return frequencies(self.logits)

    def advance(self, token: int) -> None:
        """Append ``token``; when the window is full, restart from its last half."""
        self.history.append(token)
        if self.cache.pos < self.config.max_seq_len:
            self.logits = kernels.step(self.params, self.config, token, self.cache)
            return
        keep = np.array(self.history[-max(1, self.config.max_seq_len // 2):], np.int64)  # (W // 2,)
        self.history = list(keep)
        self.cache.pos = 0  # old keys and values are overwritten as the restart fills the cache again
        self.logits = kernels.prefill(self.params, self.config, keep, self.cache)


def _check_model(params: dict, config: ModelConfig, tokenizer) -> None:
    if len(tokenizer) != config.vocab_size:
        raise ValueError(f"the tokenizer has {len(tokenizer)} tokens but the model {config.vocab_size}: "
                         "use the tokenizer stored in the model's parameters file.")


# --------------------------------------------------------------- the coder --

def compress(data: bytes, params: dict, config: ModelConfig, tokenizer, model_sha256: str, *,
             progress=None, trace: list | None = None) -> bytes:
    """The compressed file's bytes for ``data``. ``model_sha256``: hex SHA-256 of the parameters file.

    progress: None or a callable taking the number of tokens just coded (e.g. a tqdm's ``update``).
    trace: a list to receive, per token, (token id, bits its integer frequency costs, -log2 of the model's
    float64 probability): the second sums to what the coder spends, the gap is the rounding to integers.
    """
    _check_model(params, config, tokenizer)
    data = bytes(data)
    ids = bytes_to_ids(tokenizer, data)
    encoder = RangeEncoder()
    if ids:
        predictor = _Predictor(params, config, _start_id(tokenizer))
        for i, token in enumerate(ids):
            freq = predictor.frequencies()
            cum = int(freq[:token].sum())
            encoder.encode(cum, int(freq[token]), TOTAL)
            if trace is not None:
                trace.append((token, float(-np.log2(freq[token] / TOTAL)), _exact_bits(predictor.logits, token)))
            if i + 1 < len(ids):
                predictor.advance(token)
            if progress is not None:
                progress(1)
    fingerprint = machine_fingerprint().encode("utf-8")
    head = FORMAT.pack(MAGIC, VERSION, len(data), len(ids), bytes.fromhex(model_sha256),
                       hashlib.sha256(data).digest(), len(fingerprint)) + fingerprint
    body = head + encoder.finish()
    return body + struct.pack("<I", zlib.crc32(body))


def read_header(blob: bytes) -> tuple[Header, bytes]:
    """(header, coded stream) of a compressed file; CompressError if it is not one or is damaged."""
    blob = bytes(blob)
    if blob[:4] != MAGIC:
        raise CompressError(f"not a file made by llmedu compress: it starts with {blob[:4]!r}, not {MAGIC!r}.")
    if len(blob) < FORMAT.size + 4:
        raise CompressError(f"the file is truncated: {len(blob)} bytes, shorter than the header alone.")
    if struct.unpack("<I", blob[-4:])[0] != zlib.crc32(blob[:-4]):
        raise CompressError("the file is damaged (its CRC-32 does not match): it was truncated or changed after "
                            "it was written; compress the original again.")
    magic, version, n_bytes, n_tokens, model_hash, data_hash, n_fp = FORMAT.unpack_from(blob)
    if version != VERSION:
        raise CompressError(f"format version {version} is not one this llmedu reads (it reads {VERSION}): "
                            "decompress it with the llmedu that made it.")
    fingerprint = blob[FORMAT.size:FORMAT.size + n_fp].decode("utf-8", errors="replace")
    header = Header(n_bytes, n_tokens, model_hash.hex(), data_hash.hex(), fingerprint)
    return header, blob[FORMAT.size + n_fp:-4]


def decompress(blob: bytes, params: dict, config: ModelConfig, tokenizer, model_sha256: str, *,
               progress=None) -> bytes:
    """The original bytes of a file made by ``compress`` with the same model; CompressError otherwise."""
    header, stream = read_header(blob)
    if header.model_sha256 != model_sha256:
        raise WrongModel(f"this file was compressed with the model whose parameters file has SHA-256 "
                            f"{header.model_sha256}, but the model given has SHA-256 {model_sha256}: "
                            "decompress it with the same model file (--model).")
    _check_model(params, config, tokenizer)
    ids = _decode_ids(stream, header.n_tokens, params, config, tokenizer, progress)
    data = None if ids is None else ids_to_bytes(tokenizer, ids)
    if data is None or len(data) != header.n_bytes or hashlib.sha256(data).hexdigest() != header.data_sha256:
        here = machine_fingerprint()
        where = ("on this machine and installation" if here == header.fingerprint else
                 f"on '{header.fingerprint}', and this is '{here}'")
        raise CompressError(f"decoding did not give back the original (SHA-256 mismatch). The file is intact (its "
                            f"CRC-32 matches) and the model is the right one, so this machine computed the model's "
                            f"probabilities differently in the last bits: the file was made {where}. Decompress "
                            "it where it was made (same CPU, numpy and numba).")
    return data


def _decode_ids(stream: bytes, n_tokens: int, params, config, tokenizer, progress) -> list[int] | None:
    """The ``n_tokens`` token ids coded in ``stream``; None if the stream does not decode to exactly that many.

    The file's CRC-32 already matched, so a stream that fails here was coded
    with other probabilities than the ones computed here.
    """
    try:
        decoder = RangeDecoder(stream)
    except ValueError:
        return None
    ids = []
    predictor = _Predictor(params, config, _start_id(tokenizer)) if n_tokens else None
    for i in range(n_tokens):
        freq = predictor.frequencies()
        ends = np.cumsum(freq)  # (vocab,): cum + freq of each token
        token = int(np.searchsorted(ends, decoder.target(TOTAL), side="right"))
        try:
            decoder.consume(int(ends[token] - freq[token]), int(freq[token]), TOTAL)
        except TruncatedStream:
            return None
        ids.append(token)
        if i + 1 < n_tokens:
            predictor.advance(token)
        if progress is not None:
            progress(1)
    return ids if decoder.at_end() else None


# --------------------------------------------------------------- the files --

def load_model(path) -> tuple[dict, ModelConfig, object, str]:
    """(params, config, tokenizer, hex SHA-256 of the file) of a parameters file with its tokenizer."""
    from .sample import load_run

    params, config, tokenizer, _ = load_run(str(path))
    from .checkpoint import file_sha256

    return params, config, tokenizer, file_sha256(path)


def _write_atomically(path, data: bytes) -> None:
    from .checkpoint import atomic_write

    atomic_write(path, lambda f: f.write(data))


def compress_file(source, target, model_path, *, progress=None) -> Header:
    """Compress the file ``source`` into ``target`` (written atomically) with the model at ``model_path``."""
    params, config, tokenizer, sha = load_model(model_path)
    with open(source, "rb") as f:
        data = f.read()
    blob = compress(data, params, config, tokenizer, sha, progress=progress)
    _write_atomically(target, blob)
    return read_header(blob)[0]


def decompress_file(source, target, model_path, *, progress=None) -> Header:
    """Decompress ``source`` into ``target`` (written atomically, only once the original is verified)."""
    with open(source, "rb") as f:
        blob = f.read()
    header, _ = read_header(blob)  # a damaged file is reported before the model is loaded
    params, config, tokenizer, sha = load_model(model_path)
    _write_atomically(target, decompress(blob, params, config, tokenizer, sha, progress=progress))
    return header
