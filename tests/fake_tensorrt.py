"""A stand-in for the ``tensorrt`` module where neither TensorRT nor a GPU exists (every CI machine).

It implements the documented contract of exactly the calls dap_ros makes (TensorRT 10/11 Python
API), return values included, and records them:

- ``Builder.create_network(flags)``, ``OnnxParser.parse_from_file`` (reads the real ONNX file; like
  onnx-tensorrt it refuses a uint8 tensor anywhere but at a graph input feeding a Cast),
  ``build_serialized_network`` -> host memory or None;
- ``IBuilderConfig.create_timing_cache(data)`` -> None for data it did not write,
  ``set_timing_cache(cache, ignore_mismatch)`` -> False for a cache made on another GPU,
  ``get_timing_cache()``;
- ``Runtime.deserialize_cuda_engine`` -> None for bytes that are not its plan; engines with named
  I/O tensors, -1 for dynamic dimensions, ``get_tensor_profile_shape`` -> [min, opt, max];
- ``IExecutionContext.set_input_shape`` -> False outside the profile, ``get_tensor_shape`` of an
  output follows the input shape, ``set_tensor_address`` / ``execute_async_v3`` -> True.

The plan is JSON; nothing is computed. ``FakeTensorRT.module`` is what ``import tensorrt`` returns
once installed in ``sys.modules``. ``current_device`` is the CUDA device a caller made current
(tests set it from a patched device scope); every recorded call notes it.

:func:`install` puts it in place together with the two seams where dap_ros needs a GPU (the CUDA
device scope, and running a built engine on the reference input: replaced by the ONNX graph on
ONNX Runtime with a chosen depth error); :func:`pretend_gpu` makes backend selection see a CUDA
machine with this TensorRT.
"""
from __future__ import annotations

import contextlib
import json
import sys
import types
import weakref
from dataclasses import dataclass, field
from typing import Any

ONNX_TYPES = {1: "FLOAT", 10: "HALF", 2: "UINT8", 6: "INT32", 7: "INT64", 9: "BOOL"}


@dataclass
class FakeTensorRT:
    version: str = "10.3.0"
    gpu: str = "Orin (nvgpu)"
    build_fails: bool = False
    returns_no_timing_cache: bool = False
    current_device: int = 0
    calls: list[tuple[str, int]] = field(default_factory=list)
    alive: weakref.WeakSet = field(default_factory=weakref.WeakSet)  # builder-side objects not yet freed

    def record(self, name: str) -> None:
        self.calls.append((name, self.current_device))

    def called(self, name: str) -> list[int]:
        """The devices that were current at each call of ``name``."""
        return [device for call, device in self.calls if call == name]

    def timing_cache_bytes(self, gpu: str | None = None) -> bytes:
        return f"FAKE-TIMING-CACHE|{self.version}|{gpu or self.gpu}".encode()

    @property
    def module(self) -> types.ModuleType:
        return _module(self)


def _onnx_io(path: str) -> tuple[list[dict], list[dict], list[str]]:
    """Inputs, outputs and parser errors of an ONNX file, the way onnx-tensorrt reads them."""
    import onnx

    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a parse failure, as in TensorRT
        return [], [], [f"failed to parse ONNX model: {type(exc).__name__}"]

    def describe(value) -> dict:
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
        return {"name": value.name, "shape": dims, "dtype": ONNX_TYPES.get(tensor.elem_type, "FLOAT")}

    inputs = [describe(v) for v in model.graph.input]
    outputs = [describe(v) for v in model.graph.output]
    errors = []
    for value in inputs:
        if value["dtype"] == "UINT8":
            consumers = [n.op_type for n in model.graph.node if value["name"] in n.input]
            if any(op != "Cast" for op in consumers):
                errors.append("TensorRT does not support UINT8 types for intermediate tensors")
    return inputs, outputs, errors


def _module(state: FakeTensorRT) -> types.ModuleType:  # noqa: C901 - one namespace, many small classes
    trt = types.ModuleType("tensorrt")
    trt.__version__ = state.version
    major = int(state.version.split(".")[0])

    trt.DataType = types.SimpleNamespace(**{n: n for n in ("FLOAT", "HALF", "UINT8", "INT32", "INT64", "BOOL")})
    trt.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    flags = {"EXPLICIT_BATCH": 0} if major < 10 else {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 5}
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(**flags)
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.BuilderFlag = types.SimpleNamespace(TF32="TF32", FP16="FP16")

    class ILogger:
        Severity = types.SimpleNamespace(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)

        def __init__(self) -> None:
            pass

    trt.ILogger = ILogger

    class HostMemory(bytearray):
        __hash__ = object.__hash__  # identity, so that the weak set of live objects can hold it

    class TimingCache:
        def __init__(self, data: bytes) -> None:
            self.data = data or state.timing_cache_bytes()

        def serialize(self) -> HostMemory:
            memory = HostMemory(self.data)
            state.alive.add(memory)
            return memory

    class Tensor:
        def __init__(self, name: str, shape: list[int], dtype: str) -> None:
            self.name, self.shape, self.dtype = name, shape, dtype

    class Network:
        def __init__(self, flags: int) -> None:
            self.flags, self.inputs, self.outputs = flags, [], []

        @property
        def num_inputs(self) -> int:
            return len(self.inputs)

        @property
        def num_outputs(self) -> int:
            return len(self.outputs)

        def get_input(self, i: int) -> Tensor:
            return self.inputs[i]

        def get_output(self, i: int) -> Tensor:
            return self.outputs[i]

    class ParserError:
        def __init__(self, text: str) -> None:
            self.text = text

        def desc(self) -> str:
            return self.text

    class OnnxParser:
        def __init__(self, network: Network, logger: Any) -> None:
            state.record("OnnxParser")
            self.network, self.errors = network, []
            state.alive.add(self)

        def parse_from_file(self, path: str) -> bool:
            state.record("parse_from_file")
            inputs, outputs, self.errors = _onnx_io(path)
            if not self.network.flags & (1 << flags["EXPLICIT_BATCH"]) and major < 10:
                self.errors.append("network must be created with the EXPLICIT_BATCH flag")
            if self.errors:
                return False
            self.network.inputs = [Tensor(v["name"], v["shape"], v["dtype"]) for v in inputs]
            self.network.outputs = [Tensor(v["name"], v["shape"], v["dtype"]) for v in outputs]
            return True

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, i: int) -> ParserError:
            return ParserError(self.errors[i])

    class Profile:
        def __init__(self) -> None:
            self.shapes: dict[str, list] = {}

        def set_shape(self, name: str, low, opt, high) -> None:
            self.shapes[name] = [list(low), list(opt), list(high)]

    class BuilderConfig:
        def __init__(self) -> None:
            self.profiles, self.cache, self.cleared = [], None, set()
            state.alive.add(self)

        def set_memory_pool_limit(self, pool: str, size: int) -> None:
            self.workspace = size

        def clear_flag(self, flag: str) -> None:
            self.cleared.add(flag)

        def add_optimization_profile(self, profile: Profile) -> int:
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def create_timing_cache(self, serialized_timing_cache: bytes) -> TimingCache | None:
            data = bytes(serialized_timing_cache)
            state.record("create_timing_cache")
            prefix = f"FAKE-TIMING-CACHE|{state.version}|".encode()
            if data and not data.startswith(prefix):
                return None  # another TensorRT version's format, or not a cache at all
            return TimingCache(data)

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
            state.record("set_timing_cache")
            if not ignore_mismatch and not cache.data.endswith(f"|{state.gpu}".encode()):
                return False  # made on another device
            self.cache = cache
            return True

        def get_timing_cache(self) -> TimingCache | None:
            return None if state.returns_no_timing_cache else self.cache

    class Builder:
        def __init__(self, logger: Any) -> None:
            state.record("Builder")
            state.alive.add(self)

        def create_network(self, flags: int = 0) -> Network:
            state.record("create_network")
            network = Network(flags)
            state.alive.add(network)
            return network

        def create_builder_config(self) -> BuilderConfig:
            return BuilderConfig()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: BuilderConfig) -> HostMemory | None:
            state.record("build_serialized_network")
            if state.build_fails:
                return None
            profiles = config.profiles[0].shapes if config.profiles else {}
            plan = {
                "fake_tensorrt_plan": state.version,
                "inputs": [{"name": t.name, "shape": t.shape, "dtype": t.dtype, "profile": profiles.get(t.name)}
                           for t in network.inputs],
                "outputs": [{"name": t.name, "shape": t.shape, "dtype": t.dtype} for t in network.outputs],
            }
            memory = HostMemory(json.dumps(plan).encode())
            state.alive.add(memory)
            return memory

    class Context:
        def __init__(self, engine: Engine) -> None:
            self.engine = engine
            self.shapes = {t["name"]: list(t["shape"]) for t in engine.plan["inputs"]}
            self.addresses: dict[str, int] = {}

        def set_input_shape(self, name: str, shape) -> bool:
            state.record("set_input_shape")
            entry = self.engine.tensor(name)
            low, _, high = entry["profile"] or ([entry["shape"]] * 3)
            shape = [int(d) for d in shape]
            if len(shape) != len(low) or not all(a <= s <= b for a, s, b in zip(low, shape, high)):
                return False
            self.shapes[name] = shape
            return True

        def get_tensor_shape(self, name: str) -> list[int]:
            entry = self.engine.tensor(name)
            if name in self.shapes:
                return list(self.shapes[name])
            batch = next(iter(self.shapes.values()))[0]  # outputs follow the (first) input's batch
            return [batch if d < 0 else d for d in entry["shape"]]

        def set_tensor_address(self, name: str, address: int) -> bool:
            self.addresses[name] = address
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            state.record("execute_async_v3")
            return len(self.addresses) == self.engine.num_io_tensors

    class Engine:
        def __init__(self, plan: dict) -> None:
            self.plan = plan
            self.names = [t["name"] for t in plan["inputs"] + plan["outputs"]]

        def tensor(self, name: str) -> dict:
            return next(t for t in self.plan["inputs"] + self.plan["outputs"] if t["name"] == name)

        @property
        def num_io_tensors(self) -> int:
            return len(self.names)

        def get_tensor_name(self, i: int) -> str:
            return self.names[i]

        def get_tensor_mode(self, name: str) -> str:
            inputs = {t["name"] for t in self.plan["inputs"]}
            return trt.TensorIOMode.INPUT if name in inputs else trt.TensorIOMode.OUTPUT

        def get_tensor_shape(self, name: str) -> list[int]:
            return list(self.tensor(name)["shape"])

        def get_tensor_dtype(self, name: str) -> str:
            return self.tensor(name)["dtype"]

        def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[list[int]]:
            profile = self.tensor(name)["profile"]
            if profile is None:
                raise RuntimeError(f"{name} has no optimization profile")
            return profile

        def create_execution_context(self) -> Context:
            return Context(self)

    class Runtime:
        def __init__(self, logger: Any) -> None:
            self.logger = logger

        def deserialize_cuda_engine(self, serialized_engine: bytes) -> Engine | None:
            state.record("deserialize_cuda_engine")
            try:
                plan = json.loads(bytes(serialized_engine))
            except (ValueError, UnicodeDecodeError):
                return None
            if not isinstance(plan, dict) or plan.get("fake_tensorrt_plan") != state.version:
                return None  # another version's plan: TensorRT logs an error and returns null
            return Engine(plan)

    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, OnnxParser, Runtime
    return trt


class FakeGate:
    """``trt_build.run_on_reference`` without a GPU: the graph ``onnx`` on ONNX Runtime with the
    depth off by ``error``, noting which builder-side objects were still alive at that moment."""

    def __init__(self, fake: FakeTensorRT) -> None:
        self.fake, self.onnx, self.error, self.alive_at_load = fake, None, 0.0, []

    def __call__(self, plan_path, reference_input, device_index, precision):
        from dap_ros.deploy.onnx_export import run_onnxruntime

        self.alive_at_load.append(sorted(type(o).__name__ for o in self.fake.alive))
        out = run_onnxruntime(self.onnx, reference_input)
        return {"pred_depth": out["pred_depth"] * (1 + self.error), "pred_mask": out["pred_mask"]}


def install(monkeypatch: Any, version: str = "10.3.0") -> FakeTensorRT:
    """The fake as ``tensorrt``, the device scope recorded, the gate run by :class:`FakeGate`
    (``state.gate``); ``state.environments`` lists the device indices the environment was read for."""
    from dap_ros.deploy import engine_cache, trt_build
    from dap_ros.deploy.engine_cache import EngineEnvironment

    state = FakeTensorRT(version=version)
    monkeypatch.setitem(sys.modules, "tensorrt", state.module)
    state.environments = []

    def environment(index: int = 0) -> EngineEnvironment:
        state.environments.append(index)
        return EngineEnvironment(state.version, state.gpu, "8.7")

    @contextlib.contextmanager
    def device_scope(index: int):
        saved, state.current_device = state.current_device, index
        try:
            yield
        finally:
            state.current_device = saved

    monkeypatch.setattr(trt_build, "detect_environment", environment)
    monkeypatch.setattr(engine_cache, "detect_environment", environment)
    monkeypatch.setattr(trt_build, "cuda_device_scope", device_scope)
    state.gate = FakeGate(state)
    monkeypatch.setattr(trt_build, "run_on_reference", state.gate)
    return state


def pretend_gpu(monkeypatch: Any, state: FakeTensorRT) -> FakeTensorRT:
    """Backend selection sees CUDA and this TensorRT; 'auto' and 'cuda' devices resolve to cuda:0
    (runners that cannot use it, ONNX Runtime here, say so and run on the CPU)."""
    import torch

    from dap_ros.pipeline import loading
    from dap_ros.runtime import Capabilities

    caps = Capabilities(cuda=True, tensorrt_version=state.version, ort_providers=("CPUExecutionProvider",))
    monkeypatch.setattr(loading, "detect_capabilities", lambda: caps)
    monkeypatch.setattr(loading, "resolve_device", lambda name: torch.device("cuda", 0))
    return state
