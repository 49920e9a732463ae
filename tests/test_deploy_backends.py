"""Backend selection (pure), the onnxruntime backend through DepthPredictor, bench CLI, GPU script."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dap_ros.cli.main import main as cli_main
from dap_ros.deploy.onnx_export import export_onnx
from dap_ros.errors import BackendUnavailableError, ConfigError, DapError
from dap_ros.model import load_model
from dap_ros.pipeline import DepthPredictor
from dap_ros.runtime import Capabilities, choose_backend
from dap_ros.runtime.onnxruntime_runner import OnnxRuntimeRunner
from dap_ros.runtime.torch_runner import TorchRunner

REPO = Path(__file__).resolve().parents[1]
H, W = 64, 128
NO_TRT = {"tensorrt": "tensorrt not importable (No module named 'tensorrt')"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(1)
    model = load_model(None, "tiny")
    path = tmp_path_factory.mktemp("be") / "tiny.onnx"
    export_onnx(model, path, height=H, width=W, log=lambda m: None)
    return model, path


@pytest.fixture()
def files(tmp_path):
    onnx, engine = tmp_path / "m.onnx", tmp_path / "m.engine"
    onnx.write_bytes(b"x")
    engine.write_bytes(b"x")
    return onnx, engine


def test_auto_prefers_tensorrt_then_torch_cuda_then_onnxruntime_cpu(files):
    onnx, engine = files
    full = Capabilities(cuda=True, tensorrt_version="10.3.0", ort_providers=("CPUExecutionProvider",))
    assert choose_backend("auto", full, engine=engine).backend == "tensorrt"
    assert choose_backend("auto", full, onnx=onnx).backend == "tensorrt"
    choice = choose_backend("auto", full)
    assert choice.backend == "torch" and "not tensorrt: no engine or ONNX file given" in choice.reasons
    no_trt = Capabilities(cuda=True, ort_providers=("CPUExecutionProvider",), notes=NO_TRT)
    choice = choose_backend("auto", no_trt, onnx=onnx)
    assert choice.backend == "torch" and choice.reasons[-1] == "torch on CUDA"
    assert any("tensorrt not importable" in r for r in choice.reasons)
    cpu = Capabilities(cuda=False, ort_providers=("CPUExecutionProvider",), notes=NO_TRT)
    assert choose_backend("auto", cpu, onnx=onnx).backend == "onnxruntime"
    assert choose_backend("auto", cpu).backend == "torch"
    assert choose_backend("auto", full, device="cpu", onnx=onnx).backend == "onnxruntime"
    assert choose_backend("auto", Capabilities(cuda=False), onnx=onnx).backend == "torch"


@pytest.mark.parametrize(
    "requested, caps, kwargs, message",
    [
        ("tensorrt", Capabilities(cuda=True, notes=NO_TRT), {}, "backend 'tensorrt': tensorrt not importable"),
        ("tensorrt", Capabilities(cuda=False, tensorrt_version="10.3"), {}, "needs a CUDA device"),
        ("tensorrt", Capabilities(cuda=True, tensorrt_version="10.3"), {"device": "cpu"}, "(device is 'cpu')"),
        ("tensorrt", Capabilities(cuda=True, tensorrt_version="10.3"), {"engine": "/no/such.engine"}, "neither exists"),
        ("onnxruntime", Capabilities(cuda=False), {}, "backend 'onnxruntime'"),
        ("onnxruntime", Capabilities(cuda=False, ort_providers=("CPUExecutionProvider",)), {},
         "needs an ONNX file (--onnx): no ONNX file given"),
        ("onnxruntime", Capabilities(cuda=False, ort_providers=("CPUExecutionProvider",)), {"onnx": "/no/such.onnx"},
         "needs an ONNX file (--onnx): /no/such.onnx does not exist"),
    ],
)
def test_unavailable_backends_are_clear_errors(requested, caps, kwargs, message):
    with pytest.raises(BackendUnavailableError) as info:
        choose_backend(requested, caps, **kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="backend must be one of"):
        choose_backend("tflite", caps)


def test_onnxruntime_predictor_matches_torch_predictor(exported):
    model, path = exported
    ort_pred = DepthPredictor.create(None, "tiny", backend="onnxruntime", onnx=path, input_size=(H, W))
    assert (ort_pred.backend, ort_pred.precision, str(ort_pred.device)) == ("onnxruntime", "fp32", "cpu")
    assert ort_pred.weights.path == str(path) and ort_pred.input_size == (H, W)
    torch_pred = DepthPredictor(TorchRunner(model, torch.device("cpu"), torch.float32), input_size=(H, W))
    rgb = np.random.default_rng(3).integers(0, 256, (2 * H, 2 * W, 3), dtype=np.uint8)
    a, b = ort_pred.predict(rgb), torch_pred.predict(rgb)
    assert a.range_m.shape == (2 * H, 2 * W)
    assert np.array_equal(a.in_range, b.in_range)
    both = np.isfinite(a.range_m) & np.isfinite(b.range_m)
    assert np.allclose(a.range_m[both], b.range_m[both], atol=1e-3)
    assert set(a.timings) == {"preprocess", "inference", "postprocess"}


def test_auto_on_this_cpu_machine_uses_onnxruntime_with_a_graph(exported, caplog):
    _, path = exported
    if torch.cuda.is_available():
        pytest.skip("checks the CPU choice")
    with caplog.at_level("INFO", logger="dap_ros"):
        pred = DepthPredictor.create(None, "tiny", backend="auto", onnx=path, input_size=(H, W))
    assert pred.backend == "onnxruntime"
    assert "onnxruntime on the CPU" in caplog.text and "not tensorrt" in caplog.text
    pred = DepthPredictor.create(None, "tiny", backend="auto", device="auto", input_size=(H, W), allow_random=True)
    assert pred.backend == "torch" and pred.runner.model is not None


def test_deployed_predictor_errors(exported, tmp_path):
    _, path = exported
    with pytest.raises(ConfigError, match=r"takes input \[1, 3, 64, 128\] but the input size is 128x256"):
        DepthPredictor.create(None, "tiny", backend="onnxruntime", onnx=path, input_size=(128, 256))
    with pytest.raises(BackendUnavailableError, match="needs an ONNX file"):
        DepthPredictor.create(None, "tiny", backend="onnxruntime", onnx=tmp_path / "none.onnx")
    with pytest.raises(DapError):
        DepthPredictor.create(None, "tiny", backend="tensorrt", onnx=path, device="cpu")
    with pytest.raises(ConfigError, match="CUDA graphs need a CUDA device"):
        DepthPredictor.create(None, "tiny", input_size=(H, W), allow_random=True, cuda_graph=True)
    with pytest.raises(BackendUnavailableError, match="not available"):
        OnnxRuntimeRunner(path, torch.device("cpu"), providers=["CUDAExecutionProvider"])


def test_uint8_graph_is_refused_by_the_backends(exported, tmp_path):
    model, _ = exported
    path = tmp_path / "u8.onnx"
    export_onnx(model, path, height=H, width=W, uint8_input=True, log=lambda m: None)
    with pytest.raises(ConfigError, match="export without --uint8-input"):
        OnnxRuntimeRunner(path, torch.device("cpu"))


def test_existing_create_keywords_and_attributes_still_work():
    pred = DepthPredictor.create(None, model_config="tiny", device="cpu", precision="fp32", input_size=(H, W),
                                 normalization="imagenet", mask_threshold=0.4, max_range=50.0, allow_random=True)
    assert (pred.backend, pred.precision, str(pred.device)) == ("torch", "fp32", "cpu")
    assert (pred.mask_threshold, pred.max_range, pred.weights.path, pred.input_size) == (0.4, 50.0, None, (H, W))
    assert isinstance(pred.runner, TorchRunner) and pred.runner.describe() == "torch fp32 on cpu"


def test_bench_cli_reports_stages_and_ratio(exported, tmp_path, capsys):
    _, path = exported
    out = tmp_path / "bench.json"
    code = cli_main(["bench", "--backend", "onnxruntime", "--onnx", str(path), "--model-config", "tiny",
                     "--height", str(H), "--width", str(W), "--iters", "2", "--warmup", "1", "--compare-eager",
                     "--random-weights", "--json", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "| end_to_end |" in text and "throughput" in text and "faster (p50 / p50)" in text
    report = json.loads(out.read_text())
    assert report["backend"] == "onnxruntime" and report["stages"]["inference"]["p50_ms"] > 0
    assert report["eager"]["ratio_eager_forward_over_end_to_end"] > 0


def test_bench_cli_errors(capsys, tmp_path):
    assert cli_main(["bench", "--backend", "onnxruntime", "--model-config", "tiny", "--iters", "1"]) == 2
    assert "needs an ONNX file" in capsys.readouterr().err
    not_onnx = tmp_path / "model.onnx"
    not_onnx.write_bytes(b"")
    assert cli_main(["bench", "--backend", "onnxruntime", "--onnx", str(not_onnx), "--model-config", "tiny",
                     "--random-weights", "--iters", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.onnx is not an ONNX file" in err, err
    assert cli_main(["bench", "--model-config", "tiny", "--iters", "0", "--random-weights"]) == 2


def test_gpu_benchmark_script_runs_on_cpu(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path))
    cmd = [sys.executable, str(REPO / "benchmarks" / "gpu_benchmark.py"), "--device", "cpu", "--config", "tiny",
           "--height", str(H), "--width", str(W), "--iters", "2", "--warmup", "1"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| variant |" in done.stdout and "error" not in done.stdout
    report = json.loads((tmp_path / "gpu_benchmark.json").read_text())
    rows = {r["variant"]: r for r in report["results"]}
    mixed = next(r for name, r in rows.items() if name.startswith("mixed-precision"))
    assert mixed["accuracy_random"]["depth_median_rel"] < 1e-2 and not mixed["nan_in_output"]
    heads = next(r for name, r in rows.items() if "--fp32-heads" in name)
    assert heads["accuracy_random"]["depth_median_rel"] < 1e-2 and not heads["nan_in_output"]
    fallback = next(r for name, r in rows.items() if "fallback" in name)
    assert fallback["accuracy_random"]["depth_median_rel"] == 0.0  # the same weights, loaded from a checkpoint
    assert "TensorRT not importable" in done.stdout and report["tensorrt_gates"] == []
