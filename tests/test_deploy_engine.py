"""Engine cache: sidecars, keys, mismatch errors, build-if-missing; accuracy gate; TensorRT where present."""
from __future__ import annotations

import json

import numpy as np
import pytest

from dap_ros.cli.main import main as cli_main
from dap_ros.deploy import accuracy
from dap_ros.deploy.engine_cache import (
    CACHE_ENV,
    EngineEnvironment,
    EngineSidecar,
    cache_key,
    cached_engine_path,
    check_engine,
    ensure_engine,
    sha256_file,
    sidecar_path,
)
from dap_ros.errors import EngineError, EngineMismatchError

ENV = EngineEnvironment("10.3.0", "Orin (nvgpu)", "8.7")
SHAPE = [1, 3, 512, 1024]


@pytest.fixture()
def onnx_file(tmp_path):
    path = tmp_path / "dap.onnx"
    path.write_bytes(b"not really onnx, but hashed like one")
    return path


def make_engine(path, onnx_file, env=ENV, precision="fp16", shapes=None):
    path.write_bytes(b"engine bytes")
    EngineSidecar(
        onnx_sha256=sha256_file(onnx_file), onnx_name=onnx_file.name, tensorrt_version=env.tensorrt_version,
        gpu_name=env.gpu_name, compute_capability=env.compute_capability, precision=precision,
        input_shapes={"image": shapes or [SHAPE]}, output_shapes={"pred_depth": [1, 1, 512, 1024]},
    ).write(sidecar_path(path))
    return path


def test_sidecar_round_trip_and_match(tmp_path, onnx_file):
    engine = make_engine(tmp_path / "a.engine", onnx_file)
    data = json.loads(sidecar_path(engine).read_text())
    keys = {"onnx_sha256", "tensorrt_version", "gpu_name", "compute_capability", "precision", "input_shapes"}
    assert keys <= set(data)
    sidecar = check_engine(engine, ENV, onnx_path=onnx_file, precision="fp16", input_shape=tuple(SHAPE))
    assert sidecar.environment == ENV and sidecar.precision == "fp16"


@pytest.mark.parametrize(
    "env, kwargs, phrase",
    [
        (EngineEnvironment("10.7.0", "Orin (nvgpu)", "8.7"), {}, "TensorRT 10.3.0 (running 10.7.0)"),
        (EngineEnvironment("10.3.0", "NVIDIA H100", "9.0"), {}, "GPU Orin (nvgpu) sm 8.7 (running NVIDIA H100 sm 9.0)"),
        (ENV, {"precision": "fp32"}, "precision fp16 (requested fp32)"),
        (ENV, {"input_shape": (1, 3, 256, 512)}, "input shape [1, 3, 512, 1024] (requested [1, 3, 256, 512])"),
        (ENV, {"onnx_sha256": "f" * 64}, "another ONNX file"),
    ],
)
def test_mismatch_says_what_and_how_to_rebuild(tmp_path, onnx_file, env, kwargs, phrase):
    engine = make_engine(tmp_path / "a.engine", onnx_file)
    with pytest.raises(EngineMismatchError) as info:
        check_engine(engine, env, onnx_path=onnx_file if "onnx_sha256" not in kwargs else None, **kwargs)
    message = str(info.value)
    assert phrase in message and "rebuild on this machine with: dap-ros build-engine --onnx" in message
    assert "\n" not in message


def test_dynamic_profile_accepts_shapes_inside(tmp_path, onnx_file):
    engine = make_engine(tmp_path / "d.engine", onnx_file,
                         shapes=[[1, 3, 512, 1024], [4, 3, 512, 1024], [4, 3, 512, 1024]])
    check_engine(engine, ENV, input_shape=(1, 3, 512, 1024))
    with pytest.raises(EngineMismatchError):
        check_engine(engine, ENV, input_shape=(8, 3, 512, 1024))


def test_missing_or_broken_sidecar_and_missing_engine(tmp_path, onnx_file):
    engine = tmp_path / "b.engine"
    with pytest.raises(EngineError, match="not found; build it with: dap-ros build-engine"):
        check_engine(engine, ENV, onnx_path=onnx_file)
    engine.write_bytes(b"x")
    with pytest.raises(EngineMismatchError, match="sidecar .* not found: cannot tell what b.engine was built for"):
        check_engine(engine, ENV)
    sidecar_path(engine).write_text("{broken")
    with pytest.raises(EngineMismatchError, match="not readable JSON"):
        check_engine(engine, ENV)
    sidecar_path(engine).write_text(json.dumps({"format": 99}))
    with pytest.raises(EngineMismatchError, match="unknown format"):
        check_engine(engine, ENV)


def test_cache_key_changes_with_every_component(tmp_path, onnx_file, monkeypatch):
    base = cache_key("a" * 64, ENV, "fp16")
    assert len(base) == 16 and base == cache_key("a" * 64, ENV, "fp16")
    others = {
        cache_key("b" * 64, ENV, "fp16"),
        cache_key("a" * 64, EngineEnvironment("10.3.1", ENV.gpu_name, "8.7"), "fp16"),
        cache_key("a" * 64, EngineEnvironment("10.3.0", "Orin Nano", "8.7"), "fp16"),
        cache_key("a" * 64, EngineEnvironment("10.3.0", ENV.gpu_name, "8.9"), "fp16"),
        cache_key("a" * 64, ENV, "fp32"),
    }
    assert base not in others and len(others) == 5
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    path = cached_engine_path(onnx_file, "a" * 64, ENV, "fp16")
    assert path.parent == tmp_path / "cache" and path.name == f"dap-fp16-{base}.engine"


def test_ensure_engine_builds_if_missing_then_reuses(tmp_path, onnx_file):
    calls, messages = [], []

    def fake_builder(onnx, engine, precision):
        calls.append((onnx, engine, precision))
        make_engine(engine, onnx)
        return EngineSidecar.read(sidecar_path(engine))

    kwargs = dict(env=ENV, builder=fake_builder, onnx_path=onnx_file, precision="fp16", cache_dir=tmp_path / "c",
                  input_shape=tuple(SHAPE), progress=messages.append)
    with pytest.raises(EngineError, match="not found; build it with: dap-ros build-engine .* or enable building"):
        ensure_engine(**kwargs)
    path, sidecar = ensure_engine(build_if_missing=True, **kwargs)
    assert len(calls) == 1 and path.is_file() and sidecar.precision == "fp16"
    assert any("building TensorRT engine" in m for m in messages)
    again, _ = ensure_engine(build_if_missing=True, **kwargs)
    assert again == path and len(calls) == 1
    # Another TensorRT: a different cache entry, built again (the old one stays valid for the old one).
    newer = dict(kwargs, env=EngineEnvironment("10.7.0", ENV.gpu_name, "8.7"))
    with pytest.raises(EngineError):
        ensure_engine(**newer)


def test_ensure_engine_refuses_a_mismatched_explicit_engine(tmp_path, onnx_file):
    engine = make_engine(tmp_path / "x.engine", onnx_file, env=EngineEnvironment("10.3.0", "NVIDIA H100", "9.0"))
    with pytest.raises(EngineMismatchError, match="rebuild on this machine"):
        ensure_engine(env=ENV, builder=lambda *a: pytest.fail("must not rebuild silently"), onnx_path=onnx_file,
                      engine_path=engine, build_if_missing=True)
    with pytest.raises(EngineError, match="needs an engine file or an ONNX file"):
        ensure_engine(env=ENV, builder=None)
    with pytest.raises(EngineError, match="ONNX file not found"):
        ensure_engine(env=ENV, builder=None, onnx_path=tmp_path / "none.onnx")


def _outputs(depth, mask):
    return {"pred_depth": np.asarray(depth, dtype=np.float32), "pred_mask": np.asarray(mask, dtype=np.float32)}


def test_accuracy_gate_metrics_and_tolerances():
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.02, 0.5, (1, 1, 16, 32))
    mask = np.where(rng.uniform(size=depth.shape) > 0.8, 0.9, 0.1)
    ref = _outputs(depth, mask)
    assert accuracy.failures(accuracy.compare_outputs(ref, ref), accuracy.EXPORT_FP32) == []
    near = _outputs(depth * (1 + 3e-3), mask)
    m = accuracy.compare_outputs(near, ref)
    assert m["depth_median_rel"] == pytest.approx(3e-3, rel=1e-3)
    assert accuracy.failures(m, accuracy.MIXED_FP16) == []
    assert any("max|diff|" in f for f in accuracy.failures(m, accuracy.ENGINE_FP32))
    far = _outputs(depth * 1.05, mask)
    def mixed_failures(test):
        return accuracy.failures(accuracy.compare_outputs(test, ref), accuracy.MIXED_FP16)

    assert any("median relative depth error" in f for f in mixed_failures(far))
    flipped = _outputs(depth, 1.0 - mask)
    assert any("mask agreement" in f for f in mixed_failures(flipped))
    nan = depth.copy()
    nan[0, 0, 0, 0] = np.nan
    assert any("NaN" in f for f in mixed_failures(_outputs(nan, mask)))


def test_build_engine_without_tensorrt_is_one_clear_line(tmp_path, capsys):
    pytest.importorskip("onnx")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is importable here; this checks the message where it is not")
    except ImportError:
        pass
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(b"x")
    assert cli_main(["build-engine", "--onnx", str(onnx_path), "--output", str(tmp_path / "m.engine")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ("TensorRT" in err or "tensorrt" in err)
    assert cli_main(["build-engine", "--onnx", str(tmp_path / "missing.onnx"), "--output", str(tmp_path / "e")]) == 2
    assert "ONNX file not found" in capsys.readouterr().err


# --- TensorRT itself: only where it imports and a GPU exists ------------------------------------

def _tensorrt_or_skip():
    trt = pytest.importorskip(
        "tensorrt", reason="TensorRT is not installed (docs/deployment.md: not installable on the CI machines)")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("TensorRT is installed but there is no CUDA GPU")
    return trt


GRAPHS = {  # export_onnx options of each real-TensorRT case
    "fp32": {},
    "fp16": {"precision": "fp16"},
    "fp16 + fp32 heads": {"precision": "fp16", "fp32_heads": True},
    "fp32 dynamic batch": {"batch": 3, "dynamic_batch": True},
}


@pytest.mark.parametrize("graph", list(GRAPHS))
def test_tensorrt_build_gate_sidecar_and_run(tmp_path, graph):
    _tensorrt_or_skip()
    import torch

    from dap_ros.deploy.engine_cache import detect_environment
    from dap_ros.deploy.onnx_export import export_onnx
    from dap_ros.deploy.trt_build import build_engine
    from dap_ros.model import load_model
    from dap_ros.runtime.tensorrt_runner import TensorRTRunner

    torch.manual_seed(0)
    onnx_path = tmp_path / "tiny.onnx"
    export_onnx(load_model(None, "tiny"), onnx_path, height=64, width=128, **GRAPHS[graph])
    engine = tmp_path / "tiny.engine"
    sidecar = build_engine(onnx_path, engine, workspace_gb=1.0, timing_cache=tmp_path / "timing.cache")
    assert engine.is_file() and (tmp_path / "timing.cache").is_file()
    assert sidecar.fp32_heads == bool(GRAPHS[graph].get("fp32_heads"))
    env = detect_environment()
    check_engine(engine, env, onnx_path=onnx_path, precision=sidecar.precision, input_shape=(1, 3, 64, 128))
    ref = np.load(str(onnx_path) + ".ref.npz")
    for cuda_graph in (False, True):
        runner = TensorRTRunner(engine, torch.device("cuda"), sidecar.precision, cuda_graph=cuda_graph,
                                input_shape=ref["input"].shape)
        out = dict(zip(accuracy.OUTPUTS, runner(torch.from_numpy(ref["input"]).cuda())))
        torch.cuda.synchronize()
        test = {k: out[k].float().cpu().numpy() for k in accuracy.OUTPUTS}
        tolerance = accuracy.tolerance_for(sidecar.precision, True)
        assert accuracy.failures(accuracy.compare_outputs(test, ref), tolerance) == []
    # the predictor's shape: batch 1 whatever the engine's profile
    assert TensorRTRunner(engine, torch.device("cuda"), sidecar.precision).input_shape == (1, 3, 64, 128)
