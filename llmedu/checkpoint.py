"""The parameters file: a model's weights and config in one safetensors file.

Lesson 00 (``00_two_files``) opens this file by hand to show that an LLM is a
parameters file plus code that runs it; lessons 02 and 03 save and load
models with ``save_params`` / ``load_params``.

A safetensors file, read and written here with numpy alone (never pickle, so
loading a file cannot run code):

    8 bytes   N, the header length, an unsigned little-endian integer
    N bytes   a JSON header: {name: {"dtype": "F32", "shape": [...],
              "data_offsets": [begin, end]}, ..., "__metadata__": {str: str}}
    the rest  the tensors' raw little-endian bytes in C order, back to back;
              offsets count from the first byte after the header

llmedu's metadata: ``format`` ("llmedu"), ``format_version`` ("1"), ``config``
(the ``ModelConfig`` as JSON), optionally ``tokenizer`` (the tokenizer's text
serialisation) and any other strings the caller adds.

``export_llama2c`` / ``import_llama2c`` convert to and from llama2.c's legacy
(version 0) checkpoint, so its ``run.c`` can run an llmedu model.

Left out: dtypes other than F16/F32/F64 (BF16, integers, quantised blocks);
llama2.c's version 1+ exports; memory mapping (files are read whole); models
split over several files.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import warnings

import numpy as np

from llmedu.model import ModelConfig, param_shapes, rope_tables, validate_params

FORMAT = "llmedu"
FORMAT_VERSION = "1"
READABLE_VERSIONS = ("1",)  # format versions this code can load
RESERVED_KEYS = ("format", "format_version", "config", "tokenizer")
DTYPES = {"F16": np.dtype("<f2"), "F32": np.dtype("<f4"), "F64": np.dtype("<f8")}
DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}


# ------------------------------------------------------------ safetensors --

def write_safetensors(path, tensors: dict, metadata: dict | None = None) -> None:
    """Write ``{name: float array}`` and ``{str: str}`` metadata to ``path`` as safetensors, atomically."""
    arrays, header, offset = [], {}, 0
    for name, tensor in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise ValueError(f"{path}: tensor names must be strings other than '__metadata__', got {name!r}.")
        array = _little_endian(path, name, tensor)
        header[name] = {"dtype": DTYPE_NAMES[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + array.nbytes]}
        arrays.append(array)
        offset += array.nbytes
    header["__metadata__"] = _check_metadata(path, metadata or {})
    text = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    text += b" " * (-(8 + len(text)) % 8)  # pad with spaces: the data starts 8-byte aligned

    def write(f):
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for array in arrays:
            f.write(array.reshape(-1).view(np.uint8))  # the raw bytes, without a copy

    atomic_write(path, write)


def read_safetensors(path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a safetensors file: ``(tensors, metadata)``; ``ValueError`` naming the problem if it is damaged."""
    with _open(path) as f:
        size = os.fstat(f.fileno()).st_size
        header, metadata, start = _read_header(path, f, size)
        entries = _check_entries(path, header, size - start)
        tensors = {}
        for name, dtype, shape, begin, end in entries:  # in file order: one forward pass over the data
            array = np.empty(shape, dtype)
            f.seek(start + begin)
            if f.readinto(array.reshape(-1).view(np.uint8)) != end - begin:
                raise ValueError(f"{path}: the data of tensor {name!r} ends early: the file is truncated.")
            tensors[name] = array
    return {name: tensors[name] for name in header}, metadata  # header order, as written


def _read_header(path, f, size: int) -> tuple[dict, dict, int]:
    """Parse the length prefix and JSON header: (tensor entries, metadata, offset of the data)."""
    if size < 8:
        raise ValueError(f"{path}: {size} bytes is too short for a safetensors file (the length prefix alone is 8): the file is truncated.")
    n = int.from_bytes(f.read(8), "little")
    if n > size - 8:
        raise ValueError(f"{path}: the first 8 bytes promise a {n}-byte header but only {size - 8} bytes follow: "
                         "the file is truncated, or it is not a safetensors file.")
    try:
        header = json.loads(f.read(n).decode("utf-8"), object_pairs_hook=_no_duplicates)
    except _DuplicateKey as err:
        raise ValueError(f"{path}: {err}: the file is damaged.") from None
    except ValueError as err:  # bad UTF-8 or bad JSON
        raise ValueError(f"{path}: the header is not valid JSON ({err}): the file is damaged.") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: the header must be a JSON object, found {type(header).__name__}.")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError(f"{path}: __metadata__ must map strings to strings.")
    return header, metadata, 8 + n


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs):
    # JSON allows repeated keys (the last wins): two entries for one tensor
    # would make the file mean different things to different readers.
    keys = [key for key, _ in pairs]
    if len(keys) != len(set(keys)):
        raise _DuplicateKey(f"the header repeats the key {next(k for k in keys if keys.count(k) > 1)!r}.")
    return dict(pairs)


def _check_entries(path, header: dict, data_size: int) -> list[tuple]:
    """Check every entry against its dtype, shape and neighbours; returns them sorted by offset."""
    entries = [_parse_entry(path, name, entry) for name, entry in header.items()]
    entries.sort(key=lambda e: (e[3], e[4]))
    position = 0  # where the next tensor must begin: the data has no gaps and no overlaps
    for name, dtype, shape, begin, end in entries:
        if begin != position:
            problem = "overlaps the tensor before it" if begin < position else f"leaves a gap of {begin - position} bytes before it"
            raise ValueError(f"{path}: tensor {name!r} starts at data byte {begin}, which {problem} (expected {position}).")
        needed = math.prod(shape) * dtype.itemsize
        if end - begin != needed:
            raise ValueError(f"{path}: tensor {name!r} has data_offsets {[begin, end]} ({end - begin} bytes) "
                             f"but shape {list(shape)} of {DTYPE_NAMES[dtype]} needs {needed} bytes.")
        position = end
    if position > data_size:
        raise ValueError(f"{path}: the tensors need {position} bytes of data but the file holds {data_size}: the file is truncated.")
    if position < data_size:
        raise ValueError(f"{path}: {data_size - position} bytes after the last tensor belong to no tensor: the file is damaged.")
    return entries


def _parse_entry(path, name: str, entry) -> tuple:
    """One header entry -> (name, numpy dtype, shape, begin, end)."""
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise ValueError(f"{path}: the header entry of {name!r} must have exactly the keys dtype, shape and data_offsets.")
    if entry["dtype"] not in DTYPES:
        raise ValueError(f"{path}: tensor {name!r} has dtype {entry['dtype']!r}; this reader handles {', '.join(DTYPES)}.")
    shape, offsets = entry["shape"], entry["data_offsets"]
    if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
        raise ValueError(f"{path}: tensor {name!r} has shape {shape!r}; expected a list of non-negative integers.")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
            and 0 <= offsets[0] <= offsets[1]):
        raise ValueError(f"{path}: tensor {name!r} has data_offsets {offsets!r}; expected [begin, end] with 0 <= begin <= end.")
    return name, DTYPES[entry["dtype"]], tuple(shape), offsets[0], offsets[1]


def _little_endian(path, name, tensor) -> np.ndarray:
    """A C-ordered little-endian copy (or view) of a float16/32/64 tensor."""
    array = np.asarray(tensor)
    little = array.dtype.newbyteorder("<")
    if little not in DTYPE_NAMES:
        raise ValueError(f"{path}: tensor {name!r} has dtype {array.dtype}; safetensors files here hold float16, float32 or float64.")
    return np.asarray(array, dtype=little, order="C")  # (ascontiguousarray would turn 0-d into 1-d)


def _check_metadata(path, metadata: dict) -> dict:
    bad = [key for key, value in metadata.items() if not (isinstance(key, str) and isinstance(value, str))]
    if bad:
        raise ValueError(f"{path}: metadata must map str to str; {bad[0]!r} does not (serialise it with json.dumps first).")
    return dict(metadata)


# ------------------------------------------------------------ the model --

def save_params(path, params: dict, config: ModelConfig, *, tokenizer_text: str | None = None,
                metadata: dict | None = None, dtype=None) -> None:
    """Write parameters, config and optional tokenizer text / extra metadata to one file, atomically.

    ``dtype`` (e.g. ``np.float16``) converts every tensor on the way out;
    ``None`` keeps each array's own dtype.
    """
    validate_params(params, config)  # never write a file that load_params would refuse
    extra = dict(metadata or {})
    taken = sorted(set(extra) & set(RESERVED_KEYS))
    if taken:
        raise ValueError(f"{path}: metadata keys {taken} are reserved for llmedu (pass the tokenizer as tokenizer_text=).")
    fields = {k: int(v) if isinstance(v, (int, np.integer)) else float(v) for k, v in config.to_dict().items()}
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": json.dumps(fields)}
    if tokenizer_text is not None:
        header["tokenizer"] = tokenizer_text
    tensors = {name: _cast(path, name, params[name], dtype) for name in param_shapes(config)}
    write_safetensors(path, tensors, {**header, **extra})


def load_params(path, *, dtype=np.float32) -> tuple[dict[str, np.ndarray], ModelConfig, dict[str, str]]:
    """Read a file written by ``save_params``: ``(params, config, metadata)``.

    ``metadata`` holds the extra strings (the tokenizer text under
    ``"tokenizer"``). Arrays come back as ``dtype``; ``None`` keeps the file's.
    """
    tensors, metadata = read_safetensors(path)
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path} is a safetensors file but not an llmedu parameters file (metadata format is "
                         f"{metadata.get('format')!r}, expected {FORMAT!r}); read its tensors with read_safetensors.")
    if metadata.get("format_version") not in READABLE_VERSIONS:
        raise ValueError(f"{path} has format_version {metadata.get('format_version')!r}, but this llmedu reads "
                         f"version {', '.join(READABLE_VERSIONS)}: upgrade llmedu or re-save the file.")
    config = _stored_config(path, metadata)
    try:
        validate_params(tensors, config)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    params = {name: tensors[name] if dtype is None else tensors[name].astype(dtype, copy=False)
              for name in param_shapes(config)}
    extra = {key: value for key, value in metadata.items() if key not in ("format", "format_version", "config")}
    return params, config, extra


def _stored_config(path, metadata: dict) -> ModelConfig:
    """The ModelConfig saved under metadata["config"]; ValueError if it is missing or unusable."""
    if "config" not in metadata:
        raise ValueError(f"{path}: the metadata has no 'config'; the file was not written by save_params.")
    try:
        return ModelConfig.from_dict(json.loads(metadata["config"]))
    except (TypeError, ValueError) as err:  # bad JSON, a missing or unknown field, an impossible value
        raise ValueError(f"{path}: the stored config is unusable ({err}).") from None


def _cast(path, name: str, array: np.ndarray, dtype) -> np.ndarray:
    """array as dtype, refusing to turn finite values into inf (float16 stops at 65504)."""
    if dtype is None:
        return array
    with np.errstate(over="ignore"):  # overflow is reported below, by name
        cast = np.asarray(array).astype(dtype)
    if np.any(np.isinf(cast) & np.isfinite(array)):
        raise ValueError(f"{path}: parameter {name!r} has values beyond the range of {np.dtype(dtype)}; save it in a wider dtype.")
    return cast


# ------------------------------------------------------ llama2.c legacy --

LLAMA2C_HEADER = ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len")
LLAMA2C_ORDER = ("tok_embeddings", "attention_norm", "wq", "wk", "wv", "wo", "ffn_norm", "w1", "w2", "w3", "norm")


def export_llama2c(path, params: dict, config: ModelConfig) -> None:
    """Write a llama2.c version-0 checkpoint that its ``run.c`` can run, atomically.

    Layout: 7 little-endian int32 (``LLAMA2C_HEADER``), then float32 arrays:
    the tensors in ``LLAMA2C_ORDER``, the RoPE cos and sin tables (seq_len,
    head_dim/2) each, and ``output`` last unless it equals ``tok_embeddings``
    (then vocab_size is stored positive, meaning "shared").
    """
    validate_params(params, config)
    if config.rope_theta != 10000.0 or config.norm_eps != 1e-5:
        warnings.warn("run.c fixes rope_theta=10000 and norm_eps=1e-5; this model uses "
                      f"rope_theta={config.rope_theta}, norm_eps={config.norm_eps}, so run.c will compute different logits.")
    shared = np.array_equal(params["output"], params["tok_embeddings"])
    header = np.array(_llama2c_ints(config, shared), dtype="<i4")
    cos, sin = rope_tables(config.head_dim, np.arange(config.max_seq_len), config.rope_theta)  # (seq_len, head_dim/2)
    arrays = {**params, "rope_cos": cos, "rope_sin": sin}

    def write(f):
        f.write(header.tobytes())
        for name, _ in _llama2c_layout(config, shared):
            f.write(np.ascontiguousarray(arrays[name], dtype="<f4").reshape(-1).view(np.uint8))

    atomic_write(path, write)


def import_llama2c(path) -> tuple[dict[str, np.ndarray], ModelConfig]:
    """Read a llama2.c version-0 checkpoint: ``(params, config)`` in float32.

    The format stores neither rope_theta nor norm_eps: the config gets
    ModelConfig's defaults (10000 and 1e-5), which are the values run.c uses.
    The RoPE tables in the file are skipped, as current run.c skips them.
    """
    with _open(path) as f:
        size = os.fstat(f.fileno()).st_size
        config, shared = _read_llama2c_header(path, f.read(28))
        layout = _llama2c_layout(config, shared)
        n_floats = sum(math.prod(shape) for _, shape in layout)
        if size != 28 + 4 * n_floats:
            problem = "truncated" if size < 28 + 4 * n_floats else "too long (not a version-0 llama2.c file of this shape?)"
            fields = ", ".join(f"{k}={v}" for k, v in zip(LLAMA2C_HEADER, _llama2c_ints(config, shared)))
            raise ValueError(f"{path} has {size} bytes but its header ({fields}) "
                             f"needs 28 + 4 x {n_floats} = {28 + 4 * n_floats}: the file is {problem}.")
        flat = np.fromfile(f, dtype="<f4", count=n_floats).astype(np.float32)  # (n_floats,)
    params, start = {}, 0
    for name, shape in layout:
        count = math.prod(shape)
        params[name] = flat[start:start + count].reshape(shape)
        start += count
    del params["rope_cos"], params["rope_sin"]
    if shared:
        params["output"] = params["tok_embeddings"].copy()  # llmedu keeps its own classifier (no weight tying)
    return {name: params[name] for name in param_shapes(config)}, config


def _llama2c_layout(config: ModelConfig, shared: bool) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every float32 array in the file, in file order."""
    shapes, rope = param_shapes(config), (config.max_seq_len, config.head_dim // 2)
    tail = [] if shared else [("output", shapes["output"])]
    return [(name, shapes[name]) for name in LLAMA2C_ORDER] + [("rope_cos", rope), ("rope_sin", rope)] + tail


def _llama2c_ints(config: ModelConfig, shared: bool) -> list[int]:
    vocab = config.vocab_size if shared else -config.vocab_size  # the sign says where the classifier is
    return [config.dim, config.hidden_dim, config.n_layers, config.n_heads, config.n_kv_heads, vocab, config.max_seq_len]


def _read_llama2c_header(path, raw: bytes) -> tuple[ModelConfig, bool]:
    """The 28-byte header -> (config, whether the classifier is shared with the embedding)."""
    if raw[:4] == b"24ka":  # llama2.c's version 1+ files start with the magic 'ak42' stored little-endian
        raise ValueError(f"{path} is a llama2.c version-{int.from_bytes(raw[4:8], 'little')} export; "
                         "only the legacy version 0 is read: re-export with llama2.c's export.py --version 0.")
    if len(raw) < 28:
        raise ValueError(f"{path} has {len(raw)} bytes, fewer than the 28-byte llama2.c header: the file is truncated.")
    ints = dict(zip(LLAMA2C_HEADER, np.frombuffer(raw, dtype="<i4").tolist()))
    shared = ints["vocab_size"] > 0
    try:
        config = ModelConfig(vocab_size=abs(ints["vocab_size"]), dim=ints["dim"], n_layers=ints["n_layers"],
                             n_heads=ints["n_heads"], n_kv_heads=ints["n_kv_heads"],
                             hidden_dim=ints["hidden_dim"], max_seq_len=ints["seq_len"])
    except ValueError as err:
        raise ValueError(f"{path}: the llama2.c header {ints} does not describe a model ({err}); "
                         "is this a llama2.c checkpoint?") from None
    return config, shared


# ---------------------------------------------------------------- files --

def _open(path):
    """Open for reading, turning a missing file into a ValueError that says so."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file; check the path (the working folder is {os.getcwd()}).") from None
    except IsADirectoryError:
        raise ValueError(f"{path} is a folder, not a parameters file.") from None


def atomic_write(path, write) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, then rename it over ``path``.

    An error part-way leaves the old file (if any) untouched and removes the
    temporary file; even a hard crash, which may leave a ``.tmp-*.part`` file,
    never leaves half a file under the real name.
    """
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the name points at them
        os.chmod(tmp, 0o644)  # mkstemp makes the file private; parameters are not secret
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def atomic_write_text(path, text: str) -> None:
    """``text`` as UTF-8 in ``path``, atomically (``atomic_write``): result files, JSON and CSV."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def file_sha256(path) -> str:
    """Hex SHA-256 of a file's bytes: which parameters (or data) file a result was made from."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):  # 1 MiB at a time: large files need not fit in memory
            digest.update(chunk)
    return digest.hexdigest()
