"""SFT data for the training loop: conversations read, rendered with their loss mask, packed into rows (lesson 04).

Supervised fine-tuning is pretraining's loop with other data: the same
next-token loss, counted only where the mask is 1 (the assistant's words).
Conversations are rendered by :mod:`llmedu.chat` and packed one after another
into rows of ``seq_len + 1`` tokens; the rest of a row is padding, whose mask
is 0, so it never counts in the loss:

    row   <|im_start|> user <|im_sep|> Hi <|im_end|> <|im_start|> assistant <|im_sep|> Hello <|im_end|> pad pad
    mask       0        0      0      0     0           0           0          0        1       1       0   0

A batch is ``batch_size`` rows drawn at random; ``x = row[:-1]``,
``y = row[1:]`` and the loss mask is ``mask[1:]`` (the mask of the token
being predicted). The last tenth of the conversations is kept for the
validation loss.

File format (``llmedu sft --data``): JSON Lines, one object per line with a
``"conversation"`` key holding the turns; other keys are kept for
evaluation and ignored here. A malformed line is reported with its number
before anything is trained.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from llmedu.chat import ConversationError, check_conversation, render_conversation
from llmedu.data import DataError, read_text, split_text

VALIDATION_FRACTION = 0.1
PAD_TOKEN = "<|endoftext|>"


def read_jsonl(path, what: str) -> tuple[list[tuple[int, object]], str]:
    """Every non-blank line of a JSON Lines file parsed, with its line number, and the file's SHA-256.

    ``what`` names the file's contents in errors ("conversations"). A line
    that is not JSON is a DataError naming its number, before anything is trained.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as error:
        raise DataError(f"cannot read {what} from {path}: {error.strerror}.") from None
    records = []
    for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((number, json.loads(line)))
        except json.JSONDecodeError as error:
            raise DataError(f"{path}, line {number}: not valid JSON ({error.msg}); nothing was trained.") from None
    return records, hashlib.sha256(raw).hexdigest()


def pad_right(rows: list, pad_id: int, masks: list | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Token rows of different lengths as one (N, longest) int64 array padded with ``pad_id``, and their masks.

    ``masks`` (one list per row, e.g. the loss mask) are padded with 0; without
    them the mask is 1 on every real token. Padding goes after a row's last
    token, so a causal model reads every row as if it were alone.
    """
    ids = np.full((len(rows), max(map(len, rows))), pad_id, dtype=np.int64)
    mask = np.zeros(ids.shape)
    for r, row in enumerate(rows):
        ids[r, :len(row)] = row
        mask[r, :len(row)] = 1 if masks is None else masks[r]
    return ids, mask


def read_conversations(path) -> tuple[list, list, str]:
    """The conversations of a JSON Lines file, their line numbers, and the file's SHA-256.

    Every conversation is checked here (:func:`llmedu.chat.check_conversation`),
    so a bad one is a DataError naming its line before anything is trained.
    """
    records, sha256 = read_jsonl(path, "conversations")
    conversations, line_numbers = [], []
    for number, record in records:
        if not isinstance(record, dict) or "conversation" not in record:
            raise DataError(f"{path}, line {number}: expected an object with a \"conversation\" key holding the "
                            "turns, e.g. {\"conversation\": [{\"role\": \"user\", \"content\": \"Hi\"}, ...]}.")
        try:
            check_conversation(record["conversation"], ends_with="assistant")
        except ConversationError as error:
            raise DataError(f"{path}, line {number}: {error}") from None
        conversations.append(record["conversation"])
        line_numbers.append(number)
    if len(conversations) < 2:
        raise DataError(f"{path} holds {len(conversations)} conversation(s); SFT needs at least 2 "
                        "(one for training, one for the validation loss).")
    return conversations, line_numbers, sha256


def write_conversations(path, records: list[dict]) -> None:
    """Write records (each with a ``"conversation"`` key) as JSON Lines."""
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def pack(conversations: list, tokenizer, seq_len: int, names: list | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rendered conversations packed greedily into rows: ids and mask, both (N, seq_len + 1).

    A conversation never straddles two rows; one longer than a row is a
    DataError naming it (by ``names[i]`` if given, else its index).
    """
    width = seq_len + 1
    pad = tokenizer.special_tokens[PAD_TOKEN]
    rows, masks, row, mask = [], [], [], []
    for index, conversation in enumerate(conversations):
        ids, loss_mask = render_conversation(conversation, tokenizer)
        if len(ids) > width:
            name = names[index] if names else f"conversation {index}"
            raise DataError(f"{name} renders to {len(ids)} tokens, more than a row of seq_len + 1 = {width}; "
                            "shorten it or train with a longer context.")
        if len(row) + len(ids) > width:  # this one does not fit: close the row with padding
            rows.append(row + [pad] * (width - len(row)))
            masks.append(mask + [0] * (width - len(mask)))
            row, mask = [], []
        row, mask = row + ids, mask + loss_mask
    rows.append(row + [pad] * (width - len(row)))
    masks.append(mask + [0] * (width - len(mask)))
    return np.array(rows, dtype=np.int32), np.array(masks, dtype=np.uint8)


@dataclass
class ConversationCorpus:
    """Packed SFT rows of both splits, with the tokenizer and the file's SHA-256 (what resume compares)."""

    tokenizer: object
    train_rows: np.ndarray  # (N_train, T + 1) token ids
    train_masks: np.ndarray  # (N_train, T + 1) 1 where the token is the assistant's
    val_rows: np.ndarray  # (N_val, T + 1)
    val_masks: np.ndarray  # (N_val, T + 1)
    sha256: str

    def batch(self, split: str, batch_size: int, seq_len: int, rng: np.random.Generator):
        """x, y (B, T) int64 and the loss mask (B, T) of ``batch_size`` random rows of ``split``."""
        rows, masks = (self.train_rows, self.train_masks) if split == "train" else (self.val_rows, self.val_masks)
        if rows.shape[1] != seq_len + 1:
            raise ValueError(f"the rows were packed for seq_len {rows.shape[1] - 1}, not {seq_len}.")
        pick = rng.integers(0, len(rows), size=batch_size)  # (B,)
        window, mask = rows[pick].astype(np.int64), masks[pick]
        return np.ascontiguousarray(window[:, :-1]), np.ascontiguousarray(window[:, 1:]), np.ascontiguousarray(mask[:, 1:])


def replay_rows(text: str, tokenizer, seq_len: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` windows of ``seq_len + 1`` tokens, evenly spaced over ``text``, each with a mask of ones.

    Replay: rows of pretraining text mixed into SFT, every token counted, so
    fine-tuning keeps exercising what pretraining stored instead of bending
    the whole model to the conversations.
    """
    ids = np.array(tokenizer.encode(text), dtype=np.int32)
    width = seq_len + 1
    if len(ids) < width:
        raise DataError(f"the replay text is {len(ids)} tokens, shorter than one row of {width}; give a longer text "
                        "or no replay.")
    starts = np.linspace(0, len(ids) - width, count).astype(np.int64)  # (count,)
    rows = np.stack([ids[s:s + width] for s in starts]) if count else np.zeros((0, width), np.int32)
    return rows, np.ones(rows.shape, dtype=np.uint8)


def load_conversation_corpus(path, tokenizer, seq_len: int, replay=None, replay_fraction: float = 0.0
                             ) -> ConversationCorpus:
    """Read, render and pack the conversations at ``path``; the last tenth is the validation split.

    ``replay``: the path of the pretraining text; its training part (the
    first :data:`llmedu.data.TRAIN_FRACTION`, what pretraining learned from)
    fills ``replay_fraction`` of the training rows (:func:`replay_rows`).
    The validation rows stay conversations only.
    """
    conversations, line_numbers, sha256 = read_conversations(path)
    if PAD_TOKEN not in getattr(tokenizer, "special_tokens", {}):
        raise DataError(f"the model's tokenizer has no {PAD_TOKEN} token to pad rows with; SFT needs a tokenizer "
                        "trained with special_tokens=CHAT_SPECIAL_TOKENS.")
    names = [f"{path}, line {number}" for number in line_numbers]
    cut = len(conversations) - max(1, int(len(conversations) * VALIDATION_FRACTION))
    train = pack(conversations[:cut], tokenizer, seq_len, names[:cut])
    val = pack(conversations[cut:], tokenizer, seq_len, names[cut:])
    if replay is not None and replay_fraction > 0:
        text = read_text(replay)
        count = int(round(len(train[0]) * replay_fraction / (1 - replay_fraction)))
        rows, masks = replay_rows(split_text(text)[0], tokenizer, seq_len, count)
        train = np.concatenate([train[0], rows]), np.concatenate([train[1], masks])
        sha256 = hashlib.sha256((sha256 + hashlib.sha256(text.encode("utf-8")).hexdigest()).encode()).hexdigest()
    return ConversationCorpus(tokenizer, *train, *val, sha256)


def sft_config(base_file, data_file, out, *, steps: int = 300, lr: float = 1e-3, batch_size: int = 8,
               seed: int = 1337, eval_interval: int | None = None, eval_iters: int = 5, replay=None,
               replay_fraction: float = 0.0, task: str = "sft", **fields):
    """The TrainConfig that fine-tunes ``base_file`` on ``data_file``: the model's shape is read from the file.

    No weight decay: fine-tuning nudges trained weights, and decaying them
    towards zero would pull the model away from what pretraining stored.
    ``task`` is "sft" here; lesson 05 fine-tunes the same way with
    "reward_model" and "dpo" (``fields`` such as ``dpo_beta`` go to the config).
    """
    from llmedu.checkpoint import load_params
    from llmedu.train import TrainConfig

    _, shape, _ = load_params(base_file)
    return TrainConfig(
        data=str(data_file), task=task, init_from=str(base_file), dim=shape.dim, n_layers=shape.n_layers,
        n_heads=shape.n_heads, n_kv_heads=shape.n_kv_heads, hidden_dim=shape.hidden_dim, seq_len=shape.max_seq_len,
        batch_size=batch_size, max_iters=steps, lr=lr, min_lr=lr / 10, warmup_iters=max(1, steps // 20),
        weight_decay=0.0, eval_interval=eval_interval or max(1, steps // 4), eval_iters=eval_iters, seed=seed,
        out=str(out),
        replay_data=replay and str(replay), replay_fraction=replay_fraction if replay else 0.0, **fields)


def write_sft_files(out_dir, world, seed: int = 0, **options):
    """Write the world's SFT conversations to ``out_dir``: ``sft_train.jsonl`` and ``sft_eval.jsonl``.

    ``options`` go to :func:`llmedu.sft_data.make_sft_data` (e.g. ``n_invented``).
    Returns ``(train_path, eval_path, data)``. Every record keeps what it
    tests (kind, subject, relation, expected, group) beside its conversation,
    so the evaluation file can be scored on its own.
    """
    from dataclasses import asdict
    from pathlib import Path

    from llmedu.sft_data import make_sft_data

    data = make_sft_data(world, seed=seed, **options)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = out_dir / "sft_train.jsonl", out_dir / "sft_eval.jsonl"
    for path, examples in zip(paths, (data.train, data.eval)):
        write_conversations(path, [asdict(example) for example in examples])
    return (*paths, data)
