"""Convert a trained Keras model into the model files the edge side runs: TFLite and ONNX.

Every exported model takes raw uint8 RGB pixels, shape (batch, height, width, 3), and returns
float32 probabilities named "breeds" (batch, len(labels)), when the model has one, "dog"
(batch, 1), and "features" (batch, n): the pooled vector the breed head reads, the photo's embedding
that `dogtag learn` fits new heads on (see feature_layer). The Keras model is wrapped in a uint8 input and a cast before conversion, and its own
preprocessing layers do the rest. The Dogtag model info is embedded in every file (export.metadata).

The formats are listed in export.formats.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import tempfile
from collections.abc import Iterable
from pathlib import Path

import keras
import numpy as np
import onnx
import tensorflow as tf

from dogtag.edge_app.model_file import ModelInfo, check_outputs, parse_model_info
from dogtag.export.formats import CALIBRATION_METHODS, DEFAULT_CALIBRATION, FORMATS, parse_formats
from dogtag.export.metadata import embed_onnx_info, embed_tflite_info
from dogtag.train import layers as _shipped_layers  # noqa: F401  (registers MirrorImage for load_model)

INPUT_NAME = "pixels"
FEATURES = "features"
ONNX_OPSET = 17
# Dense layers whose input is the photo's embedding, most specific first: transfer runs (head_logits),
# older transfer runs (breed_head), scratch networks and the tiny test models (breeds).
HEAD_LAYERS = ("head_logits", "breed_head", "breeds")


def load_run(run_dir: str | Path) -> tuple[keras.Model, ModelInfo]:
    """The Keras model and model info a training run left in `run_dir`, checked against each other."""
    run_dir = Path(run_dir)
    model_path, info_path = run_dir / "model.keras", run_dir / "model_info.json"
    for path in (model_path, info_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found; is {run_dir} the folder of a finished training run?")
    info = parse_model_info(info_path.read_text(encoding="utf-8"), source=str(info_path))
    model = keras.models.load_model(model_path, compile=False)
    if info.model_version == "unknown":
        digest = hashlib.sha256(model_path.read_bytes()).hexdigest()[:10]
        info = dataclasses.replace(info, model_version=f"{run_dir.name}-{digest}")
    keras_outputs(model, info, source=str(model_path))  # refuse labels that do not fit the model
    return model, info


def keras_outputs(model: keras.Model, info: ModelInfo, source: str = "model") -> dict[str, int]:
    """The position in the Keras model's outputs of "breeds" and (when present) "dog"."""
    shapes = {name: tuple(output.shape) for name, output in zip(model.output_names, model.outputs, strict=True)}
    roles = check_outputs(info, shapes, source=source)
    return {role: model.output_names.index(name) for role, name in roles.items() if name is not None}


def predict_keras(model: keras.Model, info: ModelInfo, pixels: np.ndarray) -> dict[str, np.ndarray]:
    """Run the Keras model on uint8 pixels; {"breeds": ..., "dog": ...} as float32 arrays."""
    outputs = model(pixels.astype("float32"), training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return {role: np.asarray(outputs[i], dtype="float32") for role, i in keras_outputs(model, info).items()}


def feature_layer(model: keras.Model) -> keras.layers.Layer | None:
    """The breed head's Dense layer (its input is the embedding), or None for a model without one."""
    for name in HEAD_LAYERS:
        try:
            layer = model.get_layer(name)
        except ValueError:
            continue
        if isinstance(layer, keras.layers.Dense):
            return layer
    return None


def serving_function(model: keras.Model, info: ModelInfo, features: bool = True):
    """uint8 pixels -> {"breeds", "dog", "features"}, the function every format is converted from.

    "features" only when `features` and the model has a breed head layer (see feature_layer).
    """
    positions = keras_outputs(model, info)
    height, width = info.input_size
    head = feature_layer(model) if features else None
    if head is not None:  # the same graph, with the head's input as one more output
        model = keras.Model(model.inputs, [*model.outputs, head.input])
        positions = {**positions, FEATURES: len(model.outputs) - 1}

    @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.uint8, name=INPUT_NAME)])
    def serve(pixels):
        outputs = model(tf.cast(pixels, tf.float32), training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return {role: outputs[i] for role, i in positions.items()}

    return serve


# int8 TFLite keeps this many depthwise layers in float by default: the ones quantization hurts most.
# Measured on the shipped MobileNetV2 (1,500 test photos): 0 layers -1.7 points against float, 3 layers -0.2,
# same file size (depthwise kernels are tiny).
INT8_FLOAT_LAYERS = 3


def to_tflite(
    model: keras.Model, info: ModelInfo, kind: str = "float32", calibration: np.ndarray | None = None,
    quantized_outputs: bool = False, float_layers: int = INT8_FLOAT_LAYERS, features: bool = True,
) -> bytes:
    """Convert to a TFLite flatbuffer; kind is float32, float16, dynamic or int8 (needs calibration).

    int8 models take uint8 pixels and keep float32 outputs unless `quantized_outputs` (uint8
    outputs, as some integer-only accelerators want them); the `float_layers` depthwise layers
    that quantization hurts most stay in float (see keep_sensitive_layers_float).
    The model is saved as a SavedModel first (Keras' ExportArchive tracks its variables, which a
    bare concrete function would leave unfrozen), then converted.
    """
    if kind == "int8" and (calibration is None or not len(calibration)):
        raise ValueError("int8 TFLite needs calibration images (a few hundred training photos)")
    if kind not in ("float32", "float16", "dynamic", "int8"):
        raise ValueError(f"unknown TFLite kind {kind!r}")
    with tempfile.TemporaryDirectory() as saved_model:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serving_default", serving_function(model, info, features))
        archive.write_out(saved_model, verbose=False)

        def converter() -> tf.lite.TFLiteConverter:
            converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
            if kind != "float32":
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
            if kind == "float16":
                converter.target_spec.supported_types = [tf.float16]
            elif kind == "int8":
                converter.representative_dataset = lambda: ({INPUT_NAME: image[None]} for image in calibration)
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
                converter.inference_input_type = tf.uint8  # raw pixels in
                if quantized_outputs:
                    converter.inference_output_type = tf.uint8
            return converter

        if kind == "int8" and float_layers > 0:
            return keep_sensitive_layers_float(converter, calibration, float_layers)
        return converter().convert()


def keep_sensitive_layers_float(make_converter, calibration: np.ndarray, count: int) -> bytes:
    """int8 TFLite with the `count` depthwise layers most hurt by quantization kept in float.

    The TFLite quantization debugger ranks layers by the root-mean-square error of their int8
    output against float, divided by the layer's quantization scale, over 64 calibration photos.
    Depthwise kernels are tiny, so keeping a few in float costs no size; a model without
    depthwise layers is quantized whole.
    """
    import csv

    def photos():
        return ([image[None]] for image in calibration[:64])

    ranking = tf.lite.experimental.QuantizationDebugger(converter=make_converter(), debug_dataset=photos)
    ranking.run()
    table = io.StringIO()
    ranking.layer_statistics_dump(table)
    table.seek(0)

    def error_per_scale(row: dict) -> float:
        return float(row["mean_squared_error"] or 0) ** 0.5 / max(float(row["scale"] or 0), 1e-12)

    layers = sorted(csv.DictReader(table), key=error_per_scale, reverse=True)
    keep_float = [row["tensor_name"] for row in layers if "depthwise" in row["tensor_name"]][:count]
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=keep_float)
    selective = tf.lite.experimental.QuantizationDebugger(converter=make_converter(), debug_dataset=photos,
                                                          debug_options=options)
    return selective.get_nondebug_quantized_model()


def to_onnx(model: keras.Model, info: ModelInfo, features: bool = True) -> onnx.ModelProto:
    """Convert to ONNX with tf2onnx; input "pixels" (uint8), outputs "breeds", "dog" and "features"."""
    import tf2onnx

    serve = serving_function(model, info, features)
    proto, _ = tf2onnx.convert.from_function(serve, input_signature=serve.input_signature, opset=ONNX_OPSET)
    return proto


# int8 ONNX gives the kernels of this many first depthwise convolutions 16 bits (onnxruntime's QDQ
# contrib ops). Measured on the shipped MobileNetV2 (1,000 training photos, agreement of top-1 with float):
# all int8 95.4%; 16-bit kernel on the first depthwise layer 97.6%, on any other single one 94.7-95.6%,
# on all 17 97.7%. Keeping such a layer in float instead (nodes_to_exclude) is not safe: onnxruntime's
# WeightBiasQuantization graph optimization re-quantizes that float Conv and the model answers at random.
ONNX_WIDE_DEPTHWISE = 1


def quantize_onnx(
    model: onnx.ModelProto, calibration: np.ndarray, method: str = DEFAULT_CALIBRATION, batch_size: int = 8,
    wide_depthwise: int = ONNX_WIDE_DEPTHWISE,
) -> onnx.ModelProto:
    """Static QDQ int8 quantization with onnxruntime, calibrated on `calibration` uint8 images.

    Weights are int8 per channel, activations uint8; `method` is minmax, percentile or entropy.
    The kernels of the first `wide_depthwise` depthwise convolutions are int16 (0: all int8,
    plain ONNX operators only).
    """
    from onnxruntime import quantization

    if method not in CALIBRATION_METHODS:
        raise ValueError(f"unknown calibration method {method!r}; choose one of {', '.join(CALIBRATION_METHODS)}")
    if calibration is None or not len(calibration):
        raise ValueError("int8 ONNX needs calibration images (a few hundred training photos)")

    class Reader(quantization.CalibrationDataReader):
        """Calibration batches; quantize_static reads them one at a time (set_range), so that
        histogram calibration keeps one batch of activations in memory, not all of them."""

        def __init__(self) -> None:
            self.batches = [calibration[i : i + batch_size] for i in range(0, len(calibration), batch_size)]
            self.pending: list[np.ndarray] = []

        def __len__(self) -> int:
            return len(self.batches)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.pending = self.batches[start_index:end_index]

        def get_next(self) -> dict | None:
            return {INPUT_NAME: self.pending.pop(0)} if self.pending else None

    with tempfile.TemporaryDirectory() as work:
        source, prepared, target = (Path(work) / name for name in ("float.onnx", "prepared.onnx", "int8.onnx"))
        onnx.save(model, source)
        # Shape inference and graph clean-up first, as onnxruntime recommends before quantizing.
        quantization.quant_pre_process(str(source), str(prepared))
        wide = _depthwise_kernels(onnx.load(prepared))[:wide_depthwise]
        overrides = {"UseQDQContribOps": True, "TensorQuantOverrides": {
            kernel: [{"quant_type": quantization.QuantType.QInt16, "axis": 0}] for kernel in wide}} if wide else {}
        with contextlib.redirect_stdout(io.StringIO()):  # progress lines printed once per batch
            quantization.quantize_static(
                str(prepared), str(target), Reader(),
                quant_format=quantization.QuantFormat.QDQ,
                per_channel=True,
                activation_type=quantization.QuantType.QUInt8,
                weight_type=quantization.QuantType.QInt8,
                calibrate_method=getattr(quantization.CalibrationMethod, CALIBRATION_METHODS[method]),
                calibration_providers=["CPUExecutionProvider"],
                # CalibStridedMinMax: despite its name, any method, batch by batch
                extra_options={"CalibStridedMinMax": 1, **overrides},
            )
        return onnx.load(target)


def _depthwise_kernels(model: onnx.ModelProto) -> list[str]:
    """Weight names of the depthwise convolutions (Conv with group > 1), in graph order."""
    return [node.input[1] for node in model.graph.node if node.op_type == "Conv"
            and any(attribute.name == "group" and attribute.i > 1 for attribute in node.attribute)]


def file_info(info: ModelInfo, export_name: str, has_dog: bool, has_features: bool = False) -> ModelInfo:
    """The model info embedded in one exported file.

    model_version gets the export's name appended: quantized weights answer slightly differently,
    so tagging resumed with another format must not reuse results of this one.
    """
    extra = dict(info.extra)
    extra["export"] = {"format": export_name, "keras_model_version": info.model_version}
    return dataclasses.replace(
        info,
        model_version=f"{info.model_version}+{export_name}",
        breeds_output="breeds",
        dog_output="dog" if has_dog else None,
        features_output=FEATURES if has_features else None,
        extra=extra,
    )


def export_files(
    model: keras.Model,
    info: ModelInfo,
    out_dir: str | Path,
    formats: Iterable[str] = tuple(FORMATS),
    calibration: np.ndarray | None = None,
    onnx_calibration: Iterable[str] = (DEFAULT_CALIBRATION,),
    stem: str = "dogtag",
    int8_float_layers: int = INT8_FLOAT_LAYERS,
    onnx_wide_depthwise: int = ONNX_WIDE_DEPTHWISE,
    features: bool = True,
    log=print,
) -> dict[str, Path]:
    """Write `model` in every format to `out_dir` as <stem>_<format>.<ext>; returns name -> path.

    With several ONNX calibration methods, onnx_int8 is written once per method and named
    onnx_int8_<method> (to compare them); with one it is simply onnx_int8. `features`: give the
    files the "features" output where the model has a breed head layer.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    has_dog = "dog" in keras_outputs(model, info)
    features = features and feature_layer(model) is not None
    methods = list(onnx_calibration)
    written: dict[str, Path] = {}
    float_onnx = None
    for name in parse_formats(formats):
        if name.startswith("tflite_"):
            exports = {name: embed_tflite_info(
                to_tflite(model, info, name.removeprefix("tflite_"), calibration, float_layers=int8_float_layers,
                          features=features),
                file_info(info, name, has_dog, features)
            )}
        else:
            float_onnx = float_onnx if float_onnx is not None else to_onnx(model, info, features)
            if name == "onnx_float32":
                exports = {name: _onnx_bytes(float_onnx, file_info(info, name, has_dog, features))}
            else:
                exports = {}
                for method in methods:
                    export_name = name if len(methods) == 1 else f"{name}_{method}"
                    quantized = quantize_onnx(float_onnx, calibration, method, wide_depthwise=onnx_wide_depthwise)
                    exports[export_name] = _onnx_bytes(quantized, file_info(info, export_name, has_dog, features))
        for export_name, data in exports.items():
            path = out_dir / f"{stem}_{export_name}{FORMATS[name]}"
            path.write_bytes(data)
            written[export_name] = path
            log(f"{path}: {len(data) / 1e6:.2f} MB")
    return written


def _onnx_bytes(model: onnx.ModelProto, info: ModelInfo) -> bytes:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return embed_onnx_info(copy, info).SerializeToString()
