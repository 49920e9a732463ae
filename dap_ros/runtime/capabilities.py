"""What this machine can run, and which backend ``auto`` (or an explicit request) resolves to.

Selection is a pure function of :class:`Capabilities`, so it is tested without a GPU. ``auto``
picks, in order: ``tensorrt`` (CUDA + TensorRT importable + an engine or ONNX file), ``torch`` on
CUDA, ``onnxruntime`` on the CPU (when an ONNX file is given), ``torch`` on the CPU, and says why
each better choice was passed over.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from dap_ros.errors import BackendUnavailableError
from dap_ros.runtime.tensorrt_runner import tensorrt_version_problem
from dap_ros.settings import BACKENDS, check, choice_problem


@dataclass(frozen=True)
class Capabilities:
    cuda: bool
    tensorrt_version: str | None = None
    ort_providers: tuple[str, ...] = ()  # empty: onnxruntime not importable
    notes: dict[str, str] = field(default_factory=dict)  # why something is missing


def detect_capabilities() -> Capabilities:
    notes = {}
    trt_version = None
    try:
        import tensorrt

        problem = tensorrt_version_problem(tensorrt.__version__)
        if problem:
            notes["tensorrt"] = problem
        else:
            trt_version = tensorrt.__version__
    except ImportError as exc:
        notes["tensorrt"] = f"tensorrt not importable ({exc})"
    providers: tuple[str, ...] = ()
    try:
        import onnxruntime

        providers = tuple(onnxruntime.get_available_providers())
    except ImportError as exc:
        notes["onnxruntime"] = f"onnxruntime not importable ({exc})"
    return Capabilities(torch.cuda.is_available(), trt_version, providers, notes)


@dataclass(frozen=True)
class Choice:
    backend: str
    reasons: tuple[str, ...]


def _exists(path: str | Path | None) -> bool:
    return path not in (None, "") and Path(path).is_file()


def choose_backend(
    requested: str,
    caps: Capabilities,
    *,
    device: str = "auto",
    onnx: str | Path | None = None,
    engine: str | Path | None = None,
) -> Choice:
    """Resolve ``requested`` (one of BACKENDS) to a concrete backend, or raise BackendUnavailableError
    with a one-line reason. ``device``: what the user asked for ('auto', 'cpu', 'cuda[:N]')."""
    check("backend", requested, choice_problem(requested, BACKENDS))
    wants_cpu = str(device).lower() == "cpu"
    gpu = caps.cuda and not wants_cpu
    have_files = _exists(engine) or _exists(onnx)
    if requested == "tensorrt":
        if caps.tensorrt_version is None:
            raise BackendUnavailableError("backend 'tensorrt': " + caps.notes.get("tensorrt", "tensorrt not importable")
                                          + "; use backend torch or onnxruntime")
        if not gpu:
            raise BackendUnavailableError("backend 'tensorrt' needs a CUDA device"
                                          + (" (device is 'cpu')" if wants_cpu else " and torch sees none"))
        if not have_files:
            raise BackendUnavailableError("backend 'tensorrt' needs an engine file (--engine) or an ONNX file "
                                          "(--onnx) to build one from; neither exists")
        return Choice("tensorrt", (f"requested; TensorRT {caps.tensorrt_version}",))
    if requested == "onnxruntime":
        if not caps.ort_providers:
            raise BackendUnavailableError("backend 'onnxruntime': " + caps.notes.get("onnxruntime", "not importable")
                                          + "; pip install onnxruntime (or onnxruntime-gpu)")
        if not _exists(onnx):
            problem = f"{onnx} does not exist" if onnx not in (None, "") else "no ONNX file given"
            raise BackendUnavailableError(f"backend 'onnxruntime' needs an ONNX file (--onnx): {problem} "
                                          "(make one with dap-ros export-onnx)")
        return Choice("onnxruntime", ("requested",))
    if requested == "torch":
        return Choice("torch", ("requested",))
    reasons = []
    if caps.tensorrt_version and gpu and have_files:
        return Choice("tensorrt", (f"CUDA GPU and TensorRT {caps.tensorrt_version} present, engine/ONNX given",))
    if caps.tensorrt_version is None:
        reasons.append("not tensorrt: " + caps.notes.get("tensorrt", "tensorrt not importable"))
    elif not gpu:
        reasons.append("not tensorrt: no CUDA device")
    else:
        reasons.append("not tensorrt: no engine or ONNX file given")
    if gpu:
        return Choice("torch", (*reasons, "torch on CUDA"))
    reasons.append("no CUDA device" if not caps.cuda else "device is cpu")
    if caps.ort_providers and _exists(onnx):
        return Choice("onnxruntime", (*reasons, "ONNX file given: onnxruntime on the CPU"))
    reasons.append("no ONNX file for onnxruntime" if caps.ort_providers
                   else caps.notes.get("onnxruntime", "no onnxruntime"))
    return Choice("torch", (*reasons, "torch on the CPU"))
