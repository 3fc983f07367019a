"""What a training run leaves on disk, and how a run picks up where it stopped.

Lesson 03 (``03_pretraining``) saves checkpoints through ``llmedu.train``;
this module holds the file formats. A run folder contains:

- ``model.safetensors`` - the parameters file (``checkpoint.save_params``)
  with the tokenizer embedded: what ``llmedu sample`` and later lessons load.
- ``train_state.safetensors`` - everything ``resume`` needs, in ONE file:
  the parameters again, AdamW's moments, and in the metadata the step, the
  batch sampler's random state, the train config and the tokenizer. One file
  is written atomically (temporary file + rename), so the state a run
  resumes from is always self-consistent, whatever moment a crash hits.
- ``log.jsonl`` - one JSON object per training step.

The parameters are stored twice so that the parameters file stays a plain
``save_params`` file; for the small models of this course that costs little.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
from dataclasses import dataclass

import numpy as np

from llmedu.checkpoint import read_safetensors, save_params, write_safetensors
from llmedu.model import ModelConfig, validate_params

MODEL_FILE = "model.safetensors"
STATE_FILE = "train_state.safetensors"
LOG_FILE = "log.jsonl"
FORMAT = "llmedu-train-state"
FORMAT_VERSION = "1"


@dataclass
class TrainState:
    """A run frozen after ``step`` optimizer updates."""

    step: int
    params: dict  # name -> float32 array, as model.init_params
    optimizer: dict  # AdamW.state_dict()
    rng_state: dict  # np.random.Generator.bit_generator.state of the batch sampler
    train_config: dict  # TrainConfig fields
    model_config: ModelConfig
    tokenizer_text: str  # data.tokenizer_to_text(...)
    data_sha256: str  # of the training text, to notice a changed file on resume


def has_checkpoint(out_dir) -> bool:
    """Whether ``out_dir`` holds either checkpoint file (a fresh run must not overwrite them)."""
    return any(os.path.isfile(os.path.join(out_dir, name)) for name in (STATE_FILE, MODEL_FILE))


def save_state(out_dir, state: TrainState) -> None:
    """Write the parameters file, then the training state, each atomically."""
    note = {"step": str(state.step), "train_config": json.dumps(state.train_config)}
    save_params(os.path.join(out_dir, MODEL_FILE), state.params, state.model_config,
                tokenizer_text=state.tokenizer_text, metadata=note)
    tensors = {f"param.{name}": p for name, p in state.params.items()}
    other = {}  # optimizer entries safetensors cannot hold as floats (AdamW's int step)
    for key, value in state.optimizer.items():
        value = np.asarray(value)
        if value.dtype.kind == "f":
            tensors[f"optim.{key}"] = value
        else:
            other[key] = {"dtype": value.dtype.str, "shape": list(value.shape), "values": value.ravel().tolist()}
    metadata = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "step": str(state.step),
        "rng_state": json.dumps(state.rng_state), "train_config": json.dumps(state.train_config),
        "model_config": json.dumps(state.model_config.to_dict()), "tokenizer": state.tokenizer_text,
        "data_sha256": state.data_sha256, "optimizer_other": json.dumps(other),
    }
    write_safetensors(os.path.join(out_dir, STATE_FILE), tensors, metadata)


def load_state(out_dir) -> TrainState:
    """Read ``train_state.safetensors`` from ``out_dir``; ``FileNotFoundError`` / ``ValueError`` saying what is wrong."""
    path = os.path.join(out_dir, STATE_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{out_dir} holds no checkpoint ({STATE_FILE} is missing): nothing to resume. "
                                "Start a new run without --resume, or point --out at the run to continue.")
    tensors, meta = read_safetensors(path)
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path} is not an llmedu training state of version {FORMAT_VERSION} "
                         f"(format {meta.get('format')!r}, version {meta.get('format_version')!r}).")
    try:
        model_config = ModelConfig.from_dict(json.loads(meta["model_config"]))
        params = {key[len("param."):]: t for key, t in tensors.items() if key.startswith("param.")}
        validate_params(params, model_config)
        optimizer = {key[len("optim."):]: t for key, t in tensors.items() if key.startswith("optim.")}
        for key, entry in json.loads(meta["optimizer_other"]).items():
            optimizer[key] = np.array(entry["values"], dtype=np.dtype(entry["dtype"])).reshape(entry["shape"])
        return TrainState(int(meta["step"]), params, optimizer, json.loads(meta["rng_state"]),
                          json.loads(meta["train_config"]), model_config, meta["tokenizer"], meta["data_sha256"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path} is damaged: {err!r}.") from None


def remove_stale_temporaries(out_dir) -> list[str]:
    """Delete the ``.tmp-*`` files an atomic write leaves only when its process is killed mid-write."""
    stale = glob.glob(os.path.join(glob.escape(str(out_dir)), ".tmp-*"))
    for path in stale:
        os.unlink(path)
    return stale


def _write_text_atomically(path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".tmp-", suffix=".jsonl")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes the file private; a log is not secret
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


class RunLog:
    """``log.jsonl``, one JSON object per line, flushed after every row so a crash loses at most one."""

    def __init__(self, out_dir, *, keep_through: int | None):
        """Start a fresh log (``keep_through=None``) or keep only the rows of steps <= keep_through.

        A resumed run repeats the steps after its checkpoint, so their rows
        from the interrupted run are dropped rather than written twice.
        """
        self.path = os.path.join(out_dir, LOG_FILE)
        rows = []
        if keep_through is not None and os.path.isfile(self.path):
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    try:
                        row = json.loads(line)
                    except ValueError:  # the last line of a killed run may be cut short
                        continue
                    if row.get("step", keep_through + 1) <= keep_through:
                        rows.append(line if line.endswith("\n") else line + "\n")
        _write_text_atomically(self.path, "".join(rows))
        self._file = open(self.path, "a", encoding="utf-8")

    def write(self, row: dict) -> None:
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
