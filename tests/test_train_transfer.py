"""Transfer learning from cached features, end to end on a miniature Stanford Dogs tree.

No ImageNet weights exist offline for ResNet50 (and tests must not need ../shared), so these runs
use random weights (saved once, loaded by path): they check the code path, not the accuracy.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from dogtag.edge_app.model_file import parse_model_info  # noqa: E402
from dogtag.train import backbones  # noqa: E402
from dogtag.train.dataset import read_official  # noqa: E402
from dogtag.train.features import cache_dir, cache_features, feature_extractor, load_features  # noqa: E402
from dogtag.train.pipeline import image_dataset  # noqa: E402
from dogtag.train.preprocess import Preprocessing  # noqa: E402
from dogtag.train.transfer_config import TransferConfig  # noqa: E402
from dogtag.train.transfer_run import run_transfer  # noqa: E402

SIZE = 32


@pytest.fixture
def offline_class_index(monkeypatch):
    """ImageNet's class index without a download: the mini tree's breeds at dog-class indices."""
    from tests.fakes import BREED_FOLDERS

    index = {151 + i: (folder.split("-")[0], folder.split("-", 1)[1]) for i, folder in enumerate(BREED_FOLDERS)}
    monkeypatch.setattr(backbones, "imagenet_class_index", lambda: index)


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    """One set of random backbone weights per backbone, saved once so that every build shares it."""
    folder = tmp_path_factory.mktemp("weights")

    def weights_of(backbone: str) -> str:
        path = folder / f"{backbone}.weights.h5"
        if not path.exists():
            keras.utils.set_random_seed(0)
            backbones.build_backbone(backbone, SIZE, weights=None, include_top=True).save_weights(path)
        return str(path)

    return weights_of


def cache_everything(root, cache, backbone, weights, test_views=("plain",), split_layer=None):
    extractor = feature_extractor(backbone, SIZE, weights=weights, split_layer=split_layer)
    preprocessing = Preprocessing(size=SIZE)
    for split, views in (("train", ("plain", "flip")), ("test", test_views)):
        dataset = read_official(root, split)
        for view in views:
            cache_features(dataset, cache_dir(cache, backbone, preprocessing, split, view, split_layer), extractor,
                           preprocessing, view=view, log=lambda line: None)


def test_cached_features_are_complete_aligned_with_the_split_and_not_recomputed(
        mini_stanford, tmp_path, random_weights):
    cache = tmp_path / "cache"
    cache_everything(mini_stanford, cache, "mobilenet_v2", random_weights("mobilenet_v2"))
    directory = cache_dir(cache, "mobilenet_v2", Preprocessing(size=SIZE), "train", "plain")
    features = load_features(directory)
    assert features["pooled"].shape == (18, 1280) and features["split"].shape[0] == 18
    assert features["labels"].tolist() == [s.label for s in read_official(mini_stanford, "train").samples]
    flipped = load_features(cache_dir(cache, "mobilenet_v2", Preprocessing(size=SIZE), "train", "flip"))
    assert not np.allclose(flipped["split"], features["split"])  # random weights: pooled may be all zero
    chunk = next(directory.glob("chunk_*.npz"))
    written = chunk.stat().st_mtime_ns
    cache_everything(mini_stanford, cache, "mobilenet_v2", random_weights("mobilenet_v2"))  # a second run finds every chunk done
    assert chunk.stat().st_mtime_ns == written


@pytest.mark.parametrize(("backbone", "fine_tune_epochs", "refit"), [("mobilenet_v2", 0, True), ("resnet50", 1, False)])
def test_a_transfer_run_trains_and_saves_a_one_pass_model_that_matches_its_evaluation(
        backbone, fine_tune_epochs, refit, mini_stanford, tmp_path, offline_class_index, random_weights):
    cache, run_dir = tmp_path / "cache", tmp_path / "run"
    cache_everything(mini_stanford, cache, backbone, random_weights(backbone))
    config = TransferConfig(data=mini_stanford, cache=cache, backbone=backbone, size=SIZE,
                            weights=random_weights(backbone), head_epochs=2, fine_tune_epochs=fine_tune_epochs,
                            batch_size=8, validation_fraction=0.34, views=("plain", "flip"), refit=refit)
    metrics = run_transfer(run_dir, config, log=lambda line: None)

    for name in ("model.keras", "model_info.json", "metrics.json", "config.json", "history.json",
                 "confusion.png", "learning_curves.png", "most_confused.md"):
        assert (run_dir / name).is_file(), name
    assert 0.0 <= metrics["top1"] <= metrics["top5"] <= 1.0
    assert metrics["test_images"] == 12 and metrics["validation_images"] == 6
    # A refit head learns from every training image once validation has chosen its settings.
    assert metrics["train_images"] == (18 if refit else 12)
    assert metrics["refit_on_all_training_images"] is refit
    assert len(metrics["per_breed"]) == 3
    info = parse_model_info((run_dir / "model_info.json").read_text())
    assert info.labels == ("Chihuahua", "Japanese spaniel", "Maltese dog")
    assert info.input_size == (SIZE, SIZE) and info.dog_output == "dog"

    # The saved model does in one pass what the run evaluated from cached features.
    model = keras.saving.load_model(run_dir / "model.keras")
    test = read_official(mini_stanford, "test")
    images = np.concatenate([x.numpy() for x, _ in image_dataset(test, Preprocessing(size=SIZE))])
    breeds, dog = model.predict(images, verbose=0)
    assert breeds.shape == (12, 3) and dog.shape == (12, 1)
    np.testing.assert_allclose(breeds.sum(axis=1), 1.0, atol=1e-4)
    assert np.all((dog >= 0) & (dog <= 1 + 1e-5))
    accuracy = float(np.mean(breeds.argmax(axis=1) == [s.label for s in test.samples]))
    assert accuracy == pytest.approx(metrics["top1"], abs=1 / 12 + 1e-6)  # float16 cache: one tie may flip
    assert json.loads((run_dir / "config.json").read_text())["backbone"] == backbone


def test_with_flip_tta_the_model_looks_at_the_photo_and_its_mirror_and_averages(
        mini_stanford, tmp_path, offline_class_index, random_weights):
    cache, run_dir = tmp_path / "cache", tmp_path / "run"
    weights = random_weights("mobilenet_v2")
    cache_everything(mini_stanford, cache, "mobilenet_v2", weights, test_views=("plain", "flip"))
    config = TransferConfig(data=mini_stanford, cache=cache, size=SIZE, weights=weights, head_epochs=2,
                            fine_tune_epochs=0, batch_size=8, validation_fraction=0.34, flip_tta=True)
    with pytest.raises(ValueError, match="flip view"):
        replace(config, views=("plain",))
    metrics = run_transfer(run_dir, config, log=lambda line: None)
    assert metrics["flip_tta"] is True
    assert parse_model_info((run_dir / "model_info.json").read_text()).extra["flip_tta"] is True

    model = keras.saving.load_model(run_dir / "model.keras")  # MirrorImage is registered by train.layers
    test = read_official(mini_stanford, "test")
    images = np.concatenate([x.numpy() for x, _ in image_dataset(test, Preprocessing(size=SIZE))])
    breeds, dog = model.predict(images, verbose=0)
    mirrored_breeds, mirrored_dog = model.predict(images[:, :, ::-1], verbose=0)
    # Both looks are averaged, so a photo and its mirror get the same answer.
    np.testing.assert_allclose(mirrored_breeds, breeds, atol=1e-5)
    np.testing.assert_allclose(mirrored_dog, dog, atol=1e-5)
    accuracy = float(np.mean(breeds.argmax(axis=1) == [s.label for s in test.samples]))
    assert accuracy == pytest.approx(metrics["top1"], abs=1 / 12 + 1e-6)


def test_fine_tuning_can_start_lower_in_the_backbone_from_its_own_cache(
        mini_stanford, tmp_path, offline_class_index, random_weights):
    cache, run_dir = tmp_path / "cache", tmp_path / "run"
    weights = random_weights("mobilenet_v2")
    cache_everything(mini_stanford, cache, "mobilenet_v2", weights, split_layer="block_9_add")
    lower = cache_dir(cache, "mobilenet_v2", Preprocessing(size=SIZE), "train", "plain", "block_9_add")
    assert lower.parent.name == "32-squash@block_9_add"  # beside, not over, the default split's cache
    assert load_features(lower)["split"].shape[1:] == (2, 2, 64)  # block_9_add: 1/16 of the input, 64 channels
    config = TransferConfig(data=mini_stanford, cache=cache, size=SIZE, weights=weights, head_epochs=1,
                            fine_tune_epochs=1, batch_size=8, validation_fraction=0.34, split_layer="block_9_add")
    metrics = run_transfer(run_dir, config, log=lambda line: None)
    assert metrics["approach"] == "transfer mobilenet_v2 fine-tuned above block_9_add"

    shipped = keras.saving.load_model(run_dir / "model.keras")
    trained = {layer.name for layer in shipped.get_layer("fine_tuned_top").layers}
    assert {"block_10_expand", "block_16_project", "Conv_1"} <= trained and "block_9_add" not in trained
    test = read_official(mini_stanford, "test")
    images = np.concatenate([x.numpy() for x, _ in image_dataset(test, Preprocessing(size=SIZE))])
    breeds, _ = shipped.predict(images, verbose=0)
    accuracy = float(np.mean(breeds.argmax(axis=1) == [s.label for s in test.samples]))
    assert accuracy == pytest.approx(metrics["top1"], abs=1 / 12 + 1e-6)
    with pytest.raises(ValueError, match="'no_such_layer' is not a layer"):
        feature_extractor("mobilenet_v2", SIZE, weights=weights, split_layer="no_such_layer")
    # Inside a residual block the layers above still read the block's input: refused before any caching.
    with pytest.raises(ValueError, match="does not split"):
        feature_extractor("mobilenet_v2", SIZE, weights=weights, split_layer="block_9_project_BN")


def test_on_accelerators_training_runs_in_mixed_precision_and_the_shipped_model_in_float32(
        mini_stanford, tmp_path, offline_class_index, random_weights, monkeypatch):
    from dogtag.train import devices, transfer

    # As on a TPU (bfloat16 also runs on this CPU; a GPU would get mixed_float16).
    monkeypatch.setattr(devices, "precision_policy", lambda: "mixed_bfloat16")
    trained = {}

    def recording_fine_tune(*args, **kwargs):
        model, history = real_fine_tune(*args, **kwargs)
        trained["policies"] = {layer.dtype_policy.name for layer in model.get_layer("fine_tuned_top").layers[1:]}
        trained["output"] = model.get_layer("breed_head").dtype_policy.name
        return model, history

    real_fine_tune = transfer.fine_tune
    monkeypatch.setattr(transfer, "fine_tune", recording_fine_tune)
    cache, run_dir = tmp_path / "cache", tmp_path / "run"
    weights = random_weights("mobilenet_v2")
    cache_everything(mini_stanford, cache, "mobilenet_v2", weights)
    config = TransferConfig(data=mini_stanford, cache=cache, size=SIZE, weights=weights, head_epochs=1,
                            fine_tune_epochs=1, batch_size=8, validation_fraction=0.34)
    metrics = run_transfer(run_dir, config, log=lambda line: None)

    assert trained == {"policies": {"mixed_bfloat16"}, "output": "float32"}
    assert keras.config.dtype_policy().name == "float32"  # restored after training
    shipped = keras.saving.load_model(run_dir / "model.keras")
    top = shipped.get_layer("fine_tuned_top")
    assert {layer.dtype_policy.name for layer in [*shipped.layers, *top.layers]} == {"float32"}
    breeds, _ = shipped.predict(np.zeros((2, SIZE, SIZE, 3), "float32"), verbose=0)
    assert breeds.dtype == np.float32 and 0.0 <= metrics["top1"] <= 1.0


def test_a_run_on_some_breeds_keeps_only_their_cached_rows_relabelled(mini_stanford):
    from dogtag.train.transfer_run import restrict_to_breeds

    split = read_official(mini_stanford, "train")
    labels = np.array([s.label for s in split.samples])
    cached = {"pooled": np.arange(len(split))[:, None].astype("float16"), "labels": labels}
    chosen, (view,) = restrict_to_breeds(split, [cached], ["maltese dog", "Chihuahua"])
    assert chosen.breeds == ["Chihuahua", "Maltese dog"]
    kept = np.flatnonzero(np.isin(labels, [0, 2]))
    assert view["pooled"][:, 0].tolist() == kept.tolist()
    assert view["labels"].tolist() == [0 if label == 0 else 1 for label in labels[kept]]
    assert [s.label for s in chosen.samples] == view["labels"].tolist()


def test_the_blend_weight_is_chosen_on_validation_and_ties_go_to_the_lower_log_loss():
    from dogtag.train.transfer import blend, choose_blend_weight

    labels = np.array([0, 1, 0, 1])
    head = np.array([[0.6, 0.4], [0.4, 0.6], [0.6, 0.4], [0.45, 0.55]])  # right, but unsure
    imagenet_logits = np.array([[3.0, -3.0], [-3.0, 3.0], [3.0, -3.0], [-3.0, 3.0]])  # right and sure
    weight = choose_blend_weight(head, imagenet_logits, labels)
    assert weight == 1.5  # every weight is 100% right; the surest is kept
    assert np.all(blend(head, imagenet_logits, weight).argmax(axis=1) == labels)
    wrong_logits = -imagenet_logits  # a classifier that is always wrong gets no weight
    assert choose_blend_weight(head, wrong_logits, labels) == 0.0


def test_training_runs_on_the_cpu_with_one_replica_where_no_gpu_or_tpu_is_present(monkeypatch):
    import tensorflow as tf

    from dogtag.train.devices import distribution_strategy

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU is present: this checks the CPU fallback")
    for variable in ("TPU_NAME", "COLAB_TPU_ADDR"):
        monkeypatch.delenv(variable, raising=False)
    distribution_strategy.cache_clear()
    strategy = distribution_strategy()
    assert strategy.num_replicas_in_sync == 1
    assert not isinstance(strategy, (tf.distribute.MirroredStrategy, tf.distribute.TPUStrategy))


def test_every_transfer_option_is_a_config_field_with_the_configs_default():
    from dogtag.train.cli import transfer as transfer_command
    from dogtag.train.transfer_config import DEFAULTS

    fields = set(DEFAULTS.__dataclass_fields__)
    options = {param.name: param.default for param in transfer_command.params if param.name != "run_dir"}
    assert set(options) <= fields, set(options) - fields
    for name, default in options.items():
        if name in ("data", "size", "wild"):  # resolved when the command runs: $DOGTAG_DATA, the backbone's size
            continue
        expected = getattr(DEFAULTS, name)
        assert (tuple(default) if isinstance(default, (list, tuple)) else default) == expected, name
    with pytest.raises(ValueError, match="training views must be among"):
        replace(DEFAULTS, views=("sideways",))


def test_a_transfer_command_that_cannot_work_is_refused_before_any_training(tmp_path):
    from click.testing import CliRunner

    from dogtag.cli import main

    result = CliRunner().invoke(main, ["train", "transfer", "--data", str(tmp_path), "--run", str(tmp_path / "run"),
                                       "--view", "plain", "--flip-tta"])
    assert result.exit_code == 2 and "flip test-time augmentation needs the flip view" in result.output
    assert not (tmp_path / "run").exists()
