"""What a Dogtag model file carries besides its weights: labels and the facts the edge side needs.

Every exported model embeds one JSON document (the *model info*) so that a model can never be paired
with the wrong labels or the wrong preprocessing:

- TFLite: a flatbuffer `metadata` entry named ``dogtag`` whose buffer holds the JSON (UTF-8).
- ONNX: the ``metadata_props`` entry with key ``dogtag``.

The JSON keys (``format`` is ``dogtag-model/1``)::

    labels          breed names, in the order of the model's breed output
    input_size      [height, width] of the uint8 RGB input
    resize          "squash" (stretch to size, as the training images were) or "crop"
                    (keep aspect ratio, centre crop)
    thresholds      {"min_confidence": float, "min_dog": float}, tuned on validation data
    model_version   a string that changes whenever the weights change (used to resume tagging)
    outputs         {"breeds": <output name>, "dog": <output name or null>,
                     "features": <output name>, only in files that have it}
    wnids           (optional) the Stanford Dogs synset id of each label, "" for a label without one;
                    a model without it gets its ids from its labels' names (see `breeds.model_breed_ids`)

The model takes raw uint8 RGB pixels, shape (batch, height, width, 3); preprocessing is inside it.
Its outputs are breed probabilities (batch, len(labels)) and, when present, the probability that
the photo shows a dog at all, (batch, 1), and the pooled features the breed head reads (batch, n):
the embedding `dogtag learn` fits a new head on. Files without a features output keep working.

Reading the TFLite metadata needs no TensorFlow and no flatbuffers package: the few fields read here
are walked by hand (see the TFLite schema, table ``Model``).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

MODEL_INFO_KEY = "dogtag"
MODEL_INFO_FORMAT = "dogtag-model/1"
RESIZE_MODES = ("squash", "crop")


class ModelFileError(ValueError):
    """A model file that cannot be used: unreadable, or without valid Dogtag model info."""


@dataclass(frozen=True)
class ModelInfo:
    """The facts a model file carries about itself (see the module docstring)."""

    labels: tuple[str, ...]
    input_size: tuple[int, int]
    resize: str = "squash"
    min_confidence: float = 0.5
    min_dog: float = 0.5
    model_version: str = "unknown"
    breeds_output: str | None = None
    dog_output: str | None = None
    features_output: str | None = None
    extra: dict = field(default_factory=dict, compare=False)

    def to_json(self) -> str:
        """Serialise to the JSON document embedded in model files."""
        document = dict(self.extra)
        document.update(
            format=MODEL_INFO_FORMAT,
            labels=list(self.labels),
            input_size=list(self.input_size),
            resize=self.resize,
            thresholds={"min_confidence": self.min_confidence, "min_dog": self.min_dog},
            model_version=self.model_version,
            outputs={"breeds": self.breeds_output, "dog": self.dog_output,
                     **({"features": self.features_output} if self.features_output else {})},
        )
        return json.dumps(document, ensure_ascii=False, sort_keys=True)


def parse_model_info(text: str | bytes, source: str = "model") -> ModelInfo:
    """Validate the embedded JSON document and return it as ModelInfo."""
    try:
        document = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFileError(f"{source}: the embedded model info is not valid JSON ({error})") from error
    if not isinstance(document, dict) or document.get("format") != MODEL_INFO_FORMAT:
        raise ModelFileError(f"{source}: the embedded model info is not in the {MODEL_INFO_FORMAT} format")
    labels = document.get("labels")
    if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, str) and x for x in labels):
        raise ModelFileError(f"{source}: the model carries no usable list of breed labels; re-export it")
    if len(set(labels)) != len(labels):
        raise ModelFileError(f"{source}: the model's breed labels contain duplicates; re-export it")
    size = document.get("input_size")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(x, int) and x > 0 for x in size)):
        raise ModelFileError(f"{source}: input_size must be [height, width], got {size!r}")
    resize = document.get("resize", "squash")
    if resize not in RESIZE_MODES:
        raise ModelFileError(f"{source}: unknown resize mode {resize!r} (expected one of {RESIZE_MODES})")
    thresholds = document.get("thresholds") or {}
    outputs = document.get("outputs") or {}
    known = {"format", "labels", "input_size", "resize", "thresholds", "model_version", "outputs"}
    return ModelInfo(
        labels=tuple(labels),
        input_size=(size[0], size[1]),
        resize=resize,
        min_confidence=float(thresholds.get("min_confidence", 0.5)),
        min_dog=float(thresholds.get("min_dog", 0.5)),
        model_version=str(document.get("model_version", "unknown")),
        breeds_output=outputs.get("breeds"),
        dog_output=outputs.get("dog"),
        features_output=outputs.get("features"),
        extra={k: v for k, v in document.items() if k not in known},
    )


def read_model_info(path: str | Path) -> ModelInfo:
    """Read the Dogtag model info embedded in a .tflite or .onnx file."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        text = read_tflite_metadata(path.read_bytes(), source=str(path)).get(MODEL_INFO_KEY)
    elif suffix == ".onnx":
        text = read_onnx_metadata(path).get(MODEL_INFO_KEY)
    else:
        raise ModelFileError(f"{path}: unknown model format (expected .tflite or .onnx)")
    if text is None:
        raise ModelFileError(
            f"{path}: this model carries no Dogtag labels (no '{MODEL_INFO_KEY}' metadata); "
            "export it with `dogtag export` so it cannot be paired with the wrong labels"
        )
    return parse_model_info(text, source=str(path))


def read_onnx_metadata(path: Path) -> dict[str, str]:
    """The metadata_props of an ONNX model, read through onnxruntime."""
    try:
        import onnxruntime
    except ModuleNotFoundError as error:
        raise ModelFileError(
            f"{path}: ONNX models need onnxruntime: pip install 'dogtag[onnx]'"
        ) from error
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types for bad files
        raise ModelFileError(f"{path}: not a readable ONNX model ({error})") from error
    return dict(session.get_modelmeta().custom_metadata_map)


# --- TFLite flatbuffer, read by hand -------------------------------------------------------------
# Field numbers in the TFLite schema's `Model` table, and the tables it points to.
_MODEL_BUFFERS, _MODEL_METADATA = 4, 6
_METADATA_NAME, _METADATA_BUFFER = 0, 1
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 0, 1, 2


def read_tflite_metadata(data: bytes, source: str = "model") -> dict[str, bytes]:
    """Map each metadata name of a TFLite flatbuffer to its buffer's bytes."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelFileError(f"{source}: not a TFLite model (no TFL3 identifier)")
    try:
        model = _table(data, struct.unpack_from("<I", data, 0)[0])
        buffers = _vector_of_tables(data, model, _MODEL_BUFFERS)
        entries = {}
        for metadata in _vector_of_tables(data, model, _MODEL_METADATA):
            name = _string(data, metadata, _METADATA_NAME)
            index = _scalar(data, metadata, _METADATA_BUFFER, "<I", 0)
            if name is not None and index < len(buffers):
                entries[name] = _buffer_bytes(data, buffers[index])
        return entries
    except (struct.error, IndexError) as error:
        raise ModelFileError(f"{source}: damaged TFLite model ({error})") from error


def _table(data: bytes, position: int) -> tuple[int, int]:
    """A table as (its position, its vtable's position)."""
    return position, position - struct.unpack_from("<i", data, position)[0]


def _field_position(data: bytes, table: tuple[int, int], field_number: int) -> int | None:
    position, vtable = table
    vtable_size = struct.unpack_from("<H", data, vtable)[0]
    entry = 4 + 2 * field_number
    if entry >= vtable_size:
        return None
    offset = struct.unpack_from("<H", data, vtable + entry)[0]
    return position + offset if offset else None


def _scalar(data: bytes, table: tuple[int, int], field_number: int, fmt: str, default: int) -> int:
    position = _field_position(data, table, field_number)
    return default if position is None else struct.unpack_from(fmt, data, position)[0]


def _vector(data: bytes, table: tuple[int, int], field_number: int) -> tuple[int, int] | None:
    """A vector field as (position of its first element, its length)."""
    position = _field_position(data, table, field_number)
    if position is None:
        return None
    start = position + struct.unpack_from("<I", data, position)[0]
    return start + 4, struct.unpack_from("<I", data, start)[0]


def _vector_of_tables(data: bytes, table: tuple[int, int], field_number: int) -> list[tuple[int, int]]:
    vector = _vector(data, table, field_number)
    if vector is None:
        return []
    first, length = vector
    elements = (first + 4 * i for i in range(length))
    return [_table(data, element + struct.unpack_from("<I", data, element)[0]) for element in elements]


def _string(data: bytes, table: tuple[int, int], field_number: int) -> str | None:
    vector = _vector(data, table, field_number)
    if vector is None:
        return None
    first, length = vector
    return data[first : first + length].decode("utf-8", errors="replace")


def _buffer_bytes(data: bytes, buffer: tuple[int, int]) -> bytes:
    vector = _vector(data, buffer, _BUFFER_DATA)
    if vector is not None:
        first, length = vector
        return data[first : first + length]
    # Models over 2 GB keep buffers after the flatbuffer, addressed from the start of the file.
    offset = _scalar(data, buffer, _BUFFER_OFFSET, "<Q", 0)
    size = _scalar(data, buffer, _BUFFER_SIZE, "<Q", 0)
    return data[offset : offset + size] if offset > 1 else b""


def check_outputs(
    info: ModelInfo, output_shapes: dict[str, tuple], source: str = "model"
) -> dict[str, str | None]:
    """Find the breed and dog outputs among a model's outputs, and check them against its labels.

    `output_shapes` maps each output name to its shape. Outputs are found by the names the model
    info gives, else by their last dimension: len(labels) for breeds, 1 for dog. The features
    output is found only by the name the info gives (a vector of any length could be anything).
    Returns {"breeds": name, "dog": name or None, "features": name or None}; raises
    ModelFileError when the labels do not fit.
    """
    count = len(info.labels)
    features = info.features_output if info.features_output in output_shapes else None
    if info.features_output is not None and features is None:
        raise ModelFileError(
            f"{source}: the model info names a features output {info.features_output!r} but the model "
            f"has no such output (outputs: {', '.join(output_shapes) or 'none'}); re-export it"
        )
    output_shapes = {name: shape for name, shape in output_shapes.items() if name != features}

    def last_dimension(name: str) -> int | None:
        shape = tuple(output_shapes[name] or ())
        try:
            return int(shape[-1])
        except (IndexError, TypeError, ValueError):  # no shape, or a symbolic dimension
            return None

    described = ", ".join(f"{name} {tuple(shape)}" for name, shape in output_shapes.items()) or "none"
    breeds = info.breeds_output if info.breeds_output in output_shapes else None
    if breeds is None:
        candidates = [name for name in output_shapes if last_dimension(name) == count]
        if len(candidates) != 1:
            raise ModelFileError(
                f"{source}: the model carries {count} breed labels but "
                f"{'several outputs give' if candidates else 'no output gives'} {count} probabilities "
                f"(outputs: {described}); the labels do not belong to this model, re-export it"
            )
        breeds = candidates[0]
    elif last_dimension(breeds) != count:
        raise ModelFileError(
            f"{source}: the breed output {breeds!r} gives {last_dimension(breeds)} probabilities but the "
            f"model carries {count} labels; the labels do not belong to this model, re-export it"
        )
    others = [name for name in output_shapes if name != breeds and last_dimension(name) == 1]
    dog = info.dog_output if info.dog_output in others else None
    if dog is None and len(others) == 1:
        dog = others[0]
    if info.dog_output is not None and dog is None:
        raise ModelFileError(
            f"{source}: the model info names a dog output {info.dog_output!r} but the model has no "
            f"output of one probability besides the breeds (outputs: {described}); re-export it"
        )
    return {"breeds": breeds, "dog": dog, "features": features}
