"""Check for lesson 08 (``08_frontiers``), images as tokens: 8.5, each patch's nearest codebook token.

Reference: :func:`llmedu.images.nearest_code`. The cases are built so that
each typical mistake gives a different answer somewhere: the largest dot
product instead of the smallest distance (a long codebook row wins), the
minimum over the wrong axis (one answer per code instead of per patch),
the L1 distance instead of the squared one, and ties not going to the lowest
index (two equal rows, or two rows at the same distance).
"""

from __future__ import annotations

import numpy as np

from llmedu.checks.framework import Shown, exercise
from llmedu.images import make_images, nearest_code as reference, patchify

# (patches, codebook, why a wrong answer here is wrong)
_CASES = [
    (np.array([[1.0, 1.0], [4.0, 5.0], [0.2, 0.1]]), np.array([[1.0, 1.0], [5.0, 5.0]]),
     "the nearest code has the smallest squared distance sum((patch - code)^2); the largest dot product patch . code "
     "favours long codebook rows ([1, 1] . [5, 5] beats [1, 1] . [1, 1])"),
    (np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0], [0.1, 0.2]]), np.array([[1.0, 1.0], [0.0, 1.8], [3.0, 0.5]]),
     "distance means the squared (Euclidean) one: [0, 0] is 2 from [1, 1] and 3.24 from [0, 1.8] squared, though "
     "its L1 distances are 2 and 1.8"),
    (np.array([[0.0, 0.0], [2.0, 2.0]]), np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [2.0, 2.0]]),
     "two codebook rows are equal: a tie goes to the lower index (np.argmin takes the first minimum)"),
    (np.array([[0.0, 0.0], [1.0, 1.0], [-1.0, 0.0]]), np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]),
     "[0, 0] is at distance 1 from all three codes, [1, 1] from the first two: a tie goes to the lowest index"),
    (np.array([[0.5, 0.5, 0.5]]), np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.5, 0.5, 0.4]]),
     "one patch gives one token: the result has shape (1,)"),
]


def _image_case():
    """Real 4x4 patches of two generated images against 12 of their own patches, perturbed: (32, 16), (12, 16)."""
    patches = patchify(make_images(2, seed=5).images).reshape(-1, 16).astype(np.float64)
    rng = np.random.default_rng(5)
    codebook = patches[rng.choice(len(patches), 12, replace=False)] + 0.05 * rng.standard_normal((12, 16))
    return patches, codebook


@exercise("8.5", "each patch's nearest codebook token")
def nearest_code(learner) -> int:
    patches, codebook = _image_case()
    cases = _CASES + [(patches, codebook, "")]
    for index, (points, codes, why) in enumerate(cases):
        shown = (points, codes) if index < len(_CASES) else (Shown("32 patches (32, 16) of two generated images"),
                                                            Shown("a codebook (12, 16)"))
        expected = reference(points, codes)
        got = learner.call(points.copy(), codes.copy(), shown=shown)
        array = np.asarray(got)
        if array.shape != expected.shape:
            learner.fail(shown, expected, got, f"return one token per patch: shape {expected.shape} (n,), got "
                                               f"shape {array.shape}; take the minimum over the codes' axis")
        if not np.issubdtype(array.dtype, np.integer):
            learner.fail(shown, expected, got, f"tokens are integer indices into the codebook, got dtype {array.dtype}")
        if not np.array_equal(array, expected):
            learner.fail(shown, expected, got, why or "each patch's token is the index of the codebook row at the "
                                                      "smallest squared distance from it")
    return len(cases)
