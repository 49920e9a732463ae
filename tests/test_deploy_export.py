"""ONNX export: real torch dynamo export of the tiny preset, checked with onnx and ONNX Runtime."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from dap_ros.deploy import accuracy
from dap_ros.deploy.graph_check import (
    CONTROL_FLOW_OPS,
    TENSORRT_ONNX_OPS,
    graph_problems,
    op_types,
    precision_audit,
    tensor_types,
)
from dap_ros.deploy.onnx_export import export_onnx, normalize_frames, run_onnxruntime
from dap_ros.errors import ConfigError, ExportError
from dap_ros.model import load_model
from dap_ros.runtime.exported import graph_io, read_metadata

H, W = 64, 128


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return load_model(None, "tiny")


@pytest.fixture(scope="module")
def fp32_export(tiny_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    return export_onnx(tiny_model, path, height=H, width=W, log=lambda m: None)


@pytest.fixture(scope="module")
def fp16_export(tiny_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx16") / "tiny_fp16.onnx"
    return export_onnx(tiny_model, path, height=H, width=W, precision="fp16", log=lambda m: None)


@pytest.fixture(scope="module")
def fp32_heads_export(tiny_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx16h") / "tiny_fp16_heads.onnx"
    return export_onnx(tiny_model, path, height=H, width=W, precision="fp16", fp32_heads=True, log=lambda m: None)


@pytest.fixture(scope="module")
def uint8_export(tiny_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx_u8") / "u8.onnx"
    return export_onnx(tiny_model, path, height=H, width=W, uint8_input=True, batch=2, dynamic_batch=True,
                       log=lambda m: None)


def head_region(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The DPT heads and what follows them: every node downstream of a node reading a head weight.

    The exporter's node names carry no module path, the initializer names do (``depth_head.``...)."""
    seeds = {out for node in model.graph.node if any(i.split(".")[0] in ("depth_head", "mask_head")
                                                     for i in node.input) for out in node.output}
    region, reached = [], set(seeds)
    for node in model.graph.node:  # topological order: one pass reaches everything downstream
        if set(node.output) & seeds or set(node.input) & reached:
            region.append(node)
            reached.update(node.output)
    return region


def float16_in(nodes: list[onnx.NodeProto], types: dict[str, int]) -> list[str]:
    return sorted({name for node in nodes for name in [*node.input, *node.output]
                   if types.get(name) == TensorProto.FLOAT16})


def test_reference_op_list_matches_the_shared_table(reference_dir):
    lines = (reference_dir / "tensorrt_onnx_ops.txt").read_text().splitlines()
    assert TENSORRT_ONNX_OPS == {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def test_exported_op_types_are_tensorrt_ops_without_control_flow(fp32_export, reference_dir):
    model = onnx.load(str(fp32_export.path))
    ops = op_types(model)
    print("op types:", dict(sorted(ops.items())))
    lines = (reference_dir / "tensorrt_onnx_ops.txt").read_text().splitlines()
    supported = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    assert set(ops) <= supported
    assert not set(ops) & CONTROL_FLOW_OPS
    assert graph_problems(model) == []
    # RoPE tables and resampling indices are baked constants: nothing computes them in the graph.
    assert not {"Sin", "Cos", "Range", "ConstantOfShape", "Shape", "If"} & set(ops)
    assert ops["LayerNormalization"] == 2 * 4 + 1 + 4  # blocks, final norm, adapter (tiny: depth 4)


def test_graph_io_names_shapes_and_metadata(fp32_export):
    inputs, outputs = graph_io(fp32_export.path)
    assert inputs == {"image": (1, 3, H, W)}
    assert outputs == {"pred_depth": (1, 1, H, W), "pred_mask": (1, 1, H, W)}
    meta = read_metadata(fp32_export.path)
    assert meta["precision"] == "fp32" and meta["input_size"] == f"{H}x{W}" and meta["normalization"] == "imagenet"
    model = onnx.load(str(fp32_export.path))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 18


def test_onnxruntime_matches_pytorch_fp32(fp32_export, tiny_model):
    parity = fp32_export.parity
    print(f"ORT vs torch fp32 max|diff|: depth {parity['pred_depth_max_abs']:.2e} "
          f"mask {parity['pred_mask_max_abs']:.2e}")
    assert parity["pred_depth_max_abs"] <= 1e-4 and parity["pred_mask_max_abs"] <= 1e-4
    ref = np.load(fp32_export.reference)
    assert ref["input"].shape == (1, 3, H, W) and ref["pred_depth"].shape == (1, 1, H, W)
    with torch.no_grad():
        expected = tiny_model(torch.from_numpy(ref["input"]))
    out = run_onnxruntime(fp32_export.path, ref["input"])
    assert np.abs(out["pred_depth"] - expected["pred_depth"].numpy()).max() <= 1e-4
    assert np.array_equal(out["pred_mask"], ref["pred_mask"])  # deterministic


def test_mixed_precision_graph_types(fp16_export):
    model = onnx.load(str(fp16_export.path))
    audit = precision_audit(model)
    print({k: dict(v) for k, v in audit.items()})
    assert dict(audit["LayerNormalization"]) == {"FLOAT": 13}
    assert dict(audit["Softmax"]) == {"FLOAT": 4}
    assert dict(audit["MatMul"]) == {"FLOAT16": 24}  # qkv, scores, probs@V, proj, fc1, fc2 x 4 blocks
    assert audit["Conv"]["FLOAT"] == 2 and audit["Conv"]["FLOAT16"] == 59  # only the two 32->1 convs fp32
    assert dict(audit["Sigmoid"]) == {"FLOAT": 2}
    types = tensor_types(model)
    producers = {out: node for node in model.graph.node for out in node.output}
    # Residual sums: every Add feeding a LayerNormalization is an fp32 sum of fp32 operands.
    residual_adds = 0
    for node in model.graph.node:
        if node.op_type == "LayerNormalization":
            src = producers.get(node.input[0])
            while src is not None and src.op_type in ("Slice", "Reshape", "Transpose"):
                src = producers.get(src.input[0])
            if src is not None and src.op_type == "Add":
                residual_adds += 1
                assert all(types[i] == TensorProto.FLOAT for i in src.input), src.name
    assert residual_adds >= 2 * 4
    # RoPE: the products with the baked sin/cos tables are fp32.
    inits = {i.name: i for i in model.graph.initializer}
    rope_muls = [n for n in model.graph.node if n.op_type == "Mul" and any(
        i in inits and list(inits[i].dims)[-2:] == [5 + (H // 16) * (W // 16), 24] for i in n.input)]
    assert len(rope_muls) == 4 * 4 and all(types[n.output[0]] == TensorProto.FLOAT for n in rope_muls)
    assert all(v.type.tensor_type.elem_type == TensorProto.FLOAT for v in [*model.graph.input, *model.graph.output])


def test_mixed_precision_graph_runs_on_onnxruntime_within_tolerance(fp16_export):
    p = fp16_export.parity
    print(f"mixed vs torch fp32: {accuracy.summary(p)}")
    assert accuracy.failures(p, accuracy.MIXED_FP16) == []
    assert p["pred_depth_max_abs"] <= 1e-3 and p["pred_mask_max_abs"] <= 1e-3  # documented for tiny
    assert fp16_export.fp32_parity["pred_depth_max_abs"] <= 1e-4
    ref = np.load(fp16_export.reference)  # the float32 reference, not the mixed graph's output
    mixed = run_onnxruntime(fp16_export.path, ref["input"])
    assert not np.array_equal(mixed["pred_depth"], ref["pred_depth"])
    assert read_metadata(fp16_export.path)["precision"] == "fp16"
    assert not fp16_export.path.with_name("tiny_fp16.fp32.onnx").exists()


def test_fp32_heads_graph_has_no_float16_inside_the_heads(fp32_heads_export, fp16_export):
    model = onnx.load(str(fp32_heads_export.path))
    types = tensor_types(model)
    region = head_region(model)
    # per head: 4 projections, 3 resampling convs, 4 layer convs, 18 fusion convs, 3 output convs
    assert sum(node.op_type in ("Conv", "ConvTranspose") for node in region) == 2 * 32
    assert {"Resize", "Sigmoid", "Relu", "Add"} <= {node.op_type for node in region}
    assert float16_in(region, types) == []
    head_weights = [i for i in model.graph.initializer if i.name.split(".")[0] in ("depth_head", "mask_head")]
    assert len(head_weights) == 2 * 60 and {i.data_type for i in head_weights} == {TensorProto.FLOAT}
    # The backbone is still the fp16 recipe; only the patch embedding's conv is fp16 now.
    audit = precision_audit(model)
    assert dict(audit["MatMul"]) == {"FLOAT16": 24}
    assert dict(audit["Conv"]) == {"FLOAT16": 1, "FLOAT": 60} and dict(audit["ConvTranspose"]) == {"FLOAT": 4}
    # The same check on the plain mixed graph finds its fp16 heads.
    plain = onnx.load(str(fp16_export.path))
    assert len(float16_in(head_region(plain), tensor_types(plain))) > 50


def test_fp32_heads_graph_metadata_and_accuracy(fp32_heads_export, fp16_export, fp32_export):
    assert read_metadata(fp32_heads_export.path)["fp32_heads"] == "true"
    assert read_metadata(fp32_heads_export.path)["precision"] == "fp16"
    assert read_metadata(fp16_export.path)["fp32_heads"] == "false"
    assert read_metadata(fp32_export.path)["fp32_heads"] == "false"
    p = fp32_heads_export.parity  # ORT CPU vs PyTorch float32
    print(f"fp32 heads vs torch fp32: {accuracy.summary(p)}; plain fp16: {accuracy.summary(fp16_export.parity)}")
    assert fp32_heads_export.fp32_heads and accuracy.failures(p, accuracy.MIXED_FP16) == []
    assert p["depth_median_rel"] <= fp16_export.parity["depth_median_rel"]
    ref = np.load(fp32_heads_export.reference)
    out = run_onnxruntime(fp32_heads_export.path, ref["input"])
    assert accuracy.failures(accuracy.compare_outputs(out, ref), accuracy.MIXED_FP16) == []


def test_uint8_input_with_dynamic_batch(uint8_export):
    path, result = uint8_export.path, uint8_export
    assert result.parity["pred_depth_max_abs"] <= 1e-4
    inputs, outputs = graph_io(path)
    (name, shape), = inputs.items()
    assert name == "image_u8" and shape[1:] == (H, W, 3) and isinstance(shape[0], str)
    assert graph_problems(onnx.load(str(path))) == []
    ref = np.load(result.reference)
    assert ref["input"].dtype == np.uint8 and ref["input"].shape == (2, H, W, 3)
    one = run_onnxruntime(path, ref["input"][:1])
    two = run_onnxruntime(path, ref["input"])
    assert one["pred_depth"].shape == (1, 1, H, W) and two["pred_depth"].shape == (2, 1, H, W)
    assert np.abs(one["pred_depth"][0] - two["pred_depth"][0]).max() <= 1e-5


def test_uint8_input_is_cast_to_float_before_any_other_op(uint8_export, tiny_model):
    # The TensorRT ONNX parser takes UINT8 only as a network input/output: a Transpose (or anything
    # else) on the uint8 tensor would be a uint8 intermediate and the parse fails.
    model = onnx.load(str(uint8_export.path))
    consumers = [node for node in model.graph.node if "image_u8" in node.input]
    assert [node.op_type for node in consumers] == ["Cast"], [(n.op_type, n.name) for n in consumers]
    to = next(a.i for a in consumers[0].attribute if a.name == "to")
    assert to == TensorProto.FLOAT
    types = tensor_types(model)
    assert [name for name, t in types.items() if t == TensorProto.UINT8] == ["image_u8"]
    frames = np.load(uint8_export.reference)["input"]
    with torch.no_grad():
        expected = tiny_model(normalize_frames(frames))
    out = run_onnxruntime(uint8_export.path, frames)
    for name in ("pred_depth", "pred_mask"):
        assert np.abs(out[name] - expected[name].numpy()).max() <= 1e-4, name


def test_graph_problems_detects_control_flow_and_unsupported_ops():
    then = helper.make_graph([helper.make_node("Identity", ["a"], ["t"])], "then", [],
                             [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1])])
    nodes = [
        helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=then),
        helper.make_node("STFT", ["a", "b"], ["z"]),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    problems = graph_problems(helper.make_model(graph))
    assert any("STFT" in p for p in problems) and any("If" in p and "control flow" in p for p in problems)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"height": 60, "width": 128}, "multiples of 16"),
        ({"height": 100000, "width": 200000}, r"at most 2048x4096 \(height x width\), got 100000x200000"),
        ({"opset": 16}, "opset must be >= 17"),
        ({"precision": "int8"}, "fp32 or fp16"),
        ({"dynamic_batch": True}, "--batch >= 2"),
        ({"fp32_heads": True}, "fp32_heads applies to the fp16"),
    ],
)
def test_export_errors_are_one_line(tiny_model, tmp_path, kwargs, message):
    args = {"height": H, "width": W, **kwargs}
    with pytest.raises(ExportError, match=message) as info:
        export_onnx(tiny_model, tmp_path / "x.onnx", log=lambda m: None, **args)
    assert "\n" not in str(info.value)


def test_read_metadata_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        read_metadata(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\x01garbage" * 10)
    with pytest.raises(ConfigError, match="bad.onnx is not an ONNX file"):
        read_metadata(bad)
    for name, data in (("empty.onnx", b""), ("short.onnx", b"\x08\x07")):  # both parse as a model without a graph
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ConfigError, match=f"{name} is not an ONNX file"):
            read_metadata(tmp_path / name)


def test_cli_export_onnx(tmp_path):
    out = tmp_path / "cli.onnx"
    cmd = [sys.executable, "-m", "dap_ros.cli.main", "export-onnx", "--model-config", "tiny", "--random-weights",
           "--height", str(H), "--width", str(W), "--output", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "max|diff| pred_depth" in done.stdout and "no If/Loop/Scan" in done.stdout
    assert out.is_file() and (tmp_path / "cli.onnx.ref.npz").is_file()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "exists; pass --force" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    none = subprocess.run(cmd[:4] + ["--output", str(tmp_path / "y.onnx")], capture_output=True, text=True, timeout=120)
    assert none.returncode == 2 and "no --checkpoint" in none.stderr


def test_cli_fp32_heads_needs_fp16(tmp_path, capsys):
    from dap_ros.cli.main import main

    code = main(["export-onnx", "--model-config", "tiny", "--random-weights", "--fp32-heads",
                 "--output", str(tmp_path / "x.onnx")])
    err = capsys.readouterr().err
    assert code == 2 and "--fp32-heads needs --fp16" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.onnx").exists()


def test_cli_passes_fp32_heads_to_the_export(tmp_path, monkeypatch, capsys):
    from dap_ros.cli.main import main
    from dap_ros.deploy import onnx_export

    seen = {}

    def fake_export(model, output, **kwargs):
        seen.update(kwargs)
        parity = {"pred_depth_max_abs": 0.0, "pred_mask_max_abs": 0.0, "depth_median_rel": 0.0, "mask_agreement": 1.0}
        return onnx_export.ExportResult(output, "fp16", 18, "image", (1, 3, H, W), {"Conv": 1}, parity, parity,
                                        fp32_heads=kwargs["fp32_heads"], reference=tmp_path / "x.onnx.ref.npz")

    monkeypatch.setattr(onnx_export, "export_onnx", fake_export)
    code = main(["export-onnx", "--model-config", "tiny", "--random-weights", "--fp16", "--fp32-heads",
                 "--height", str(H), "--width", str(W), "--output", str(tmp_path / "x.onnx")])
    assert code == 0 and seen["fp32_heads"] is True and seen["precision"] == "fp16"
    assert "mixed fp16 with fp32 heads" in capsys.readouterr().out


def test_a_full_disk_during_the_export_is_one_line_and_leaves_nothing(tiny_model, tmp_path, monkeypatch):
    import errno

    def full_disk(model, path, **kwargs):
        Path(path).write_bytes(b"half a graph")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(onnx, "save_model", full_disk)
    with pytest.raises(ExportError, match=r"cannot write .*full.onnx: No space left on device"):
        export_onnx(tiny_model, tmp_path / "full.onnx", height=64, width=128, log=lambda m: None)
    assert list(tmp_path.iterdir()) == []
