"""Images as tokens: tiny synthetic pictures, cut into patches, each patch named by a k-means codebook.

Lesson 08 (``08_frontiers``) shows the LLM OS's peripherals in small: once
an image is a sequence of token ids, the same transformer that reads text
reads it (:mod:`llmedu.image_captions` trains one to caption them).

    image (16, 16)  --patches-->  (16, 16) = 16 patches of 4x4 pixels, each a vector of 16 values
                    --nearest code of a k-means codebook (k, 16)-->  16 token ids in [0, k)
    token ids       --codebook rows, patches put back-->  the reconstruction (16, 16)

The pictures come from a seed: one shape (square, circle, triangle, cross,
line), small or large, bright or dim, in one of four corners, moved by up to
a pixel, plus Gaussian noise; each has the caption that says exactly that
("a small bright circle at the top left"), so a model's answer is judged
attribute by attribute.

The codebook is k-means written out: k-means++ seeding (each new centre drawn
with probability proportional to its squared distance from the nearest centre
so far), then Lloyd iterations (assign every patch to its nearest centre, move
every centre to the mean of its patches). ``kmeans_reference`` is the same
algorithm in plain loops, tested equal. This is the idea of VQ-VAE image
tokenizers (van den Oord et al. 2017) without the learned encoder.

Left out: colour, learned (neural) encoders and decoders, overlapping
patches, and codebooks trained by gradient descent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIZE = 16  # pixels per side
PATCH = 4  # pixels per patch side: (16 / 4)^2 = 16 patches per image
SHAPES = ("square", "circle", "triangle", "cross", "line")
SIZES = ("small", "large")
SHADES = ("bright", "dim")
PLACES = ("top left", "top right", "bottom left", "bottom right")
ATTRIBUTES = {"shape": SHAPES, "size": SIZES, "shade": SHADES, "place": PLACES}
RADIUS = {"small": 2.5, "large": 4.5}  # half the side of the shape's box, in pixels
INTENSITY = {"bright": 1.0, "dim": 0.5}
CORNER = {"top": 4.0, "bottom": 11.0, "left": 4.0, "right": 11.0}  # centre coordinate of each side
NOISE = 0.05  # standard deviation of the pixel noise


@dataclass(frozen=True)
class ImageSet:
    """Images (N, SIZE, SIZE) float32 in [0, 1] and the attributes each one shows."""

    images: np.ndarray
    labels: list  # one dict {"shape", "size", "shade", "place"} per image

    def captions(self) -> list[str]:
        return [caption(label) for label in self.labels]


def caption(label: dict) -> str:
    """The true caption of an image: ``a small bright circle at the top left``."""
    return f"a {label['size']} {label['shade']} {label['shape']} at the {label['place']}"


def parse_caption(text: str) -> dict | None:
    """The attributes a caption states, or None when it is not of the form ``caption`` writes."""
    words = text.split()
    if len(words) != 8 or words[0] != "a" or words[4:6] != ["at", "the"]:
        return None
    label = {"size": words[1], "shade": words[2], "shape": words[3], "place": " ".join(words[6:])}
    return label if all(label[name] in values for name, values in ATTRIBUTES.items()) else None


def draw(label: dict, dy: int = 0, dx: int = 0) -> np.ndarray:
    """The noiseless image (SIZE, SIZE) of ``label``, its centre moved by (dy, dx) pixels."""
    vertical, horizontal = label["place"].split()
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)  # (S, S) pixel coordinates
    y, x = y - (CORNER[vertical] + dy), x - (CORNER[horizontal] + dx)  # relative to the centre
    r = RADIUS[label["size"]]
    inside = {
        "square": (np.abs(y) <= r) & (np.abs(x) <= r),
        "circle": y ** 2 + x ** 2 <= r ** 2,
        "triangle": (np.abs(y) <= r) & (np.abs(x) <= (y + r) / 2),  # apex at the top, base at the bottom
        "cross": ((np.abs(y) <= 0.5) & (np.abs(x) <= r)) | ((np.abs(x) <= 0.5) & (np.abs(y) <= r)),
        "line": (np.abs(y - x) <= 0.5) & (np.abs(x) <= r),  # the diagonal from top left to bottom right
    }[label["shape"]]
    return inside * INTENSITY[label["shade"]]


def make_images(n: int, seed: int) -> ImageSet:
    """``n`` images with uniformly drawn attributes, shifts and noise; the same seed gives the same images."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive number of images, got {n!r}.")
    rng = np.random.default_rng(seed)
    images, labels = np.empty((n, SIZE, SIZE), dtype=np.float32), []
    for i in range(n):
        label = {name: str(values[rng.integers(len(values))]) for name, values in ATTRIBUTES.items()}
        dy, dx = rng.integers(-1, 2, size=2)  # up to a pixel either way
        noisy = draw(label, int(dy), int(dx)) + NOISE * rng.standard_normal((SIZE, SIZE))
        images[i] = np.clip(noisy, 0.0, 1.0)
        labels.append(label)
    return ImageSet(images, labels)


# ------------------------------------------------------------- patches --

def patchify(images: np.ndarray, patch: int = PATCH) -> np.ndarray:
    """Images (N, H, W) -> patches (N, H/p * W/p, p * p), in reading order (left to right, top to bottom)."""
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1] % patch or images.shape[2] % patch:
        raise ValueError(f"images must be (N, H, W) with H and W multiples of the patch side {patch}, "
                         f"got shape {images.shape}.")
    n, h, w = images.shape
    blocks = images.reshape(n, h // patch, patch, w // patch, patch)  # (N, rows, p, cols, p)
    return blocks.transpose(0, 1, 3, 2, 4).reshape(n, (h // patch) * (w // patch), patch * patch)


def unpatchify(patches: np.ndarray, size: int = SIZE) -> np.ndarray:
    """The inverse of ``patchify``: patches (N, P, p * p) -> images (N, size, size)."""
    patches = np.asarray(patches)
    n, count, area = patches.shape
    patch = int(round(area ** 0.5))
    per_side = size // patch
    if patch * patch != area or per_side * per_side != count or per_side * patch != size:
        raise ValueError(f"patches of shape {patches.shape} do not tile a {size}x{size} image.")
    blocks = patches.reshape(n, per_side, per_side, patch, patch)  # (N, rows, cols, p, p)
    return blocks.transpose(0, 1, 3, 2, 4).reshape(n, size, size)


# ------------------------------------------------------------- k-means --

def nearest_code(patches: np.ndarray, codebook: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """The index of each patch's nearest codebook row by squared distance: (n, d), (k, d) -> (n,) int64.

    Ties go to the lowest index (``argmin`` takes the first). The differences
    are computed directly, not as |x|^2 - 2 x.c + |c|^2, whose rounding can
    break a tie the wrong way; ``chunk`` rows at a time keep (chunk, k, d) small.
    """
    patches, codebook = np.asarray(patches, dtype=np.float64), np.asarray(codebook, dtype=np.float64)
    if patches.ndim != 2 or codebook.ndim != 2 or patches.shape[1] != codebook.shape[1] or not len(codebook):
        raise ValueError(f"need patches (n, d) and a non-empty codebook (k, d), got {patches.shape} and {codebook.shape}.")
    out = np.empty(len(patches), dtype=np.int64)
    for start in range(0, len(patches), chunk):
        part = patches[start:start + chunk]  # (c, d)
        distances = ((part[:, None, :] - codebook[None, :, :]) ** 2).sum(-1)  # (c, k)
        out[start:start + chunk] = distances.argmin(1)
    return out


def kmeans_objective(points: np.ndarray, codebook: np.ndarray) -> float:
    """The mean squared distance of every point to its nearest centre: what Lloyd's steps never increase."""
    points = np.asarray(points, dtype=np.float64)
    return float(((points - np.asarray(codebook, dtype=np.float64)[nearest_code(points, codebook)]) ** 2).sum(1).mean())


def kmeans_plus_plus(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k starting centres (k, d): the first a uniform draw, each next drawn in proportion to d^2 to the nearest."""
    points = np.asarray(points, dtype=np.float64)
    centres = [points[rng.integers(len(points))]]
    nearest = ((points - centres[0]) ** 2).sum(1)  # (n,) squared distance to the nearest centre so far
    for _ in range(1, k):
        total = nearest.sum()
        # All points already sit on centres (fewer distinct points than k): any point will do.
        index = rng.integers(len(points)) if total <= 0 else int(rng.choice(len(points), p=nearest / total))
        centres.append(points[index])
        nearest = np.minimum(nearest, ((points - points[index]) ** 2).sum(1))
    return np.array(centres)


def lloyd_step(points: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """One Lloyd iteration: each centre moves to the mean of the points nearest to it (an empty one stays)."""
    points = np.asarray(points, dtype=np.float64)
    assignment = nearest_code(points, codebook)  # (n,)
    k, d = codebook.shape
    sums = np.zeros((k, d))
    np.add.at(sums, assignment, points)  # (k, d) sum of each cluster's points
    counts = np.bincount(assignment, minlength=k)  # (k,)
    new = np.array(codebook, dtype=np.float64)
    filled = counts > 0
    new[filled] = sums[filled] / counts[filled, None]
    return new


def kmeans(points: np.ndarray, k: int, *, seed: int = 0, iters: int = 20) -> tuple[np.ndarray, list[float]]:
    """A codebook (k, d) float32 for ``points`` (n, d), and the objective before and after each iteration.

    Stops early when an iteration no longer moves any centre.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or not 1 <= k <= len(points):
        raise ValueError(f"need points (n, d) and 1 <= k <= n, got shape {points.shape} and k={k!r}.")
    codebook = kmeans_plus_plus(points, k, np.random.default_rng(seed))
    history = [kmeans_objective(points, codebook)]
    for _ in range(iters):
        new = lloyd_step(points, codebook)
        moved = not np.array_equal(new, codebook)
        codebook = new
        history.append(kmeans_objective(points, codebook))
        if not moved:
            break
    return codebook.astype(np.float32), history


def kmeans_reference(points, k: int, *, seed: int = 0, iters: int = 20) -> np.ndarray:
    """``kmeans`` in plain Python loops, one point and one centre at a time: the readable version (float64)."""
    points = [list(map(float, p)) for p in np.asarray(points)]
    rng = np.random.default_rng(seed)

    def distance(a, b):
        return sum((x - y) ** 2 for x, y in zip(a, b))

    def nearest(p, centres):  # the first of the closest, as argmin
        best = 0
        for j in range(1, len(centres)):
            if distance(p, centres[j]) < distance(p, centres[best]):
                best = j
        return best

    centres = [points[rng.integers(len(points))]]  # k-means++ seeding, the same draws as kmeans_plus_plus
    for _ in range(1, k):
        d2 = np.array([min(distance(p, c) for c in centres) for p in points])
        index = rng.integers(len(points)) if d2.sum() <= 0 else int(rng.choice(len(points), p=d2 / d2.sum()))
        centres.append(points[index])
    for _ in range(iters):  # Lloyd
        members = [[] for _ in centres]
        for p in points:
            members[nearest(p, centres)].append(p)
        new = [[sum(column) / len(group) for column in zip(*group)] if group else c
               for group, c in zip(members, centres)]
        if new == centres:
            break
        centres = new
    return np.array(centres)


# --------------------------------------------------- images <-> tokens --

def image_tokens(images: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """Images (N, S, S) -> token ids (N, P): each patch's nearest codebook row."""
    patches = patchify(images)  # (N, P, p*p)
    return nearest_code(patches.reshape(-1, patches.shape[-1]), codebook).reshape(patches.shape[:2])


def reconstruct(tokens: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """Token ids (N, P) -> images (N, S, S) made of the codebook's patches."""
    return unpatchify(np.asarray(codebook)[np.asarray(tokens)])


def reconstruction_mse(images: np.ndarray, codebook: np.ndarray) -> float:
    """Mean squared pixel error of the images rebuilt from their tokens."""
    rebuilt = reconstruct(image_tokens(images, codebook), codebook)
    return float(np.mean((np.asarray(images, dtype=np.float64) - rebuilt) ** 2))
