"""Static checks of an exported graph: op types, TensorRT parser support, no control flow, types."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import onnx

# The ONNX ops the TensorRT ONNX parser supports (onnx-tensorrt operators.md, TensorRT 8.5 /
# opset 17 table plus LayerNormalization, native since TensorRT 8.6); TensorRT 10/11 support at
# least these. tests/test_deploy_export.py checks this set against ../shared/reference.
TENSORRT_ONNX_OPS = frozenset(
    """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast
    Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace
    DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather
    GatherElements GatherND Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual
    GridSample GRU HardSwish HardSigmoid Identity If ImageScaler InstanceNormalization IsNaN
    LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool
    Mean MeanVarianceNormalization Min Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad
    ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform
    RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax
    ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RNN
    RoiAlign Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign
    Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh
    ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor LayerNormalization
    """.split()
)

# Supported by the parser, but where TensorRT 10.3 (JetPack 6) is reported to go wrong.
CONTROL_FLOW_OPS = frozenset({"If", "Loop", "Scan"})


def _all_nodes(graph: onnx.GraphProto) -> Iterable[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _all_nodes(sub)


def op_types(model: onnx.ModelProto) -> Counter:
    """Counts of ``domain::op_type`` ('' domain written bare) over the graph, subgraphs and functions."""
    counts: Counter = Counter()
    nodes = list(_all_nodes(model.graph))
    for function in model.functions:
        nodes.extend(function.node)
    for node in nodes:
        counts[node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"] += 1
    return counts


def graph_problems(model: onnx.ModelProto) -> list[str]:
    """Ops TensorRT cannot parse, control flow and local functions; empty when the graph is clean."""
    counts = op_types(model)
    problems = []
    unsupported = sorted(op for op in counts if op not in TENSORRT_ONNX_OPS)
    if unsupported:
        problems.append(f"ops not supported by the TensorRT ONNX parser: {', '.join(unsupported)}")
    control = sorted(op for op in counts if op in CONTROL_FLOW_OPS)
    if control:
        problems.append(f"control flow in the graph ({', '.join(control)}): breaks TensorRT 10.3 / JetPack 6")
    if model.functions:
        problems.append(f"{len(model.functions)} local functions left un-inlined")
    return problems


def tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type (onnx.TensorProto enum) of every typed tensor after shape inference."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    types: dict[str, int] = {}
    for value in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
        if value.type.HasField("tensor_type"):
            types[value.name] = value.type.tensor_type.elem_type
    for init in inferred.graph.initializer:
        types[init.name] = init.data_type
    return types


def precision_audit(model: onnx.ModelProto) -> dict[str, Counter]:
    """For the op types that matter to the mixed-precision recipe: Counter of the element type
    names of their (first) input, e.g. {'LayerNormalization': {'FLOAT': 13}, 'MatMul': {...}}."""
    types = tensor_types(model)
    audit: dict[str, Counter] = {}
    for node in model.graph.node:
        if node.op_type in ("LayerNormalization", "Softmax", "MatMul", "Conv", "ConvTranspose", "Add", "Sigmoid"):
            dtype = types.get(node.input[0])
            name = onnx.TensorProto.DataType.Name(dtype) if dtype is not None else "UNKNOWN"
            audit.setdefault(node.op_type, Counter())[name] += 1
    return audit
