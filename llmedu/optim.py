"""Turning gradients into better parameters: AdamW, the learning-rate schedule, gradient clipping.

Lesson 03 (``03_pretraining``) builds these after the backward pass
(``llmedu.backward``) and before the training loop (``llmedu.train``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["AdamW", "cosine_lr", "clip_grad_norm", "add_grads", "scale_grads", "decays"]

# Let LLVM vectorise the loops (reorder sums, fuse multiply-adds) without assuming inf and nan never occur.
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}


def decays(name: str) -> bool:
    """Whether AdamW's weight decay applies to the parameter called ``name``.

    Matrices and embeddings decay: shrinking them a little each step keeps
    weights small and generalises better. RMSNorm gains (``attention_norm``,
    ``ffn_norm``, ``norm``) do not: a gain's neutral value is 1, but decay
    pulls it towards 0, and there are too few of them to overfit anyway.
    The stacked gains are 2-D (n_layers, dim), so the rule goes by name, not
    by number of dimensions.
    """
    return not name.endswith("norm")


class AdamW:
    """Adam with decoupled weight decay (Loshchilov & Hutter), updating ``params`` in place.

    For each parameter p with gradient g, at step t = 1, 2, ...:
        p <- p - lr * weight_decay * p              (decay, only where ``decays(name)``)
        m <- beta1 * m + (1 - beta1) * g            (running mean of g)
        v <- beta2 * v + (1 - beta2) * g^2          (running mean of g^2)
        p <- p - lr * m_hat / (sqrt(v_hat) + eps)   (m_hat = m / (1 - beta1^t), v_hat likewise)
    "Decoupled": the decay shrinks p directly instead of being added to g,
    so Adam's per-parameter scaling does not weaken it where gradients are
    large. The bias corrections undo the zero start of m and v.

    params: name -> writeable C-contiguous float array (float32 for
    training); the dict's arrays themselves change. The state (``m``, ``v``
    in the parameters' dtype, ``step_count``) is plain arrays, so
    ``state_dict`` / ``load_state_dict`` resume a run exactly.
    """

    def __init__(self, params: dict, lr: float, betas=(0.9, 0.95), weight_decay: float = 0.1, eps: float = 1e-8):
        if not lr >= 0 or not weight_decay >= 0 or not eps > 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"need lr >= 0, weight_decay >= 0, eps > 0 and 0 <= betas < 1; "
                             f"got lr={lr}, weight_decay={weight_decay}, eps={eps}, betas={betas}.")
        for name, p in params.items():
            if not p.flags.c_contiguous or not p.flags.writeable or not np.issubdtype(p.dtype, np.floating):
                raise ValueError(f"parameter {name!r} must be a writeable, C-contiguous float array: "
                                 "AdamW updates it in place.")
        self.params = params
        self.lr, self.betas, self.weight_decay, self.eps = lr, tuple(betas), weight_decay, eps
        self.step_count = 0
        self.m = {name: np.zeros_like(p) for name, p in params.items()}
        self.v = {name: np.zeros_like(p) for name, p in params.items()}

    def step(self, grads: dict, lr: float | None = None) -> None:
        """One update of every parameter from ``grads`` (same names and shapes).

        ``lr`` is the learning rate of this step only (from a schedule); None uses ``self.lr``.
        """
        lr, (beta1, beta2), (bias1, bias2) = self._begin_step(grads, lr)
        for name, p in self.params.items():
            g = np.ascontiguousarray(grads[name], dtype=p.dtype)
            decay = 1 - lr * self.weight_decay if decays(name) else 1.0
            t = p.dtype.type  # scalars in the parameters' dtype keep a float32 kernel in float32
            _adamw_update(p.reshape(-1), g.reshape(-1), self.m[name].reshape(-1), self.v[name].reshape(-1),
                          t(decay), t(beta1), t(1 - beta1), t(beta2), t(1 - beta2),
                          t(lr / bias1), t(1 / math.sqrt(bias2)), t(self.eps))

    def step_reference(self, grads: dict, lr: float | None = None) -> None:
        """``step`` in plain numpy, one line per formula of the class docstring (slower: temporaries)."""
        lr, (beta1, beta2), (bias1, bias2) = self._begin_step(grads, lr)
        for name, p in self.params.items():
            g, m, v = grads[name], self.m[name], self.v[name]
            if decays(name):
                p *= 1 - lr * self.weight_decay
            m[...] = beta1 * m + (1 - beta1) * g
            v[...] = beta2 * v + (1 - beta2) * g * g
            p -= lr * (m / bias1) / (np.sqrt(v / bias2) + self.eps)

    def _begin_step(self, grads: dict, lr: float | None):
        """Check the gradients before anything changes, count the step; returns lr, betas, bias corrections."""
        if set(grads) != set(self.params):
            raise ValueError(f"grads and params differ in names: {sorted(set(grads) ^ set(self.params))}.")
        for name, p in self.params.items():
            if np.shape(grads[name]) != p.shape:
                raise ValueError(f"gradient {name!r} has shape {np.shape(grads[name])}, the parameter {p.shape}.")
        self.step_count += 1
        beta1, beta2 = self.betas
        return (self.lr if lr is None else lr), self.betas, (1 - beta1 ** self.step_count, 1 - beta2 ** self.step_count)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the state: "step" (int64 scalar), "m.<name>" and "v.<name>" per parameter."""
        state = {"step": np.array(self.step_count, dtype=np.int64)}
        for name in self.params:
            state[f"m.{name}"] = self.m[name].copy()
            state[f"v.{name}"] = self.v[name].copy()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore a ``state_dict``; refuses missing, extra or misshapen entries."""
        expected = {"step"} | {f"{k}.{name}" for name in self.params for k in "mv"}
        if set(state) != expected:
            raise ValueError(f"optimizer state does not match the parameters: {sorted(set(state) ^ expected)}.")
        for name in self.params:
            for key, buf in ((f"m.{name}", self.m[name]), (f"v.{name}", self.v[name])):
                if np.shape(state[key]) != buf.shape:
                    raise ValueError(f"optimizer state {key!r} has shape {np.shape(state[key])}, expected {buf.shape}.")
        for name in self.params:
            self.m[name][...] = state[f"m.{name}"]
            self.v[name][...] = state[f"v.{name}"]
        self.step_count = int(state["step"])


@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _adamw_update(p, g, m, v, decay, beta1, one_minus_beta1, beta2, one_minus_beta2, step_size, inv_sqrt_bias2, eps):
    """The formulas of ``AdamW`` fused into one pass over flat arrays p, g, m, v (updated in place).

    step_size = lr / (1 - beta1^t) and inv_sqrt_bias2 = 1 / sqrt(1 - beta2^t)
    fold the bias corrections into two scalars; decay = 1 - lr * weight_decay, or 1.
    """
    for i in range(p.shape[0]):
        m[i] = beta1 * m[i] + one_minus_beta1 * g[i]
        v[i] = beta2 * v[i] + one_minus_beta2 * g[i] * g[i]
        p[i] = p[i] * decay - step_size * m[i] / (np.sqrt(v[i]) * inv_sqrt_bias2 + eps)


@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _sum_squares(x):
    """sum(x^2) of a flat array, accumulated in float64."""
    acc = 0.0
    for i in range(x.shape[0]):
        acc += np.float64(x[i]) * np.float64(x[i])
    return acc


def cosine_lr(step: int, *, lr: float, min_lr: float, warmup_iters: int, lr_decay_iters: int) -> float:
    """Learning rate at ``step`` (0-based), with nanoGPT's schedule: linear warm-up, cosine decay, then flat.

    - step < warmup_iters: lr * (step + 1) / (warmup_iters + 1), so step 0
      already moves a little and the ramp never quite reaches lr;
    - warmup_iters <= step < lr_decay_iters: from lr down to min_lr along half
      a cosine;
    - step >= lr_decay_iters: min_lr.
    """
    if warmup_iters < 0 or lr_decay_iters < warmup_iters:
        raise ValueError(f"need 0 <= warmup_iters <= lr_decay_iters, got {warmup_iters} and {lr_decay_iters}.")
    if step < warmup_iters:
        return lr * (step + 1) / (warmup_iters + 1)
    if step >= lr_decay_iters:
        return min_lr
    progress = (step - warmup_iters) / (lr_decay_iters - warmup_iters)  # 0 -> 1
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)


def clip_grad_norm(grads: dict, max_norm: float) -> float:
    """Scale all gradients in place so their global L2 norm is at most ``max_norm``; returns the norm before.

    A non-finite norm leaves the gradients untouched: the caller should skip that step.
    """
    total = math.sqrt(sum(_sum_squares(np.ascontiguousarray(g).reshape(-1)) for g in grads.values()))
    if math.isfinite(total) and total > max_norm:
        scale = max_norm / total
        for g in grads.values():
            g *= scale
    return total


def add_grads(total: dict, grads: dict, scale: float = 1.0) -> None:
    """total[name] += scale * grads[name] for every name, in place (gradient accumulation)."""
    for name, g in grads.items():
        total[name] += scale * g


def scale_grads(grads: dict, factor: float) -> None:
    """grads[name] *= factor for every name, in place."""
    for g in grads.values():
        g *= factor
