"""Run an exported Dogtag model on the edge: LiteRT for .tflite files, onnxruntime for .onnx files.

The model takes a batch of uint8 RGB pixels (batch, height, width, 3) and returns breed probabilities
(batch, len(labels)), optionally the probability that the photo shows a dog (batch, 1) and, in files
that have it, the pooled features the breed head reads (batch, n: the photo's embedding). Outputs
are found by `model_file.check_outputs` (names from the model info, else the last dimension);
quantized (uint8/int8) outputs are dequantized with their scale and zero point.

No TensorFlow here: the runtimes are imported only when a model of their kind is opened.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dogtag.edge_app.model_file import ModelFileError, ModelInfo, check_outputs, read_model_info
from dogtag.edge_app.platform_check import unsupported_platform_message

# A runner takes a uint8 pixel batch and returns {output name: float32 array}.
Runner = Callable[[np.ndarray], dict[str, np.ndarray]]


@dataclass(frozen=True)
class Outputs:
    """What one model call gives for a batch of n photos."""

    breeds: np.ndarray  # (n, len(labels)) probabilities
    dog: np.ndarray | None  # (n,) dog probabilities; None for a model without a dog output
    features: np.ndarray | None  # (n, d) float32 embeddings; None for a model without a features output


class Model:
    """An opened model file: its embedded info and `run` on pixel batches."""

    def __init__(self, path: str | os.PathLike, num_threads: int | None = None):
        self.path = Path(path)
        self.info: ModelInfo = read_model_info(self.path)
        suffix = self.path.suffix.lower()
        opener = open_tflite if suffix == ".tflite" else open_onnx
        self._runner, self.batchable = opener(self.path, self.info, num_threads or os.cpu_count() or 1)
        self.runtime = "LiteRT" if suffix == ".tflite" else "onnxruntime"
        # One black photo through the model: proves it runs and shows which output is which.
        height, width = self.info.input_size
        try:
            probe = self._runner(np.zeros((1, height, width, 3), np.uint8))
        except Exception as error:  # LiteRT raises RuntimeError/ValueError, onnxruntime its own types
            raise ModelFileError(f"{self.path}: the model does not run ({error}); re-export it") from error
        roles = check_outputs(self.info, {name: value.shape for name, value in probe.items()}, str(self.path))
        self.breeds_output: str = roles["breeds"]
        self.dog_output: str | None = roles["dog"]
        self.features_output: str | None = roles["features"]

    def run(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Breed probabilities (n, len(labels)) and dog probabilities (n,) (None without a dog output)."""
        outputs = self.run_all(pixels)
        return outputs.breeds, outputs.dog

    def run_all(self, pixels: np.ndarray) -> Outputs:
        """Every output of one model call: breeds, dog and features (see Outputs)."""
        pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
        if self.batchable or len(pixels) == 1:
            results = [self._runner(pixels)]
        else:  # a model exported with a fixed batch of 1
            results = [self._runner(pixels[i : i + 1]) for i in range(len(pixels))]

        def joined(name: str | None, *shape: int) -> np.ndarray | None:
            return None if name is None else np.concatenate([r[name] for r in results]).reshape(len(pixels), *shape)

        return Outputs(
            breeds=joined(self.breeds_output, -1),
            dog=None if self.dog_output is None else joined(self.dog_output),
            features=joined(self.features_output, -1),
        )


def dequantize(values: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Float32 values of a quantized tensor (unchanged, as float32, when it is not quantized)."""
    if np.issubdtype(values.dtype, np.integer) and scale:
        return (values.astype(np.float32) - zero_point) * np.float32(scale)
    return values.astype(np.float32)


def _tflite_interpreter_class():
    """LiteRT's Interpreter, or tflite-runtime's where that is what the machine has (older Pis)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError as error:
            raise ModelFileError(
                unsupported_platform_message()
                or "TFLite models need ai-edge-litert (pip install ai-edge-litert) or tflite-runtime"
            ) from error
    return Interpreter


def open_tflite(path: Path, info: ModelInfo, num_threads: int) -> tuple[Runner, bool]:
    """A runner for a .tflite file, and whether it accepts batches larger than one."""
    interpreter_class = _tflite_interpreter_class()
    try:
        interpreter = interpreter_class(model_path=str(path), num_threads=num_threads)
    except (ValueError, RuntimeError) as error:
        raise ModelFileError(f"{path}: LiteRT cannot load this model ({error})") from error
    signatures = interpreter.get_signature_list()
    if signatures:  # signature names are the Keras output names ("breeds", "dog")
        runner = interpreter.get_signature_runner(
            "serving_default" if "serving_default" in signatures else next(iter(signatures))
        )
        inputs = runner.get_input_details()
        outputs = runner.get_output_details()
        if len(inputs) != 1:
            raise ModelFileError(f"{path}: expected one input (the pixels), found {len(inputs)}")
        (input_name, input_detail), = inputs.items()
        _check_input(path, info, input_detail["dtype"], input_detail["shape"])

        def run_signature(pixels: np.ndarray) -> dict[str, np.ndarray]:
            raw = runner(**{input_name: _quantize_input(pixels, input_detail)})
            return {name: dequantize(raw[name], *outputs[name]["quantization"]) for name in raw}

        return run_signature, _batch_dimension_is_free(input_detail)

    interpreter.allocate_tensors()
    input_details = interpreter.get_input_details()
    if len(input_details) != 1:
        raise ModelFileError(f"{path}: expected one input (the pixels), found {len(input_details)}")
    input_detail = input_details[0]
    _check_input(path, info, input_detail["dtype"], input_detail["shape"])

    def run_tensors(pixels: np.ndarray) -> dict[str, np.ndarray]:
        index = input_detail["index"]
        if tuple(interpreter.get_input_details()[0]["shape"]) != pixels.shape:
            interpreter.resize_tensor_input(index, pixels.shape)
            interpreter.allocate_tensors()
        interpreter.set_tensor(index, _quantize_input(pixels, input_detail))
        interpreter.invoke()
        return {
            detail["name"]: dequantize(interpreter.get_tensor(detail["index"]), *detail["quantization"])
            for detail in interpreter.get_output_details()
        }

    return run_tensors, _batch_dimension_is_free(input_detail)


def _batch_dimension_is_free(detail: dict) -> bool:
    signature = detail.get("shape_signature")
    return signature is not None and len(signature) > 0 and int(signature[0]) == -1


def _quantize_input(pixels: np.ndarray, detail: dict) -> np.ndarray:
    """Pixels as the input tensor stores them: raw uint8, or quantized when the input is."""
    dtype = detail["dtype"]
    scale, zero_point = detail["quantization"]
    if dtype == np.uint8 and (not scale or (scale == 1.0 and zero_point == 0)):
        return pixels
    limits = np.iinfo(dtype)
    quantized = np.round(pixels.astype(np.float32) / (scale or 1.0) + zero_point)
    return np.clip(quantized, limits.min, limits.max).astype(dtype)


def _check_input(path: Path, info: ModelInfo, dtype, shape) -> None:
    """Refuse a model whose input is not uint8 pixels of the size its info states."""
    if np.dtype(dtype) not in (np.uint8, np.int8):
        raise ModelFileError(
            f"{path}: the model takes {np.dtype(dtype).name} input, but Dogtag models take uint8 RGB "
            "pixels with the preprocessing inside; re-export it with `dogtag export`"
        )
    dims = [int(d) if isinstance(d, (int, np.integer)) and int(d) > 0 else None for d in shape]
    expected = [*info.input_size, 3]
    if len(dims) != 4 or any(d is not None and d != e for d, e in zip(dims[1:], expected, strict=True)):
        raise ModelFileError(
            f"{path}: the model's input shape is {list(shape)} but its model info says "
            f"{info.input_size[0]} x {info.input_size[1]} RGB; re-export it with `dogtag export`"
        )


def open_onnx(path: Path, info: ModelInfo, num_threads: int) -> tuple[Runner, bool]:
    """A runner for an .onnx file, and whether it accepts batches larger than one."""
    try:
        import onnxruntime
    except ImportError as error:
        raise ModelFileError(
            unsupported_platform_message() or f"{path}: ONNX models need onnxruntime: pip install 'dogtag[onnx]'"
        ) from error
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime has its own exception types
        raise ModelFileError(f"{path}: onnxruntime cannot load this model ({error})") from error
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ModelFileError(f"{path}: expected one input (the pixels), found {len(inputs)}")
    if inputs[0].type != "tensor(uint8)":
        raise ModelFileError(
            f"{path}: the model takes {inputs[0].type} input, but Dogtag models take uint8 RGB pixels "
            "with the preprocessing inside; re-export it with `dogtag export`"
        )
    _check_input(path, info, np.uint8, inputs[0].shape)
    input_name = inputs[0].name
    output_names = [output.name for output in session.get_outputs()]

    def run(pixels: np.ndarray) -> dict[str, np.ndarray]:
        values = session.run(output_names, {input_name: pixels})
        return {name: np.asarray(value, dtype=np.float32) for name, value in zip(output_names, values, strict=True)}

    batch = inputs[0].shape[0] if inputs[0].shape else None
    return run, not isinstance(batch, int) or batch <= 0
