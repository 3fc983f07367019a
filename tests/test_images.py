"""Specifications of images as tokens (lesson 08): generated images, patches, the k-means codebook, the caption model."""

import argparse
import json

import numpy as np
import pytest

from llmedu import images as im
from llmedu.image_captions import CAPTION, END, ImageVocab, caption_corpus, example_row, score_captions
from llmedu.images_cli import add_parser
from llmedu.threads import pinned


def test_images_are_the_same_for_the_same_seed_and_differ_for_another():
    a, b, c = im.make_images(12, 3), im.make_images(12, 3), im.make_images(12, 4)
    assert np.array_equal(a.images, b.images) and a.labels == b.labels
    assert not np.array_equal(a.images, c.images)
    assert a.images.shape == (12, 16, 16) and a.images.dtype == np.float32
    assert a.images.min() >= 0 and a.images.max() <= 1


def test_every_caption_states_its_image_attributes_and_reads_back():
    labels = im.make_images(50, 0).labels
    assert all(im.parse_caption(im.caption(label)) == label for label in labels)
    assert im.caption(labels[0]).startswith("a ") and len(im.caption(labels[0]).split()) == 8
    for broken in ("a small bright circle at the top", "a huge bright circle at the top left", "<|img_3|>", ""):
        assert im.parse_caption(broken) is None


def test_a_shape_is_drawn_in_its_corner():
    picture = im.draw({"shape": "square", "size": "small", "shade": "bright", "place": "bottom right"})
    assert picture[8:, 8:].sum() > 0 and picture[:8].sum() == 0 and picture[:, :8].sum() == 0


def test_patches_tile_the_image_in_reading_order_and_reassemble_it():
    images = im.make_images(3, 1).images
    patches = im.patchify(images)
    assert patches.shape == (3, 16, 16)
    assert np.array_equal(patches[1, 0], images[1, :4, :4].ravel())
    assert np.array_equal(patches[1, 1], images[1, :4, 4:8].ravel())
    assert np.array_equal(patches[1, 4], images[1, 4:8, :4].ravel())
    assert np.array_equal(im.unpatchify(patches), images)


def test_patchify_names_a_size_the_patches_cannot_tile():
    with pytest.raises(ValueError, match="multiples of the patch side"):
        im.patchify(np.zeros((1, 10, 16)))


def test_nearest_code_uses_the_squared_distance_and_breaks_ties_to_the_lowest_index():
    codebook = np.array([[1.0, 1.0], [5.0, 5.0], [0.0, 0.0], [0.0, 0.0]])
    assert im.nearest_code(np.array([[1.0, 1.0], [0.1, 0.0], [4.0, 4.0]]), codebook).tolist() == [0, 2, 1]
    assert im.nearest_code(np.array([[0.5, 0.5]]), np.array([[0.0, 0.0], [1.0, 1.0]])).tolist() == [0]


def test_nearest_code_gives_the_same_tokens_in_chunks():
    points = im.patchify(im.make_images(10, 2).images).reshape(-1, 16)
    codebook = points[:7]
    assert np.array_equal(im.nearest_code(points, codebook, chunk=3), im.nearest_code(points, codebook))


def test_kmeans_never_increases_its_objective():
    points = im.patchify(im.make_images(40, 5).images).reshape(-1, 16)
    _, history = im.kmeans(points, 12, seed=1, iters=15)
    assert len(history) > 2
    assert all(after <= before + 1e-12 for before, after in zip(history, history[1:]))
    assert history[-1] < history[0]


def test_kmeans_equals_the_readable_reference_on_a_small_case():
    points = im.patchify(im.make_images(4, 6).images).reshape(-1, 16)  # 64 patches
    fast, _ = im.kmeans(points, 5, seed=2, iters=10)
    np.testing.assert_allclose(fast, im.kmeans_reference(points, 5, seed=2, iters=10), atol=1e-6)


def test_kmeans_with_as_many_codes_as_distinct_points_reconstructs_them_exactly():
    points = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    codebook, history = im.kmeans(np.repeat(points, 3, axis=0), 4, seed=0)
    assert history[-1] == 0 and sorted(map(tuple, codebook.tolist())) == sorted(map(tuple, points.tolist()))


def test_tokens_rebuild_an_image_whose_patches_are_in_the_codebook():
    image = im.make_images(1, 7).images
    codebook = im.patchify(image)[0]  # (16, 16): the image's own patches
    tokens = im.image_tokens(image, codebook)
    assert tokens.shape == (1, 16) and np.array_equal(im.reconstruct(tokens, codebook), image)


def test_a_bigger_codebook_rebuilds_held_out_images_better():
    points = im.patchify(im.make_images(100, 8).images).reshape(-1, 16)
    held_out = im.make_images(30, 9).images
    errors = [im.reconstruction_mse(held_out, im.kmeans(points, k, seed=0)[0]) for k in (1, 4, 16)]
    assert errors[0] > errors[1] > errors[2]


def test_a_row_is_image_tokens_then_the_caption_and_only_the_caption_counts():
    vocab = ImageVocab(8)
    ids, mask = example_row([3, 7], "a small bright circle at the top left", vocab)
    assert vocab.decode(ids) == ["<|img_3|>", "<|img_7|>", CAPTION, "a", "small", "bright", "circle", "at", "the",
                                 "top", "left", END]
    assert mask == [0, 0, 0] + [1] * 9
    assert len(vocab) == 8 + 2 + len(set(" ".join(im.caption(l) for l in im.make_images(200, 0).labels).split()))


def test_the_vocabulary_names_a_token_it_does_not_know():
    with pytest.raises(ValueError, match="'huge' is not in the image vocabulary"):
        ImageVocab(4).encode(["a", "huge"])
    with pytest.raises(ValueError, match=r"image token ids must lie in \[0, 4\)"):
        example_row([4], "a small bright circle at the top left", ImageVocab(4))


def test_the_corpus_batches_mask_everything_but_the_caption():
    images = im.make_images(10, 0)
    tokens = np.arange(10 * 16).reshape(10, 16) % 8
    corpus = caption_corpus((tokens[:8], images.captions()[:8]), (tokens[8:], images.captions()[8:]), ImageVocab(8))
    x, y, mask = corpus.batch("train", 4, 25, np.random.default_rng(0))  # rows of 26: x and y are 25
    assert x.shape == y.shape == mask.shape == (4, 25)
    assert (mask[:, :16] == 0).all() and (mask[:, 16:] == 1).all()  # y[:, 16] is the caption's first word


def test_captions_are_scored_exactly_per_attribute_and_whole():
    labels = [{"shape": "circle", "size": "small", "shade": "dim", "place": "top left"}] * 2
    scores = score_captions(["a small dim circle at the top left", "a large dim circle at the top"], labels)
    assert scores["caption"]["correct"] == 1
    assert scores["shape"]["correct"] == 1  # the second caption does not parse: every attribute counts as wrong
    assert 0 < scores["caption"]["wilson_95"][0] < 0.5 < scores["caption"]["wilson_95"][1]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("images")
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["images", "--quick", "--out", str(out), "--seed", "3", "--no-progress"])
    assert args.handler(args) == 0
    return out


def test_quick_run_writes_its_results_and_the_grid(quick_run):
    results = json.loads((quick_run / "images.json").read_text())
    assert results["seed"] == 3 and results["quick"] and results["command"] == pinned("llmedu images --quick --seed 3")
    assert [row["k"] for row in results["codebook"]] == results["settings"]["k_sweep"]
    errors = [row["mse_test"] for row in results["codebook"]]
    assert errors == sorted(errors, reverse=True)
    assert (quick_run / "images.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quick_run_captions_held_out_images_above_chance(quick_run):
    captions = json.loads((quick_run / "images.json").read_text())["captions"]
    for name, score in captions["accuracy"].items():
        baseline = captions["baselines"][name]
        assert score["wilson_95"][0] > max(baseline["chance"], baseline["majority_accuracy"]), name


# train(corpus=...): the training loop's hook for ready-made rows ----------------------------------------

def _tiny_corpus(seed):
    pictures = im.make_images(40, seed)
    tokens = np.arange(40 * 16).reshape(40, 16) % 4
    texts = pictures.captions()
    return caption_corpus((tokens[:32], texts[:32]), (tokens[32:], texts[32:]), ImageVocab(4))


def _tiny_config(out, corpus):
    from llmedu.image_captions import caption_config

    return caption_config(out, corpus, steps=6, seed=0, description="40 tiny rows", dim=16, n_layers=1, batch_size=4)


def test_train_on_a_given_corpus_saves_its_vocabulary_and_resumes_from_it(tmp_path):
    from llmedu.checkpoint import load_params
    from llmedu.train import train

    corpus = _tiny_corpus(0)
    config = _tiny_config(tmp_path / "run", corpus)
    done = train(config, corpus=corpus, progress=False)
    _, _, metadata = load_params(tmp_path / "run" / "model.safetensors")
    assert metadata["tokenizer"] == corpus.tokenizer.to_text() and done.model_config.vocab_size == len(corpus.tokenizer)
    again = train(config, corpus=corpus, progress=False, resume=True)  # finished: loads the state, trains nothing
    assert again.step == 6 and all(np.array_equal(again.params[n], done.params[n]) for n in done.params)
    with pytest.raises(ValueError, match="differs from what the run started with"):
        train(config, corpus=_tiny_corpus(1), progress=False, resume=True)


def test_train_refuses_a_given_corpus_with_a_task_that_reads_its_own_data(tmp_path):
    from dataclasses import replace

    from llmedu.train import train

    corpus = _tiny_corpus(0)
    config = replace(_tiny_config(tmp_path / "run", corpus), task="sft", init_from="base.safetensors")
    with pytest.raises(ValueError, match="a given corpus brings its own tokenizer and data"):
        train(config, corpus=corpus, progress=False)
    assert not (tmp_path / "run").exists()


def test_the_grid_writes_the_true_caption_under_a_wrong_one_only():
    from matplotlib.figure import Figure

    from llmedu.images_cli import draw_grid

    images = im.make_images(2, 0)
    truth = images.captions()
    wrong = truth[1].replace("top", "bottom") if "top" in truth[1] else truth[1].replace("bottom", "top")
    figure = Figure()
    draw_grid(figure, images.images, images.images, [truth[0], wrong], truth)
    right_axes, wrong_axes = figure.axes[2], figure.axes[3]  # the bottom row: column 0, column 1
    assert right_axes.get_xlabel() == ""
    words = truth[1].split()
    assert wrong_axes.get_xlabel() == "true:\n" + " ".join(words[1:4]) + "\n" + " ".join(words[6:])
