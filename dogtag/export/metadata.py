"""Embed the Dogtag model info (edge_app.model_file.ModelInfo) in TFLite and ONNX model files.

The edge side reads it back with edge_app.model_file.read_model_info; the format is defined there.

- TFLite: the flatbuffer is unpacked into the schema's object API (ModelT), one Buffer holding the
  JSON and one Metadata entry named "dogtag" pointing at it are added, and the model is packed
  again, as TensorFlow's own lite/tools/flatbuffer_utils.py does. Input and output tensors are
  renamed after the signature ("pixels", "breeds", "dog") so that every runtime sees the same names.
- ONNX: the metadata_props entry with key "dogtag".
"""

from __future__ import annotations

import flatbuffers
import numpy as np
import onnx
from tensorflow.lite.python import schema_py_generated as schema

from dogtag.edge_app.model_file import MODEL_INFO_KEY, ModelInfo

TFLITE_FILE_IDENTIFIER = b"TFL3"
# The converter starts every weight buffer on a 16-byte boundary; repacking keeps it so, since
# some kernels and delegates read weights in place.
BUFFER_ALIGNMENT = 16


class _AlignedBufferT(schema.BufferT):
    """A Buffer whose data starts on a BUFFER_ALIGNMENT boundary of the packed file."""

    def Pack(self, builder: flatbuffers.Builder) -> int:
        if self.data is not None and len(self.data):
            # Pad so that, once the data is written, it starts on the boundary (flatbuffers
            # build back to front and Finish pads the whole file to the largest alignment used).
            builder.Prep(BUFFER_ALIGNMENT, len(self.data))
        return super().Pack(builder)


def embed_tflite_info(model_bytes: bytes, info: ModelInfo) -> bytes:
    """A copy of a TFLite flatbuffer carrying `info`, with its tensors named after its signature."""
    if model_bytes[4:8] != TFLITE_FILE_IDENTIFIER:
        raise ValueError("not a TFLite flatbuffer (no TFL3 identifier); cannot embed the model info")
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(bytearray(model_bytes), 0))
    if any(buffer.offset for buffer in model.buffers or []):
        raise ValueError("TFLite models over 2 GB (buffers outside the flatbuffer) are not supported")
    _name_signature_tensors(model)
    for old in model.buffers:
        old.__class__ = _AlignedBufferT
    entries = [m for m in (model.metadata or []) if m.name.decode() != MODEL_INFO_KEY]
    buffer = _AlignedBufferT()
    buffer.data = np.frombuffer(info.to_json().encode("utf-8"), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = MODEL_INFO_KEY.encode()
    entry.buffer = len(model.buffers) - 1
    model.metadata = [*entries, entry]
    builder = flatbuffers.Builder(max(1024, len(model_bytes) + 4096))
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_FILE_IDENTIFIER)
    return bytes(builder.Output())


def _name_signature_tensors(model: schema.ModelT) -> None:
    """Give each input and output tensor its signature name (the converter names them after TF ops)."""
    for signature in model.signatureDefs or []:
        tensors = model.subgraphs[signature.subgraphIndex].tensors
        for entry in [*(signature.inputs or []), *(signature.outputs or [])]:
            tensors[entry.tensorIndex].name = entry.name


def embed_onnx_info(model: onnx.ModelProto, info: ModelInfo) -> onnx.ModelProto:
    """Set the "dogtag" metadata_props entry of an ONNX model (in place) and return the model."""
    props = {p.key: p.value for p in model.metadata_props}
    props[MODEL_INFO_KEY] = info.to_json()
    onnx.helper.set_model_props(model, props)
    return model
