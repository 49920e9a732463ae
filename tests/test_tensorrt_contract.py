"""The TensorRT path against the documented TensorRT contract (tests/fake_tensorrt.py), on the CPU.

What needs a GPU is replaced at two seams only: the CUDA device scope (recorded) and the run of a
built engine on the reference input (``trt_build.run_on_reference``, replaced by the ONNX graph on
ONNX Runtime with an error we choose). Everything else — parsing the real exported graph, the
optimization profile, timing caches, the accuracy gate and its record, engine I/O binding, the
``auto`` fallback — is the real code. The real-TensorRT tests are in test_deploy_engine.py.
"""
from __future__ import annotations

import json
import logging
import sys

import numpy as np
import pytest
import torch
from fake_tensorrt import FakeTensorRT, install, pretend_gpu

from dap_ros.cli.main import main as cli_main
from dap_ros.deploy import trt_build
from dap_ros.deploy.engine_cache import EngineSidecar, rejection_path, sidecar_path
from dap_ros.deploy.onnx_export import export_onnx
from dap_ros.errors import AccuracyGateError, BackendUnavailableError, EngineError
from dap_ros.model import load_model
from dap_ros.pipeline import DepthPredictor, loading
from dap_ros.runtime import detect_capabilities
from dap_ros.runtime.onnxruntime_runner import provider_options
from dap_ros.runtime.tensorrt_runner import EngineBuffers, capture_or_none, import_tensorrt
from dap_ros.settings import ModelSpec

H, W = 64, 128


def _export(folder, name, **kwargs):
    torch.manual_seed(3)
    path = folder / name
    export_onnx(load_model(None, "tiny"), path, height=H, width=W, log=lambda m: None, **kwargs)
    return path


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("trt")
    return {
        "fp32": _export(folder, "tiny.onnx"),
        "dynamic": _export(folder, "dyn.onnx", batch=3, dynamic_batch=True),
        "fp16": _export(folder, "mixed.onnx", precision="fp16"),
    }


@pytest.fixture()
def fake(monkeypatch):
    return install(monkeypatch)


def build(fake, onnx, engine, **kwargs):
    fake.gate.onnx = onnx
    return trt_build.build_engine(onnx, engine, log=lambda m: None, **kwargs)


# --- 2: dynamic-batch engines run at the shape they are asked to run -------------------------

def test_dynamic_batch_engine_runs_batch_one_and_the_reference_batch(fake, graphs, tmp_path):
    engine = tmp_path / "dyn.engine"
    sidecar = build(fake, graphs["dynamic"], engine)
    assert sidecar.input_shapes["image"] == [[1, 3, H, W], [1, 3, H, W], [3, 3, H, W]]  # opt: batch 1
    trt = import_tensorrt()
    plan = trt.Runtime(None).deserialize_cuda_engine(engine.read_bytes())
    for requested, batch in ((None, 1), ((3, 3, H, W), 3), ((2, 3, H, W), 2)):
        context = plan.create_execution_context()
        io = EngineBuffers(trt, plan, context, torch.device("cpu"), requested)
        assert tuple(io.input.shape) == (batch, 3, H, W)
        assert tuple(io.output("pred_depth").shape) == (batch, 1, H, W)
        assert context.execute_async_v3(0)
    with pytest.raises(EngineError, match=r"outside the engine's optimization profile \[1, 3, 64, 128\] .. \[3, "):
        EngineBuffers(trt, plan, plan.create_execution_context(), torch.device("cpu"), (4, 3, H, W))
    with pytest.raises(EngineError, match="does not fit the engine input"):
        EngineBuffers(trt, plan, plan.create_execution_context(), torch.device("cpu"), (1, 3, H, W * 2))


def test_static_engine_binds_its_own_shape(fake, graphs, tmp_path):
    engine = tmp_path / "s.engine"
    build(fake, graphs["fp32"], engine)
    trt = import_tensorrt()
    plan = trt.Runtime(None).deserialize_cuda_engine(engine.read_bytes())
    context = plan.create_execution_context()
    io = EngineBuffers(trt, plan, context, torch.device("cpu"))
    assert tuple(io.input.shape) == (1, 3, H, W) and set(context.addresses) == {"image", "pred_depth", "pred_mask"}
    assert "set_input_shape" not in [name for name, _ in fake.calls]


# --- 3: timing caches from elsewhere --------------------------------------------------------

@pytest.mark.parametrize("content, phrase", [
    (b"garbage from another TensorRT version", "from another TensorRT version or damaged"),
    ("made on another GPU", "was made on another GPU"),
])
def test_incompatible_timing_cache_falls_back_to_an_empty_one(fake, graphs, tmp_path, caplog, content, phrase):
    cache = tmp_path / "timing.cache"
    cache.write_bytes(fake.timing_cache_bytes(gpu="NVIDIA H100") if isinstance(content, str) else content)
    with caplog.at_level(logging.WARNING, "dap_ros"):
        build(fake, graphs["fp32"], tmp_path / "e.engine", timing_cache=cache)
    assert phrase in caplog.text and (tmp_path / "e.engine").is_file()
    assert cache.read_bytes() == fake.timing_cache_bytes()  # rewritten for this TensorRT and GPU


def test_no_timing_cache_after_the_build_leaves_the_file_alone(fake, graphs, tmp_path, caplog):
    fake.returns_no_timing_cache = True
    cache = tmp_path / "timing.cache"
    cache.write_bytes(fake.timing_cache_bytes())
    with caplog.at_level(logging.WARNING, "dap_ros"):
        build(fake, graphs["fp32"], tmp_path / "e.engine", timing_cache=cache)
    assert "returned no timing cache" in caplog.text and cache.read_bytes() == fake.timing_cache_bytes()


# --- 4: the builder is gone before the engine is loaded for the gate ------------------------

def test_builder_objects_are_freed_before_the_accuracy_gate(fake, graphs, tmp_path):
    build(fake, graphs["fp32"], tmp_path / "e.engine")
    assert fake.gate.alive_at_load == [[]], f"alive while the gate ran: {fake.gate.alive_at_load}"


# --- 6: a failed CUDA-graph capture costs the graph, not the start ---------------------------

def test_capture_failure_warns_and_runs_without_a_graph(caplog):
    def broken():
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing")

    with caplog.at_level(logging.WARNING, "dap_ros"):
        assert capture_or_none(broken, "x.engine") is None
    assert "CUDA graph capture of x.engine failed (CUDA error: operation not permitted" in caplog.text
    assert "running without a CUDA graph" in caplog.text
    assert capture_or_none(lambda: "graph", "x.engine") == "graph"


# --- 7: build on the device that was asked for --------------------------------------------

def test_build_engine_builds_on_the_requested_device(fake, graphs, tmp_path):
    build(fake, graphs["fp32"], tmp_path / "e.engine", device_index=1)
    for call in ("Builder", "create_network", "OnnxParser", "parse_from_file", "build_serialized_network"):
        assert fake.called(call) == [1], (call, fake.calls)
    assert fake.environments == [1]


# --- 8: TensorRT < 10, and what a failed gate tells the user --------------------------------

def test_tensorrt_older_than_10_is_refused_with_what_to_do(monkeypatch, graphs, tmp_path, capsys):
    old = FakeTensorRT(version="8.6.2")
    monkeypatch.setitem(sys.modules, "tensorrt", old.module)
    with pytest.raises(BackendUnavailableError, match=r"TensorRT 8.6.2 found, dap_ros needs TensorRT >= 10 .*JetPack"):
        import_tensorrt()
    caps = detect_capabilities()
    assert caps.tensorrt_version is None and "needs TensorRT >= 10" in caps.notes["tensorrt"]
    args = ["build-engine", "--onnx", str(graphs["fp32"]), "--output", str(tmp_path / "e.engine")]
    assert cli_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "TensorRT >= 10" in err
    assert old.calls == []


@pytest.mark.parametrize("graph, advice, not_advice", [
    ("fp16", "re-export with --fp16 --fp32-heads (DPT heads in fp32) or without --fp16", "--precision fp32"),
    ("fp32", "upgrade TensorRT (10.3/10.4, JetPack 6, are known to get DINOv3 wrong", "--fp32-heads"),
])
def test_failed_gate_writes_nothing_and_says_what_to_try(fake, graphs, tmp_path, graph, advice, not_advice):
    fake.gate.error = 0.05
    engine = tmp_path / "e.engine"
    with pytest.raises(AccuracyGateError) as info:
        build(fake, graphs[graph], engine)
    message = str(info.value)
    assert f"TensorRT 10.3.0 {graph} output disagrees" in message and advice in message
    assert not_advice not in message and "\n" not in message
    assert not engine.exists() and not sidecar_path(engine).exists()
    record = json.loads(rejection_path(engine).read_text())
    assert record["tensorrt_version"] == "10.3.0"
    assert record["metrics"]["depth_median_rel"] == pytest.approx(0.05, rel=0.01)


def test_sidecar_records_the_graph_and_a_passed_gate(fake, graphs, tmp_path):
    engine = tmp_path / "e.engine"
    fake.gate.error = 0.0
    sidecar = build(fake, graphs["fp32"], engine)
    again = EngineSidecar.read(sidecar_path(engine))
    assert again == sidecar and sidecar.fp32_heads is False and sidecar.accuracy["pred_depth_max_abs"] == 0.0
    assert sidecar.output_shapes == {"pred_depth": [1, 1, H, W], "pred_mask": [1, 1, H, W]}


def test_build_failure_is_one_line_with_the_memory_hint(fake, graphs, tmp_path):
    fake.build_fails = True
    with pytest.raises(EngineError, match="failed to build an engine .* add swap or lower --workspace-gb"):
        build(fake, graphs["fp32"], tmp_path / "e.engine")
    assert not list(tmp_path.glob("e.engine*"))


# --- 5: ONNX Runtime's TensorRT provider --------------------------------------------------

def test_ort_tensorrt_provider_caches_in_a_created_folder(tmp_path):
    folder = tmp_path / "fresh" / "home" / "cache"
    chosen = provider_options(["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"], 1,
                              folder)
    name, options = chosen[0]
    assert name == "TensorrtExecutionProvider" and folder.is_dir()
    assert options["trt_engine_cache_path"] == options["trt_timing_cache_path"] == str(folder)
    assert options["trt_engine_cache_enable"] and options["trt_timing_cache_enable"] and options["device_id"] == 1
    assert chosen[1] == ("CUDAExecutionProvider", {"device_id": 1}) and chosen[2] == "CPUExecutionProvider"


def test_ort_runner_leaves_out_tensorrt_when_falling_back(monkeypatch, graphs, tmp_path):
    import onnxruntime as ort

    from dap_ros.runtime.onnxruntime_runner import OnnxRuntimeRunner

    seen = []
    real_session = ort.InferenceSession

    def session(path, options, providers):
        seen.append(providers)
        return real_session(path, options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", session)
    OnnxRuntimeRunner(graphs["fp32"], torch.device("cuda", 0), cache_dir=tmp_path / "a" / "b")
    OnnxRuntimeRunner(graphs["fp32"], torch.device("cuda", 0), allow_tensorrt=False)
    assert seen[0][0][0] == "TensorrtExecutionProvider" and (tmp_path / "a" / "b").is_dir()
    assert [p if isinstance(p, str) else p[0] for p in seen[1]] == ["CUDAExecutionProvider", "CPUExecutionProvider"]


# --- the fallback of backend auto ------------------------------------------------------------

@pytest.fixture()
def gpu_machine(fake, monkeypatch):
    return pretend_gpu(monkeypatch, fake)


def test_auto_falls_back_when_the_engine_fails_its_gate(gpu_machine, graphs, tmp_path, caplog):
    fake = gpu_machine
    fake.gate.onnx, fake.gate.error = graphs["fp32"], 0.05
    spec = ModelSpec(backend="auto", device="auto", onnx=str(graphs["fp32"]), build_engine=True,
                     engine_cache_dir=str(tmp_path / "cache"))
    with caplog.at_level(logging.WARNING, "dap_ros"):
        predictor = DepthPredictor.from_spec(spec)
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING and "falling back" in r.getMessage()]
    assert len(warnings) == 1, caplog.text
    for phrase in ("TensorRT 10.3.0: engine NOT written", "pred_depth max|diff|",
                   "falling back to onnxruntime fp32 graph tiny.onnx on CPUExecutionProvider",
                   "set backend tensorrt to make this an error"):
        assert phrase in warnings[0]
    assert predictor.fallback == warnings[0] and predictor.backend == "onnxruntime"
    frame = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    direct = DepthPredictor.from_spec(ModelSpec(backend="onnxruntime", onnx=str(graphs["fp32"])))
    np.testing.assert_array_equal(predictor.predict(frame).range_m, direct.predict(frame).range_m)

    # The next start does not rebuild (minutes on a Jetson): the recorded refusal is reused.
    builds = len(fake.called("build_serialized_network"))
    caplog.clear()
    with caplog.at_level(logging.WARNING, "dap_ros"):
        again = DepthPredictor.from_spec(spec)
    assert len(fake.called("build_serialized_network")) == builds == 1
    assert "delete that file to try the build again" in again.fallback


def test_explicit_tensorrt_fails_loudly_instead(gpu_machine, graphs, tmp_path):
    gpu_machine.gate.onnx, gpu_machine.gate.error = graphs["fp32"], 0.05
    spec = ModelSpec(backend="tensorrt", device="cuda", onnx=str(graphs["fp32"]), build_engine=True,
                     engine_cache_dir=str(tmp_path / "cache"))
    with pytest.raises(AccuracyGateError, match="engine NOT written"):
        loading.load_runner(spec)


def test_fallback_targets(graphs):
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    with_checkpoint = ModelSpec(backend="auto", checkpoint="dap.pth", onnx=str(graphs["fp32"]))
    target = loading.fallback_spec(with_checkpoint, cuda)
    assert (target.backend, target.precision, target.cuda_graph) == ("torch", "fp16", True)
    assert loading.fallback_spec(with_checkpoint, cpu).precision == "fp32"
    assert loading.fallback_spec(ModelSpec(backend="auto", onnx=str(graphs["fp32"])), cuda).backend == "onnxruntime"
    assert loading.fallback_spec(ModelSpec(backend="auto", engine="x.engine"), cuda) is None


def test_an_engine_alone_has_nothing_to_fall_back_to(gpu_machine, tmp_path):
    engine = tmp_path / "x.engine"
    engine.write_bytes(b"not a plan")
    with pytest.raises(EngineError, match="nothing to fall back to: give a checkpoint or an ONNX file too"):
        loading.load_runner(ModelSpec(backend="auto", device="auto", engine=str(engine)))
