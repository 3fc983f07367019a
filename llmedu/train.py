"""Pretraining: the loop that turns text into parameters.

Lesson 03 (``03_pretraining``) ends here. One optimizer step is

    for each of grad_accum micro-batches:         (x, y, mask) = corpus.batch("train", ...)
        loss, grads = loss_and_grads(params, ...)  (llmedu.backward; mask None: every position counts)
    average the gradients, clip their global norm, AdamW update at lr(step)

with the learning rate warming up linearly and then following a cosine down
to ``min_lr`` (``optim.cosine_lr``, nanoGPT's schedule). Every
``eval_interval`` steps the mean loss over ``eval_iters`` batches of each
split is measured, and the run is checkpointed (``llmedu.train_state``).

Supervised fine-tuning (lesson 04, ``llmedu sft``) is the same loop with
``task="sft"``: the parameters start from the file ``init_from`` instead of
``seed``, and the batches are packed conversations whose loss mask keeps only
the assistant's tokens (:mod:`llmedu.sft`). Both kinds of data answer
``corpus.batch(split, batch_size, seq_len, rng) -> (x, y, mask)``.

Preference tuning (lesson 05) is the same loop again, with a new loss:
``task="reward_model"`` (:mod:`llmedu.reward_model`) and ``task="dpo"``
(:mod:`llmedu.dpo`) read a comparisons file, draw batches of pairs
(:mod:`llmedu.comparison_corpus`), and their objective computes the loss
of a batch through the one backward pass; ``task="grpo"`` (:mod:`llmedu.grpo`)
draws questions and samples its own replies with the current parameters.

Reproducibility: the parameters come from ``seed`` (or ``init_from``), the training batches
from their own generator seeded from ``seed``, and the evaluation batches
from a third one that is re-created at every evaluation (the same batches
each time, and never a draw from the training stream). A resumed run
restores the training generator's exact state, so it ends bit-identical to
a run that was never interrupted.
"""

from __future__ import annotations

import math
import os
import signal
import time
from dataclasses import asdict, dataclass, field, fields

import numpy as np
from tqdm.auto import tqdm

from llmedu import train_state as files
from llmedu.backward import forward_loss, loss_and_grads
from llmedu.checkpoint import load_params
from llmedu.data import TOKENIZERS, Corpus, load_corpus, tokenizer_from_text, tokenizer_to_text
from llmedu.model import ModelConfig, init_params
from llmedu.sft import load_conversation_corpus
from llmedu.optim import AdamW, add_grads, clip_grad_norm, cosine_lr, scale_grads

__all__ = ["TrainConfig", "TrainResult", "NonFiniteLoss", "train", "estimate_loss", "config_differences",
           "loss_and_grads"]

BATCH_STREAM, EVAL_STREAM = 1, 2  # separate random streams derived from the one seed
NOT_COMPARED = ("out", "data", "init_from", "replay_data")  # where things live; the data's hash is compared instead
TASKS = ("pretrain", "sft", "reward_model", "dpo", "grpo")


@dataclass(frozen=True)
class TrainConfig:
    """Every hyperparameter of a run. Defaults: nanoGPT's CPU shakespeare_char recipe, Llama-style."""

    data: str  # a UTF-8 text file
    tokenizer: str = "char"  # "char" or "bpe"
    vocab_size: int | None = None  # bpe only (default 512); char: the text's distinct characters
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int | None = None  # None: n_heads (no grouped-query attention)
    dim: int = 128
    hidden_dim: int | None = None  # None: 8/3 * dim rounded up to a multiple of 8 (344 for dim 128)
    seq_len: int = 64  # tokens per training window (the model's max_seq_len)
    batch_size: int = 12  # windows per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    max_iters: int = 2000  # optimizer steps
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    lr_decay_iters: int | None = None  # None: max_iters
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    eval_interval: int = 250
    eval_iters: int = 20
    seed: int = 1337
    out: str = "runs/pretrain"
    task: str = "pretrain"  # "pretrain": data is a text file; "sft": a JSON Lines file of conversations
    init_from: str | None = None  # a parameters file to start from (its tokenizer too); required for "sft"
    replay_data: str | None = None  # sft only: a pretraining text file whose rows are mixed into the batches
    replay_fraction: float = 0.0  # sft only: the share of training rows that are replayed text
    dpo_beta: float = 0.1  # dpo only: how far from the reference the preferences may pull the model
    grpo_group_size: int = 8  # grpo only: replies sampled per question
    grpo_beta: float = 0.04  # grpo only: weight of the KL penalty to the reference

    def __post_init__(self):
        # Resolve the "derived" defaults now, so that a saved config holds the values actually used.
        if self.n_kv_heads is None:
            object.__setattr__(self, "n_kv_heads", self.n_heads)
        if self.hidden_dim is None and isinstance(self.dim, int):
            object.__setattr__(self, "hidden_dim", 8 * math.ceil(self.dim / 3))  # 8/3 dim, up to a multiple of 8
        if self.lr_decay_iters is None:
            object.__setattr__(self, "lr_decay_iters", self.max_iters)
        problems = _config_problems(self)
        if problems:
            raise ValueError("invalid training config:\n  " + "\n  ".join(problems))

    def model_config(self, vocab_size: int) -> ModelConfig:
        return ModelConfig(vocab_size=vocab_size, dim=self.dim, n_layers=self.n_layers, n_heads=self.n_heads,
                           n_kv_heads=self.n_kv_heads, hidden_dim=self.hidden_dim, max_seq_len=self.seq_len)

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len * self.grad_accum


def _config_problems(c: TrainConfig) -> list[str]:
    """Every invalid field of ``c``, one message each."""
    problems, bad = [], set()
    positive = ("n_layers", "n_heads", "n_kv_heads", "dim", "hidden_dim", "seq_len", "batch_size", "grad_accum",
                "max_iters", "eval_interval", "eval_iters")
    for name in positive + ("warmup_iters", "lr_decay_iters", "seed"):
        value = getattr(c, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name in positive else 0):
            problems.append(f"{name} must be an integer >= {1 if name in positive else 0}, got {value!r}")
            bad.add(name)
    for name in ("lr", "min_lr", "weight_decay", "grad_clip", "beta1", "beta2"):
        value = getattr(c, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
            problems.append(f"{name} must be a finite number >= 0, got {value!r}")
            bad.add(name)
    # The checks that relate fields run only when those fields are valid on their own.
    if not {"lr", "min_lr"} & bad and (not c.lr > 0 or c.min_lr > c.lr):
        problems.append(f"need 0 < lr and min_lr <= lr, got lr={c.lr}, min_lr={c.min_lr}")
    if not {"beta1", "beta2"} & bad and not (c.beta1 < 1 and c.beta2 < 1):
        problems.append(f"beta1 and beta2 must be below 1, got {c.beta1} and {c.beta2}")
    if not {"warmup_iters", "lr_decay_iters"} & bad and c.warmup_iters > c.lr_decay_iters:
        problems.append(f"warmup_iters ({c.warmup_iters}) must not exceed lr_decay_iters ({c.lr_decay_iters})")
    if c.task not in TASKS:
        problems.append(f"task must be one of {TASKS}, got {c.task!r}")
    elif c.task != "pretrain" and not c.init_from:
        problems.append(f"task {c.task!r} fine-tunes a trained model: give init_from, the path of its parameters file")
    for name, smallest in (("dpo_beta", "> 0"), ("grpo_beta", ">= 0")):  # DPO's beta scales its whole gradient
        value = getattr(c, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                0 <= value < math.inf and (value > 0 or smallest == ">= 0")):
            problems.append(f"{name} must be a finite number {smallest}, got {value!r}")
    if isinstance(c.grpo_group_size, bool) or not isinstance(c.grpo_group_size, int) or c.grpo_group_size < 2:
        problems.append(f"grpo_group_size must be an integer >= 2 (advantages compare replies), got {c.grpo_group_size!r}")
    f = c.replay_fraction
    if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 <= f < 1:
        problems.append(f"replay_fraction must be a number in [0, 1), got {f!r}")
    elif f > 0 and (c.task != "sft" or not c.replay_data):
        problems.append("replay_fraction > 0 mixes pretraining text into SFT: needs task 'sft' and replay_data, "
                        "the path of that text")
    if not {"n_layers", "n_heads", "n_kv_heads", "dim", "hidden_dim", "seq_len"} & bad:
        try:
            c.model_config(vocab_size=1)
        except ValueError as err:
            problems.append(str(err))
    if c.tokenizer not in TOKENIZERS:
        problems.append(f"tokenizer must be one of {TOKENIZERS}, got {c.tokenizer!r}")
    elif c.tokenizer == "char" and c.vocab_size is not None:
        problems.append("vocab_size is for the bpe tokenizer; the char tokenizer has one id per distinct character")
    elif c.vocab_size is not None and (isinstance(c.vocab_size, bool) or not isinstance(c.vocab_size, int)
                                       or c.vocab_size < 260):
        problems.append(f"vocab_size must be an integer >= 260 (256 bytes + 4 chat tokens), got {c.vocab_size!r}")
    return problems


def config_differences(old: dict, new: dict) -> list[str]:
    """``"field: old vs new"`` for every compared field that differs between two TrainConfig dicts."""
    names = [f.name for f in fields(TrainConfig) if f.name not in NOT_COMPARED]
    return [f"{name}: {old.get(name)!r} vs {new.get(name)!r}" for name in names if old.get(name) != new.get(name)]


class NonFiniteLoss(RuntimeError):
    """The loss (or gradient norm) stopped being a finite number; ``checkpoint_step`` is the last good save."""

    def __init__(self, message: str, step: int, checkpoint_step: int):
        super().__init__(message)
        self.step, self.checkpoint_step = step, checkpoint_step


@dataclass
class TrainResult:
    params: dict
    model_config: ModelConfig
    tokenizer: object
    step: int  # optimizer steps done
    interrupted: bool  # stopped by Ctrl-C / SIGINT (checkpoint saved)
    out_dir: str
    elapsed_s: float
    evals: list = field(default_factory=list)  # {"step", "train_loss", "val_loss", "elapsed_s"} per evaluation


@dataclass
class _Run:
    """The mutable state of a run in progress."""

    config: TrainConfig
    corpus: Corpus  # or a ConversationCorpus, a ComparisonCorpus: anything with .batch(split, B, T, rng)
    objective: object  # the loss of a batch: .loss_and_grads(params, config, batch) and .loss(...)
    model_config: ModelConfig
    params: dict
    optimizer: AdamW
    rng: np.random.Generator  # the training batches, and nothing else
    step: int
    saved_step: int | None = None
    given_corpus: bool = False  # train(corpus=...): config.data only describes the data, it is no file


class NextToken:
    """Pretraining's and SFT's objective: the mean next-token cross-entropy of a batch (x, y, mask)."""

    @staticmethod
    def loss_and_grads(params, config, batch):
        return loss_and_grads(params, config, *batch)

    @staticmethod
    def loss(params, config, batch) -> float:
        return forward_loss(params, config, *batch)


def estimate_loss(params: dict, model_config: ModelConfig, corpus, *, batch_size: int, seq_len: int,
                  eval_iters: int, seed: int, objective=NextToken) -> dict[str, float]:
    """Mean loss over ``eval_iters`` batches of each split: ``{"train": ..., "val": ...}``.

    The batches depend only on ``seed``: every evaluation of a run sees the
    same windows, and no training draw is consumed.
    """
    losses = {}
    for index, split in enumerate(("train", "val")):
        rng = np.random.default_rng([seed, EVAL_STREAM, index])
        batches = (corpus.batch(split, batch_size, seq_len, rng) for _ in range(eval_iters))
        losses[split] = float(np.mean([objective.loss(params, model_config, batch) for batch in batches]))
    return losses


def _given_tokenizer_problem(config: TrainConfig, resume: bool, tokenizer) -> str | None:
    """Why ``tokenizer`` cannot stand in for the one ``config`` would build (None if it can)."""
    if resume:
        return "resume=True continues with the tokenizer stored in the run; pass tokenizer=None."
    kind = type(tokenizer).__name__
    if (config.tokenizer == "bpe") != (kind == "BPETokenizer"):
        return f"config.tokenizer is {config.tokenizer!r} but the tokenizer given is a {kind}."
    if config.tokenizer == "bpe" and config.vocab_size is not None and len(tokenizer) != config.vocab_size:
        return f"config.vocab_size is {config.vocab_size} but the tokenizer given has {len(tokenizer)} ids."
    return None


def _start(config: TrainConfig, resume: bool, tokenizer=None, corpus=None) -> _Run:
    """A fresh run (with ``tokenizer`` or ``corpus`` if given), or the one saved in ``config.out`` when ``resume``."""
    given = corpus is not None
    if given and (tokenizer is not None or config.task != "pretrain" or config.init_from):
        raise ValueError("a given corpus brings its own tokenizer and data: use it with task 'pretrain', "
                         "no init_from and no tokenizer argument.")
    if tokenizer is not None and config.init_from:
        raise ValueError("init_from brings the tokenizer stored with its parameters; pass tokenizer=None.")
    if tokenizer is not None and (problem := _given_tokenizer_problem(config, resume, tokenizer)):
        raise ValueError(problem)
    if not resume:
        if files.has_checkpoint(config.out):
            raise FileExistsError(f"{config.out} already holds a checkpoint: pass resume=True (--resume) to continue "
                                  "it, or choose another output folder.")
        if config.init_from:
            params, model_config, tokenizer = _load_start(config)
            corpus = _load_data(config, tokenizer)
        else:
            corpus = corpus if given else _load_data(config, tokenizer)
            model_config = config.model_config(len(corpus.tokenizer))
            params = init_params(model_config, seed=config.seed)
        optimizer = AdamW(params, config.lr, betas=(config.beta1, config.beta2), weight_decay=config.weight_decay)
        return _Run(config, corpus, _objective(config, corpus), model_config, params, optimizer,
                    np.random.default_rng([config.seed, BATCH_STREAM]), 0, given_corpus=given)
    state = files.load_state(config.out)
    differences = config_differences(state.train_config, asdict(config))
    if differences:
        raise ValueError(f"cannot resume {config.out}: the config differs from the checkpoint's (old vs new):\n  "
                         + "\n  ".join(differences))
    if not given:
        tokenizer = tokenizer_from_text(state.tokenizer_text, f"the tokenizer stored in {config.out}")
        corpus = _load_data(config, tokenizer)
    if corpus.sha256 != state.data_sha256:
        raise ValueError(f"cannot resume {config.out}: the data in {config.data} (or its replay text) differs from "
                         f"what the run started with (sha256 {state.data_sha256[:12]}... vs {corpus.sha256[:12]}...).")
    optimizer = AdamW(state.params, config.lr, betas=(config.beta1, config.beta2), weight_decay=config.weight_decay)
    optimizer.load_state_dict(state.optimizer)
    rng = np.random.default_rng()
    rng.bit_generator.state = state.rng_state
    return _Run(config, corpus, _objective(config, corpus), state.model_config, state.params, optimizer, rng,
                state.step, state.step, given)


def _load_data(config: TrainConfig, tokenizer=None):
    """The run's data: a text file (pretraining) or packed conversations (SFT, with the model's tokenizer)."""
    if config.task == "sft":
        return load_conversation_corpus(config.data, tokenizer, config.seq_len, config.replay_data,
                                        config.replay_fraction)
    if config.task == "grpo":
        from llmedu.grpo import load_questions

        return load_questions(config.data, tokenizer, config.seq_len)
    if config.task in ("reward_model", "dpo"):
        from llmedu.comparison_corpus import load_comparison_corpus

        corpus = load_comparison_corpus(config.data, tokenizer, config.seq_len)
        if config.task == "dpo":  # the reference is the model DPO starts from, also when a run is resumed
            from llmedu.dpo import add_reference

            reference, reference_config, _ = load_params(config.init_from)
            add_reference(corpus, reference, reference_config)
        return corpus
    return load_corpus(config.data, seq_len=config.seq_len, tokenizer=config.tokenizer, vocab_size=config.vocab_size,
                       existing=tokenizer)


def _objective(config: TrainConfig, corpus):
    """What a batch's loss is, for the run's task (lesson 05 adds the reward model's and DPO's)."""
    if config.task == "reward_model":
        from llmedu.reward_model import REWARD_TOKEN, RewardObjective

        return RewardObjective(corpus.tokenizer.special_tokens[REWARD_TOKEN])
    if config.task == "dpo":
        from llmedu.dpo import DPOObjective

        return DPOObjective(corpus, config.dpo_beta)
    if config.task == "grpo":  # the reference is the model GRPO starts from, also when a run is resumed
        from llmedu.grpo import GRPOObjective

        reference, reference_config, _ = load_params(config.init_from)
        return GRPOObjective(corpus.tokenizer, (reference, reference_config), config.grpo_group_size,
                             config.grpo_beta)
    return NextToken


def _load_start(config: TrainConfig) -> tuple[dict, ModelConfig, object]:
    """Parameters, model config and tokenizer of ``config.init_from``, which must match the config's shape."""
    params, model_config, metadata = load_params(config.init_from)
    if "tokenizer" not in metadata:
        raise ValueError(f"{config.init_from} holds no tokenizer; fine-tuning needs the one the model was trained with.")
    wanted = config.model_config(model_config.vocab_size)
    differences = [f"{name}: the file has {getattr(model_config, name)}, the config {getattr(wanted, name)}"
                   for name in ("dim", "n_layers", "n_heads", "n_kv_heads", "hidden_dim", "max_seq_len")
                   if getattr(model_config, name) != getattr(wanted, name)]
    if differences:
        raise ValueError(f"{config.init_from} does not have the shape the config describes (seq_len is the model's "
                         "max_seq_len):\n  " + "\n  ".join(differences) + "\n`llmedu sft` reads the shape from the file.")
    return params, model_config, tokenizer_from_text(metadata["tokenizer"], f"the tokenizer stored in {config.init_from}")


def _save(run: _Run) -> None:
    files.save_state(run.config.out, files.TrainState(
        run.step, run.params, run.optimizer.state_dict(), run.rng.bit_generator.state,
        {**asdict(run.config),  # a data file's full path: resumable from any folder
         "data": run.config.data if run.given_corpus else os.path.abspath(run.config.data),
         "init_from": run.config.init_from and os.path.abspath(run.config.init_from),
         "replay_data": run.config.replay_data and os.path.abspath(run.config.replay_data)},
        run.model_config, tokenizer_to_text(run.corpus.tokenizer), run.corpus.sha256))
    run.saved_step = run.step


def _diverged(run: _Run, what: str, value: float, step: int) -> NonFiniteLoss:
    where = (f"the last good checkpoint, from step {run.saved_step}, is still in {run.config.out}"
             if run.saved_step is not None else "no checkpoint had been saved yet")
    return NonFiniteLoss(f"{what} became {value} at step {step}; training stopped and {where}. "
                         "Try a lower --lr or a longer --warmup-iters.", step, run.saved_step)


def _lr(run: _Run) -> float:
    c = run.config
    return cosine_lr(run.step, lr=c.lr, min_lr=c.min_lr, warmup_iters=c.warmup_iters, lr_decay_iters=c.lr_decay_iters)


def _train_step(run: _Run) -> float:
    """One optimizer step (``grad_accum`` micro-batches, in a fixed order); returns the mean loss."""
    c, grads, losses = run.config, None, []
    for _ in range(c.grad_accum):
        batch = run.corpus.batch("train", c.batch_size, c.seq_len, run.rng)
        loss, micro = run.objective.loss_and_grads(run.params, run.model_config, batch)
        losses.append(loss)
        if grads is None:
            grads = micro
        else:
            add_grads(grads, micro)
    loss = float(np.mean(losses))
    if not math.isfinite(loss):
        raise _diverged(run, f"the training loss (lr {_lr(run):.3g})", loss, run.step + 1)
    if c.grad_accum > 1:
        scale_grads(grads, 1.0 / c.grad_accum)  # the mean over micro-batches, as one big batch would give
    norm = clip_grad_norm(grads, c.grad_clip if c.grad_clip > 0 else math.inf)
    if not math.isfinite(norm):
        raise _diverged(run, f"the gradient norm (lr {_lr(run):.3g})", norm, run.step + 1)
    run.optimizer.step(grads, lr=_lr(run))
    run.step += 1
    return loss


def _evaluate(run: _Run, elapsed: float, say, on_eval=None) -> dict:
    c = run.config
    losses = estimate_loss(run.params, run.model_config, run.corpus, batch_size=c.batch_size, seq_len=c.seq_len,
                           eval_iters=c.eval_iters, seed=c.seed, objective=run.objective)
    for split, value in losses.items():
        if not math.isfinite(value):
            raise _diverged(run, f"the {split} loss of the evaluation", value, run.step)
    say(f"step {run.step}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}, {elapsed:.1f} s")
    result = {"step": run.step, "train_loss": losses["train"], "val_loss": losses["val"], "elapsed_s": elapsed}
    if on_eval is not None:  # extra measurements; they must not touch the training RNG
        result.update(on_eval(run.step, run.params, run.model_config, run.corpus.tokenizer))
    return result


class _SigintStop:
    """Ctrl-C (SIGINT) handling while the loop runs: the first press asks it to stop after the current step.

    A second press raises KeyboardInterrupt at once; the atomic writes keep
    the last checkpoint whole even then.
    """

    def __init__(self):
        self.requested, self._previous, self._installed = False, None, False

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        except ValueError:  # not the main thread: Ctrl-C keeps its usual meaning
            pass
        return self

    def __exit__(self, *exc):
        if self._installed:
            signal.signal(signal.SIGINT, self._previous if self._previous is not None else signal.default_int_handler)


def train(config: TrainConfig, *, resume: bool = False, progress: bool = True,
          start_time: float | None = None, on_eval=None, tokenizer=None, corpus=None) -> TrainResult:
    """Train (or, with ``resume``, continue) the run described by ``config``; see the module docstring.

    Writes ``config.out``/{model.safetensors, train_state.safetensors,
    log.jsonl}. ``start_time`` (a ``time.perf_counter()`` value) is when the
    command began, for the log's ``elapsed_s``. Ctrl-C stops after the
    current step with a checkpoint saved (``result.interrupted``). Raises
    ``NonFiniteLoss`` if training diverges, ``data.DataError`` for unusable
    text, ``ValueError`` for a bad config or a resume that does not match.
    ``on_eval(step, params, model_config, tokenizer) -> dict``, if given, runs
    at every evaluation and its figures join that evaluation's entry in
    ``result.evals`` (the speedrun measures fact recall this way).
    ``tokenizer``: a ready tokenizer of the kind ``config.tokenizer`` names
    (and of ``config.vocab_size`` ids) to use instead of building one from
    the text; fresh runs only.
    ``corpus``: ready data to train on instead of reading ``config.data``
    (which then only describes it): anything with ``.tokenizer`` (one
    ``data.tokenizer_to_text`` can save), ``.sha256`` and
    ``.batch(split, batch_size, seq_len, rng) -> (x, y, mask)``, e.g. lesson
    08's image-and-caption rows (:mod:`llmedu.image_captions`); task
    "pretrain" only, and the same corpus again to resume.
    """
    start = time.perf_counter() if start_time is None else start_time
    run = _start(config, resume, tokenizer, corpus)  # first: a run that cannot start leaves no folder behind
    os.makedirs(config.out, exist_ok=True)
    files.remove_stale_temporaries(config.out)
    say = tqdm.write if progress else print
    if run.step >= config.max_iters:
        say(f"{config.out} already finished its {config.max_iters} steps: nothing to do.")
    evals = []
    with files.RunLog(config.out, keep_through=run.step if resume else None) as log, \
            tqdm(total=config.max_iters, initial=run.step, desc=config.task, unit="step", disable=not progress) as bar, \
            _SigintStop() as stop:
        if run.step == 0:  # the untrained model's loss: about ln(vocab_size)
            evals.append(_evaluate(run, time.perf_counter() - start, say, on_eval))
            log.write({"step": 0, "elapsed_s": evals[-1]["elapsed_s"], "lr": None, "train_loss": None,
                       "tokens_per_s": None, "val_loss": evals[-1]["val_loss"], "eval_train_loss": evals[-1]["train_loss"]})
            _save(run)
        while run.step < config.max_iters and not stop.requested:
            lr, began = _lr(run), time.perf_counter()
            loss = _train_step(run)
            now = time.perf_counter()
            row = {"step": run.step, "elapsed_s": now - start, "lr": lr, "train_loss": loss,
                   "tokens_per_s": config.tokens_per_step / (now - began)}
            bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{row['tokens_per_s']:,.0f}", refresh=False)
            bar.update(1)
            due = run.step % config.eval_interval == 0 or run.step == config.max_iters
            if due:
                evals.append(_evaluate(run, now - start, say, on_eval))
                row.update(val_loss=evals[-1]["val_loss"], eval_train_loss=evals[-1]["train_loss"])
            log.write(row)
            if due or stop.requested:
                _save(run)
    interrupted = stop.requested and run.step < config.max_iters
    if interrupted:
        say(f"interrupted: checkpoint of step {run.step} saved in {config.out}; continue with resume=True (--resume).")
    return TrainResult(run.params, run.model_config, run.corpus.tokenizer, run.step, interrupted, config.out,
                       time.perf_counter() - start, evals)
