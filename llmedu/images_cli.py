"""``llmedu images``: images as tokens, measured (lesson 08, ``08_frontiers``).

    llmedu images                      # the full run (~3 minutes on 2 cores): writes runs/images/
    llmedu images --quick --out DIR    # the small version the tests run

It makes training and held-out images from the seed, fits k-means codebooks
of several sizes on training patches and measures each one's reconstruction
error (MSE) on the held-out images, tokenizes every image with the chosen
codebook, trains a caption model on "image tokens then caption" rows with the
course's training loop, and captions the held-out images greedily. Writes
``DIR/images.json`` (accuracy per attribute and for the whole caption with
Wilson intervals and baselines, MSE against k, the settings) and
``DIR/images.png`` (held-out images, their reconstructions from tokens, and
the model's captions); the training run itself goes to ``DIR/run/``, replaced
at every run.
"""

from __future__ import annotations

import datetime
import json
import shutil
import sys
import time
from pathlib import Path

from llmedu.checkpoint import atomic_write, atomic_write_text

SETTINGS = {
    # images, held-out images, codebook size for the captions, codebook sizes measured, images k-means fits on, steps
    False: dict(n_train=4000, n_test=1000, k=32, k_sweep=[1, 4, 8, 16, 32, 64, 128], kmeans_images=1000, steps=2000),
    True: dict(n_train=600, n_test=200, k=16, k_sweep=[1, 4, 16], kmeans_images=300, steps=150),
}
VAL_FRACTION = 0.1  # of the training images, for train()'s validation loss
GRID = 8  # held-out images shown in the plot


def run_images(out, *, quick: bool = False, seed: int = 0, progress: bool = True, command: str = "") -> tuple:
    """Run the whole measurement into the folder ``out``: (what ``images.json`` holds, (images, rebuilt)).

    The images are the first ``GRID`` held-out ones (GRID, 16, 16), ``rebuilt``
    their reconstructions from tokens.
    """
    from llmedu import images as im, threads
    from llmedu.image_captions import (
        ImageVocab, baselines, caption_config, caption_corpus, greedy_captions, score_captions,
    )
    from llmedu.train import train

    s, out, began = SETTINGS[quick], Path(out), time.perf_counter()
    train_set, test_set = im.make_images(s["n_train"], [seed, 1]), im.make_images(s["n_test"], [seed, 2])
    points = im.patchify(train_set.images[:s["kmeans_images"]]).reshape(-1, im.PATCH * im.PATCH)  # (n, 16)
    sweep, codebooks = [], {}
    for k in s["k_sweep"]:
        codebook, history = im.kmeans(points, k, seed=seed)
        codebooks[k] = codebook
        sweep.append({"k": k, "mse_train": im.reconstruction_mse(train_set.images[:s["kmeans_images"]], codebook),
                      "mse_test": im.reconstruction_mse(test_set.images, codebook), "lloyd_iterations": len(history) - 1,
                      "objective_first": history[0], "objective_last": history[-1]})
    kmeans_s = time.perf_counter() - began
    k, vocab = s["k"], ImageVocab(s["k"])
    codebook = codebooks[k] if k in codebooks else im.kmeans(points, k, seed=seed)[0]
    tokens, test_tokens = im.image_tokens(train_set.images, codebook), im.image_tokens(test_set.images, codebook)
    cut = int(len(tokens) * (1 - VAL_FRACTION))
    texts = train_set.captions()
    corpus = caption_corpus((tokens[:cut], texts[:cut]), (tokens[cut:], texts[cut:]), vocab)
    shutil.rmtree(out / "run", ignore_errors=True)  # a fresh run each time: the figures are of this command
    config = caption_config(out / "run", corpus, steps=s["steps"], seed=seed,
                            description=f"images from seed {seed}: {cut} training rows, k={k}")
    result = train(config, corpus=corpus, progress=progress)
    predicted = greedy_captions(result.params, result.model_config, vocab, test_tokens)
    grid = test_set.images[:GRID], im.reconstruct(test_tokens[:GRID], codebook)
    return {
        "command": command or f"llmedu images{' --quick' if quick else ''} --seed {seed}",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"), "seed": seed, "quick": quick,
        "settings": {**s, "image_size": im.SIZE, "patch": im.PATCH, "patches_per_image": int(tokens.shape[1]),
                     "vocab_size": len(vocab), "train_rows": cut, "val_rows": len(tokens) - cut,
                     "attributes": {name: list(values) for name, values in im.ATTRIBUTES.items()},
                     "train_config": {name: getattr(config, name) for name in (
                         "dim", "n_layers", "n_heads", "hidden_dim", "seq_len", "batch_size", "max_iters", "lr",
                         "min_lr", "warmup_iters", "weight_decay")}},
        "codebook": sweep,
        "captions": {"held_out_images": len(test_set.labels), "accuracy": score_captions(predicted, test_set.labels),
                     "baselines": baselines(train_set.labels[:cut], test_set.labels),
                     "examples": [{"predicted": p, "true": t} for p, t in zip(predicted[:GRID], test_set.captions())]},
        "training": {"final_val_loss": result.evals[-1]["val_loss"], "evals": result.evals},
        "seconds": {"kmeans_sweep": round(kmeans_s, 1), "total": round(time.perf_counter() - began, 1)},
        "threads": threads.describe(),
    }, grid


def draw_grid(figure, images, rebuilt, predicted, true) -> None:
    """Held-out images (top row) over their reconstructions from tokens (bottom row), each titled by its caption.

    A caption in green is exactly right; in red, its wrong words are in capitals
    and the true caption is written under the reconstruction.
    """
    axes = figure.subplots(2, len(images))
    for column, (image, copy, said, truth) in enumerate(zip(images, rebuilt, predicted, true)):
        for row, picture in enumerate((image, copy)):
            ax = axes[row, column]
            ax.imshow(picture, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        marked = [w if w == t else w.upper() for w, t in zip(said.split(), truth.split())] + said.split()[8:]
        axes[0, column].set_title(_short(marked), fontsize=7, color="green" if said == truth else "red")
        if said != truth:
            axes[1, column].set_xlabel("true:\n" + _short(truth.split()), fontsize=7)
    axes[0, 0].set_ylabel("image", fontsize=8)
    axes[1, 0].set_ylabel("from tokens", fontsize=8)


def _short(words: list) -> str:
    """A caption's words without "a" and "at the", on two lines: size shade shape / place."""
    words = words[1:4] + words[6:]
    return " ".join(words[:3]) + "\n" + " ".join(words[3:])


def save_grid(path, results: dict, images, rebuilt) -> None:
    """``draw_grid`` for the results' example captions, saved as a PNG (written atomically)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(1.3 * len(images), 3.2))
    examples = results["captions"]["examples"]
    draw_grid(figure, images, rebuilt, [e["predicted"] for e in examples], [e["true"] for e in examples])
    k, accuracy = results["settings"]["k"], results["captions"]["accuracy"]["caption"]["accuracy"]
    figure.suptitle(f"held-out images, rebuilt from {results['settings']['patches_per_image']} tokens (k={k}); "
                    f"whole captions right: {accuracy:.0%}", fontsize=8)
    figure.tight_layout()
    atomic_write(path, lambda f: figure.savefig(f, dpi=100, format="png"))


def run_command(args) -> int:
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        print(f"llmedu images: cannot write to {out}: {err.strerror}", file=sys.stderr)
        return 2
    from llmedu.threads import pinned

    command = pinned("llmedu images" + (" --quick" if args.quick else "") + f" --seed {args.seed}")
    results, (images, rebuilt) = run_images(out, quick=args.quick, seed=args.seed, progress=not args.no_progress,
                                            command=command)
    atomic_write_text(out / "images.json", json.dumps(results, indent=1) + "\n")
    save_grid(out / "images.png", results, images, rebuilt)
    accuracy = results["captions"]["accuracy"]
    print(f"{out / 'images.json'}, {out / 'images.png'}: whole captions right on "
          f"{accuracy['caption']['correct']} of {accuracy['caption']['n']} held-out images "
          f"(majority baseline {results['captions']['baselines']['caption']['majority_accuracy']:.1%}); "
          + ", ".join(f"{name} {accuracy[name]['accuracy']:.1%}" for name in ("shape", "size", "shade", "place")))
    return 0


def add_parser(commands) -> None:
    images = commands.add_parser("images", help="images as tokens (lesson 08): a k-means codebook and a caption model")
    images.add_argument("--quick", action="store_true", help="the small version (what the tests run)")
    images.add_argument("--out", default="runs/images", help="folder to write into (default runs/images)")
    images.add_argument("--seed", type=int, default=0, help="seed of the images, the codebook and training (default 0)")
    images.add_argument("--no-progress", action="store_true", help="no progress bar")
    images.set_defaults(handler=run_command)
