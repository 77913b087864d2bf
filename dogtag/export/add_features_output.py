"""Give an exported model file a third output, "features": the pooled vector its breed head reads.

How the bundled files in dogtag/models got their features output (their training runs are not kept
beside the package, so they were not re-exported; the feature tensor was already in each graph):

    python -m dogtag.export.add_features_output dogtag/models/*_int8.tflite dogtag/models/*_int8.onnx

- TFLite: the input tensor of the breed head's FULLY_CONNECTED operator (the Keras layer
  `head_logits`, else `breed_head`) is renamed "features" and added to the subgraph's outputs and
  to the serving signature's outputs, through the TFLite schema's object API. The tensor stays int8
  (its scale and zero point travel with it; the edge runtime dequantizes it), and no operator is
  added or changed, so breeds and dog come out bit for bit as before.
- ONNX: an Identity node named "features" copies the (dequantized, float) input of the head's Gemm
  or MatMul, and becomes a graph output.

The embedded model info gains outputs.features = "features"; model_version is kept, since the
predictions are unchanged (results tagged before stay valid). Files are rewritten in place,
atomically. Future exports get the output from `dogtag export` directly (export.convert).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
from pathlib import Path

import onnx

from dogtag.edge_app.model_file import ModelInfo, read_model_info
from dogtag.export.convert import FEATURES, HEAD_LAYERS
from dogtag.export.metadata import embed_onnx_info, embed_tflite_info


def add_features_output(path: str | os.PathLike) -> ModelInfo:
    """Add the "features" output to one .tflite or .onnx file in place; returns its new model info."""
    path = Path(path)
    info = read_model_info(path)
    if info.features_output:
        return info
    info = dataclasses.replace(info, features_output=FEATURES)
    if path.suffix.lower() == ".tflite":
        data = embed_tflite_info(_tflite_with_features(path.read_bytes(), str(path)), info)
    else:
        data = embed_onnx_info(_onnx_with_features(onnx.load(path), str(path)), info).SerializeToString()
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=path.suffix) as temporary:
        temporary.write(data)
    os.chmod(temporary.name, path.stat().st_mode & 0o777)
    os.replace(temporary.name, path)
    return info


def _head_name(names: list[str], source: str) -> str:
    for layer in HEAD_LAYERS:
        found = [name for name in names if f"/{layer}" in name or name.startswith(layer)]
        if found:
            return found[0]
    raise ValueError(f"{source}: no breed head layer ({', '.join(HEAD_LAYERS)}) found; cannot add features")


def _tflite_with_features(model_bytes: bytes, source: str) -> bytes:
    """The flatbuffer with the head's input tensor named "features" and listed as an output."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(bytearray(model_bytes), 0))
    graph = model.subgraphs[0]
    fully_connected = schema.BuiltinOperator.FULLY_CONNECTED

    def builtin(operator) -> int:
        code = model.operatorCodes[operator.opcodeIndex]
        return max(code.builtinCode, code.deprecatedBuiltinCode)

    heads = {graph.tensors[op.outputs[0]].name.decode(): op for op in graph.operators if builtin(op) == fully_connected}
    head = heads[_head_name(list(heads), source)]
    features = int(head.inputs[0])
    graph.tensors[features].name = FEATURES.encode()
    graph.outputs = [*list(graph.outputs), features]
    for signature in model.signatureDefs or []:
        entry = schema.TensorMapT()
        entry.name, entry.tensorIndex = FEATURES.encode(), features
        signature.outputs = [*signature.outputs, entry]
    # embed_tflite_info packs the model again (aligned buffers); here it is packed plainly once.
    import flatbuffers

    builder = flatbuffers.Builder(len(model_bytes) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _onnx_with_features(model: onnx.ModelProto, source: str) -> onnx.ModelProto:
    """The graph with an Identity "features" of the head's input as an extra output."""
    heads = {node.name: node for node in model.graph.node if node.op_type in ("Gemm", "MatMul")}
    head = heads[_head_name(list(heads), source)]
    model.graph.node.append(onnx.helper.make_node("Identity", [head.input[0]], [FEATURES], name=FEATURES))
    model.graph.output.append(onnx.helper.make_tensor_value_info(FEATURES, onnx.TensorProto.FLOAT, ["batch", None]))
    onnx.checker.check_model(model)
    return model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    for path in parser.parse_args(argv).files:
        info = add_features_output(path)
        print(f"{path}: outputs {info.breeds_output}, {info.dog_output}, {info.features_output}")


if __name__ == "__main__":
    main()
