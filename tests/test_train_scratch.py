"""The CNN designed from scratch: its export contract, a short real training run, resuming, the search."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("keras_tuner")

from dogtag.edge_app.model_file import parse_model_info  # noqa: E402
from dogtag.train.batches import training_batches  # noqa: E402
from dogtag.train.checkpoints import RunMismatch  # noqa: E402
from dogtag.train.mixing import mix_batch  # noqa: E402
from dogtag.train.preprocess import Augmentation  # noqa: E402
from dogtag.train.scratch import run_scratch, train_model  # noqa: E402
from dogtag.train.scratch_network import build_model, trained_network, warm_start, with_flip_tta  # noqa: E402
from dogtag.train.scratch_params import BLOCK_TYPES, ScratchParams  # noqa: E402
from dogtag.train.search import SearchSpace, read_trials, run_search  # noqa: E402
from tests.fakes import make_mini_stanford_dogs  # noqa: E402

# Small enough to train in seconds on a CPU, big enough to be the real code path.
TINY = ScratchParams(size=32, filters=(8, 16), depth=1, dense_units=16, dropout=0.1, batch_size=16, epochs=8,
                     warmup_epochs=1, learning_rate=3e-3, patience=10)


@pytest.fixture(scope="module")
def colour_breeds(tmp_path_factory):
    """3 breeds told apart by colour: 30 training and 10 test photos each (chance is 33%)."""
    root = tmp_path_factory.mktemp("data") / "stanford-dogs"
    return make_mini_stanford_dogs(root, breeds=3, train_per_breed=30, test_per_breed=10, image_size=32)


@pytest.fixture(scope="module")
def trained_run(colour_breeds, tmp_path_factory):
    """One short scratch training run on the colour-coded breeds: (run folder, metrics)."""
    folder = tmp_path_factory.mktemp("runs")
    metrics = run_scratch(colour_breeds, folder / "scratch", TINY, cache_root=folder / "cache", log=lambda _: None)
    return folder / "scratch", metrics


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


@pytest.mark.parametrize("block", BLOCK_TYPES)
def test_every_block_type_builds_a_model_taking_raw_pixels_with_a_breeds_softmax_and_no_lambda(block):
    params = replace(TINY, block=block, depth=2)
    model = build_model(params, classes=5)
    assert model.input_shape == (None, 32, 32, 3) and model.inputs[0].dtype == "float32"
    assert model.layers[-1].name == "breeds" and model.outputs[0] is model.get_layer("breeds").output
    assert model.get_layer("breeds").activation.__name__ == "softmax"
    assert model.layers[1].__class__.__name__ == "Rescaling"  # pixels [0, 255] are scaled inside the model
    assert not [layer.name for layer in _all_layers(model) if isinstance(layer, keras.layers.Lambda)]
    pixels = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    probabilities = np.asarray(model(pixels, training=False))
    assert probabilities.shape == (4, 5)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_training_on_colour_coded_breeds_beats_chance_by_a_wide_margin(trained_run):
    _, metrics = trained_run
    assert metrics["top1"] >= 0.9  # chance is 0.33
    assert metrics["test_images"] == 30 and metrics["epochs_done"] >= 1
    assert metrics["approach"].startswith("scratch")
    assert metrics["timings"]["training_seconds"] > 0 and metrics["timings"]["inference_ms_per_image"] > 0


def test_the_run_folder_holds_the_record_and_a_model_that_export_can_read(trained_run):
    folder, metrics = trained_run
    for name in ("config.json", "metrics.json", "history.json", "learning_curves.png", "confusion.png",
                 "most_confused.md", "model.keras", "model_info.json"):
        assert (folder / name).is_file(), name
    recorded = json.loads((folder / "metrics.json").read_text())
    assert recorded["top1"] == metrics["top1"] and "top5" in recorded
    info = parse_model_info((folder / "model_info.json").read_text())
    assert info.labels == ("Chihuahua", "Japanese spaniel", "Maltese dog")
    assert info.input_size == (32, 32) and info.resize == "squash"
    assert info.breeds_output == "breeds" and info.dog_output is None
    reloaded = keras.models.load_model(folder / "model.keras")  # no custom objects needed
    pixels = np.full((1, 32, 32, 3), 255.0, dtype="float32")
    pixels[..., 1:] = 40.0  # the red of the first breed
    assert reloaded.get_layer("breeds") is not None
    assert int(np.argmax(reloaded.predict(pixels, verbose=0))) == 0


def test_a_training_stopped_by_its_time_limit_resumes_from_its_checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.arange(48) % 3
    images = (rng.uniform(0, 255, (48, 32, 32, 3)) * 0.3 + np.eye(3)[labels][:, None, None, :] * 170).astype("uint8")
    params = replace(TINY, epochs=2)
    _, state = train_model(params, images, labels, images[:6], labels[:6], 3, tmp_path, time_limit_s=0,
                           log=lambda _: None)
    assert state["epoch"] == 1 and state["stopped"] == "time limit"
    assert (tmp_path / "last.keras").is_file() and (tmp_path / "best.weights.h5").is_file()
    lines = []
    _, state = train_model(params, images, labels, images[:6], labels[:6], 3, tmp_path, log=lines.append)
    assert lines[0].startswith("resuming") and "after epoch 1" in lines[0]
    assert state["epoch"] == 2 and state["stopped"] is None and len(state["history"]["loss"]) == 2


def test_a_run_finished_in_two_sittings_counts_the_training_time_of_both(colour_breeds, tmp_path):
    params = replace(TINY, epochs=2)
    first = run_scratch(colour_breeds, tmp_path / "run", params, cache_root=tmp_path / "cache", time_limit_s=0,
                        log=lambda _: None)
    assert first["epochs_done"] == 1 and first["stopped"] == "time limit"
    started = time.perf_counter()
    second = run_scratch(colour_breeds, tmp_path / "run", params, cache_root=tmp_path / "cache", log=lambda _: None)
    second_sitting = time.perf_counter() - started
    assert second["epochs_done"] == 2
    timings = second["timings"]
    assert timings["training_seconds"] > first["timings"]["training_seconds"]
    # What the report shows: the training of both sittings, plus this sitting's caching and evaluation.
    assert timings["training_seconds"] <= timings["total_seconds"] < timings["training_seconds"] + second_sitting


def test_the_search_runs_its_trials_logs_each_one_and_saves_the_best_configuration(colour_breeds, tmp_path):
    space = SearchSpace(sizes=(32,), blocks=("vgg", "separable"), base_filters=(8,), stages=(2,), depths=(1,),
                        dense_units=(0, 16))
    result = run_search(colour_breeds, tmp_path / "search", trials=2, search_epochs=2, final_epochs=0,
                        space=space, base=replace(TINY, augmentation=Augmentation.off()),
                        cache_root=tmp_path / "cache", log=lambda _: None)
    trials = read_trials(tmp_path / "search" / "trials.jsonl")
    assert len(trials) == 2 and len(result["trials"]) == 2 and result["best_run"] is None
    assert all(t["epochs"] == 2 and 0.0 <= t["val_top1"] <= 1.0 for t in trials)
    table = (tmp_path / "search" / "trials.md").read_text().splitlines()
    assert len(table) == 2 + 2 and all(t["trial"] in "".join(table) for t in trials)
    assert "(chosen)" in table[2]  # the best trial, first row, is the one trained further
    best = ScratchParams.from_dict(json.loads((tmp_path / "search" / "best_params.json").read_text()))
    assert best.size == 32 and best.block in ("vgg", "separable") and best.filters == (8, 16)


def test_unknown_or_invalid_hyperparameters_are_refused_with_their_names():
    with pytest.raises(ValueError, match="blcok"):
        ScratchParams.from_dict({"blcok": "vgg"})
    with pytest.raises(ValueError, match="block must be one of"):
        ScratchParams(block="inception")
    with pytest.raises(ValueError, match="Beta alphas"):
        ScratchParams(cutmix=-1.0)
    with pytest.raises(ValueError, match="Beta alphas"):
        ScratchParams(mixup=float("nan"))
    assert ScratchParams.from_dict(TINY.to_dict()) == TINY


def test_a_model_for_a_few_breeds_can_start_from_one_trained_on_more_breeds_except_for_its_head(tmp_path):
    many = build_model(TINY, classes=5)
    many.save(tmp_path / "many.keras")
    few = build_model(TINY, classes=3)
    copied = warm_start(few, tmp_path / "many.keras", log=lambda _: None)
    assert copied == sum(1 for layer in few.layers if layer.weights) - 1  # every layer but "breeds"
    np.testing.assert_array_equal(few.get_layer("stem_conv").get_weights()[0],
                                  many.get_layer("stem_conv").get_weights()[0])
    assert few.get_layer("breeds").get_weights()[0].shape[-1] == 3
    with_flip_tta(many).save(tmp_path / "many-flip-tta.keras")  # a shipped flip-TTA model is a donor too
    assert warm_start(build_model(TINY, classes=3), tmp_path / "many-flip-tta.keras", log=lambda _: None) == copied
    with pytest.raises(ValueError, match="not the same architecture"):
        warm_start(build_model(replace(TINY, dense_units=32), classes=3), tmp_path / "many.keras", log=lambda _: None)


def test_with_flip_tta_the_shipped_model_averages_the_photo_and_its_mirror(colour_breeds, tmp_path):
    params = replace(TINY, epochs=3, flip_tta=True)
    metrics = run_scratch(colour_breeds, tmp_path / "run", params, cache_root=tmp_path / "cache", log=lambda _: None)
    assert metrics["flip_tta"] is True and metrics["approach"].endswith("+ flip TTA")
    info = parse_model_info((tmp_path / "run" / "model_info.json").read_text())
    assert info.extra["flip_tta"] is True and info.breeds_output == "breeds"

    model = keras.models.load_model(tmp_path / "run" / "model.keras")  # MirrorImage is registered by train.scratch
    assert model.output_names == ["breeds"] and model.input_shape == (None, 32, 32, 3)
    pixels = np.random.default_rng(1).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    pixels[:, :, :16, 0] = 0.0  # a left half unlike the right, so the mirror is another photo
    network = trained_network(model)
    expected = (np.asarray(network(pixels)) + np.asarray(network(pixels[:, :, ::-1]))) / 2
    np.testing.assert_allclose(model.predict(pixels, verbose=0), expected, atol=1e-6)
    np.testing.assert_allclose(model.predict(pixels[:, :, ::-1], verbose=0), expected, atol=1e-6)
    assert not np.allclose(np.asarray(network(pixels)), expected, atol=1e-4)  # the mirror did change the answer


def test_a_finished_run_can_be_re_evaluated_with_flip_tta_but_not_resumed_with_other_hyperparameters(
        colour_breeds, tmp_path):
    donor = build_model(TINY, classes=5)
    donor.save(tmp_path / "donor.keras")
    params, run = replace(TINY, epochs=2), tmp_path / "run"
    plain = run_scratch(colour_breeds, run, params, cache_root=tmp_path / "cache", init_from=tmp_path / "donor.keras",
                        log=lambda _: None)
    lines = []
    again = run_scratch(colour_breeds, run, replace(params, flip_tta=True), cache_root=tmp_path / "cache",
                        log=lines.append)
    assert not any(line.startswith("epoch") for line in lines)  # nothing trained again
    assert again["flip_tta"] is True and again["epochs_done"] == plain["epochs_done"] == 2
    assert again["timings"]["training_seconds"] == plain["timings"]["training_seconds"]
    # Where the run came from stays in its record, although the second command did not repeat it.
    assert again["approach"] == "scratch CNN (residual) warm-started + flip TTA"
    assert json.loads((run / "config.json").read_text())["init_from"] == str(tmp_path / "donor.keras")

    with pytest.raises(RunMismatch, match="other values of dense_units, dropout.*--init-from"):
        run_scratch(colour_breeds, run, replace(params, dropout=0.5, dense_units=32),
                    cache_root=tmp_path / "cache", log=lambda _: None)
    with pytest.raises(RunMismatch, match="other values of epochs"):  # the schedule lives in the saved optimizer
        run_scratch(colour_breeds, run, replace(params, epochs=4), cache_root=tmp_path / "cache", log=lambda _: None)
    # A record written before a hyperparameter existed means that hyperparameter's default.
    recorded = json.loads((run / "checkpoints" / "params.json").read_text())
    del recorded["head_only"]
    (run / "checkpoints" / "params.json").write_text(json.dumps(recorded))
    assert run_scratch(colour_breeds, run, params, cache_root=tmp_path / "cache", log=lambda _: None)["top1"] > 0


def test_a_run_folder_being_trained_by_another_process_is_refused(tmp_path):
    fcntl = pytest.importorskip("fcntl")  # POSIX advisory locks; Windows has no guard

    images, labels = np.zeros((8, 32, 32, 3), dtype="uint8"), np.arange(8) % 2
    (tmp_path / "checkpoints").mkdir()
    with open(tmp_path / "checkpoints" / "lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(RunMismatch, match="being trained by another process"):
            train_model(TINY, images, labels, images, labels, 2, tmp_path / "checkpoints", log=lambda _: None)
    assert not (tmp_path / "checkpoints" / "last.keras").exists()


def test_head_only_trains_the_breeds_layer_alone_on_a_warm_started_network(colour_breeds, tmp_path):
    donor = build_model(TINY, classes=5)
    donor.save(tmp_path / "donor.keras")
    params = replace(TINY, epochs=2, head_only=True)
    with pytest.raises(RunMismatch, match="init_from"):
        run_scratch(colour_breeds, tmp_path / "cold", params, cache_root=tmp_path / "cache", log=lambda _: None)
    first = run_scratch(colour_breeds, tmp_path / "run", params, cache_root=tmp_path / "cache", time_limit_s=0,
                        init_from=tmp_path / "donor.keras", log=lambda _: None)
    assert first["epochs_done"] == 1
    head_after_one_epoch = keras.models.load_model(tmp_path / "run" / "checkpoints" / "last.keras").get_layer("breeds")
    metrics = run_scratch(colour_breeds, tmp_path / "run", params, cache_root=tmp_path / "cache", log=lambda _: None)
    assert metrics["epochs_done"] == 2 and metrics["approach"].endswith("warm-started, head only")

    trained = keras.models.load_model(tmp_path / "run" / "checkpoints" / "last.keras")
    assert [layer.name for layer in trained.layers if layer.trainable_weights] == ["breeds"]
    for layer in donor.layers:  # still the donor's, batch-norm statistics included, after a resume
        if layer.weights and layer.name != "breeds":
            for before, after in zip(layer.get_weights(), trained.get_layer(layer.name).get_weights(), strict=True):
                np.testing.assert_array_equal(after, before, err_msg=layer.name)
    # The head went on learning in the second sitting.
    assert not np.allclose(trained.get_layer("breeds").get_weights()[0], head_after_one_epoch.get_weights()[0])


def _black_and_white_batch():
    """Four flat photos, black, white, black, white, each its own breed: the reversed batch pairs
    every black photo with a white one, so a pixel's value tells which photo it came from."""
    import tensorflow as tf

    tf.random.set_seed(7)  # the draws are random: a fixed seed keeps these tests from flaking
    pixels = np.stack([np.full((16, 16, 3), value, "float32") for value in (0.0, 255.0, 0.0, 255.0)])
    return tf.constant(pixels), tf.one_hot([0, 1, 2, 3], 4)


@pytest.mark.parametrize(("mixup", "cutmix"), [(0.4, 0.0), (0.0, 1.0), (0.4, 1.0)])
def test_mixup_and_cutmix_blend_each_label_in_the_share_its_photo_has_in_the_pixels(mixup, cutmix):
    x, y = _black_and_white_batch()
    shares, kinds = [], set()
    for _ in range(30):
        mixed_x, mixed_y = (t.numpy() for t in mix_batch(x, y, mixup, cutmix))
        from_partner = np.where(x.numpy()[:, :1, :1, :1] == 0, mixed_x, 255 - mixed_x).mean(axis=(1, 2, 3)) / 255
        partner_weight = mixed_y[np.arange(4), [3, 2, 1, 0]]
        np.testing.assert_allclose(partner_weight, from_partner, atol=1e-5)
        np.testing.assert_allclose(mixed_y[np.arange(4), [0, 1, 2, 3]], 1 - partner_weight, atol=1e-5)
        np.testing.assert_allclose(mixed_y.sum(axis=1), 1.0, atol=1e-6)
        shares.append(round(float(partner_weight[0]), 4))
        if 0 < partner_weight[0] < 1:
            kinds.add("pasted" if set(np.unique(mixed_x)) <= {0.0, 255.0} else "blended")
    assert len(set(shares)) > 10 and max(shares) > 0.1  # a new share each batch, and a real one
    expected = ({"blended"} if mixup else set()) | ({"pasted"} if cutmix else set())
    assert kinds == expected  # with both on, a coin picks each batch's method


def test_cutmix_pastes_one_box_clipped_at_the_border_and_mixup_blends_every_pixel_alike():
    x, y = _black_and_white_batch()
    boxes = []
    for _ in range(30):
        pasted = mix_batch(x, y, 0.0, 1.0)[0].numpy()[0, :, :, 0] > 0  # the white partner's pixels
        rows, columns = np.nonzero(pasted)
        if len(rows):
            top, bottom, left, right = rows.min(), rows.max() + 1, columns.min(), columns.max() + 1
            assert pasted[top:bottom, left:right].all() and pasted.sum() == (bottom - top) * (right - left)
            boxes.append((top, bottom, left, right))
        blended = mix_batch(x, y, 0.4, 0.0)[0].numpy()[0]
        assert np.ptp(blended) == 0
    assert len(boxes) > 20
    # boxes land anywhere, and some are cut by a border: a small box touching the edge
    assert any(bottom - top <= 8 and (top == 0 or bottom == 16) or right - left <= 8 and (left == 0 or right == 16)
               for top, bottom, left, right in boxes)
    assert any(top > 0 and left > 0 and bottom < 16 and right < 16 for top, bottom, left, right in boxes)


@pytest.mark.parametrize(("mixup", "cutmix"), [(0.4, 0.0), (0.0, 1.0)])
def test_without_mixing_training_batches_keep_one_hot_labels_and_with_it_they_are_mixed(mixup, cutmix):
    images = np.random.default_rng(0).integers(0, 255, (64, 16, 16, 3)).astype("uint8")
    labels = np.arange(64) % 4
    plain = next(iter(training_batches(images, labels, 4, 32, Augmentation.off())))[1].numpy()
    assert set(np.unique(plain)) == {0.0, 1.0}
    mixed = [batch[1].numpy() for _ in range(3)
             for batch in training_batches(images, labels, 4, 32, Augmentation.off(), mixup=mixup, cutmix=cutmix)]
    assert any(len(np.unique(batch)) > 2 for batch in mixed)
    np.testing.assert_allclose(np.concatenate(mixed).sum(axis=1), 1.0, atol=1e-6)


def test_the_train_command_turns_mixing_off_with_no_augment(colour_breeds, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from dogtag.cli import main

    given = []
    monkeypatch.setattr("dogtag.train.scratch.run_scratch", lambda data, run, params, *a, **k: given.append(params) or {
        "top1": 0.0, "top5": 0.0, "epochs_done": 0, "epochs_planned": 0, "stopped": "test"})
    for flag in ("--augment", "--no-augment"):
        result = CliRunner().invoke(main, ["train", "scratch", "--data", str(colour_breeds), "--run",
                                           str(tmp_path / "run"), "--set", "mixup=0.4", "--set", "cutmix=1.0", flag])
        assert result.exit_code == 0, result.output
    assert (given[0].mixup, given[0].cutmix, given[0].augmentation.enabled) == (0.4, 1.0, True)
    assert (given[1].mixup, given[1].cutmix, given[1].augmentation.enabled) == (0.0, 0.0, False)

def test_a_short_training_with_cutmix_and_mixup_still_learns_the_colour_coded_breeds(colour_breeds, tmp_path):
    params = replace(TINY, epochs=10, mixup=0.2, cutmix=1.0)
    metrics = run_scratch(colour_breeds, tmp_path / "run", params, cache_root=tmp_path / "cache", log=lambda _: None)
    assert metrics["top1"] >= 0.8  # chance is 33%
    assert json.loads((tmp_path / "run" / "config.json").read_text())["params"]["cutmix"] == 1.0
