"""DepthPredictor: uint8 RGB panorama of any 2:1 size -> metric range (m) + range mask.

The one code path shared by the CLI, the ROS node and bag evaluation.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from dap_ros.config import resolve_config
from dap_ros.errors import CheckpointError, ConfigError, ImageError
from dap_ros.model import WEIGHTS_HINT, load_model
from dap_ros.model.embedded import EMBEDDED_WARNING, embedded_model
from dap_ros.pipeline.backends import TorchRunner
from dap_ros.pipeline.postprocess import postprocess, validate_mask_threshold, validate_max_range
from dap_ros.pipeline.preprocess import Preprocessor, resize_rgb_uint8

LOG = logging.getLogger("dap_ros")

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(device: str) -> torch.device:
    """'cpu', 'cuda' or 'cuda:N', checked against what this machine has."""
    text = str(device).strip().lower()
    try:
        dev = torch.device(text)
    except RuntimeError:
        raise ConfigError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {device!r} requested but CUDA is not available (torch {torch.__version__}, "
                f"built with CUDA {torch.version.cuda}); use device 'cpu' or install a CUDA build of torch"
            )
        index = dev.index or 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif dev.type != "cpu":
        raise ConfigError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return dev


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type == "cpu":
        raise ConfigError("precision fp16 needs a CUDA device; on the CPU use fp32 (or bf16)")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"precision bf16 is not supported by {torch.cuda.get_device_name(device)}; use fp16")
    return PRECISIONS[precision]


def validate_input_size(input_size: tuple[int, int], patch_size: int) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in input_size)
    except (TypeError, ValueError):
        raise ConfigError(f"input size must be (height, width), got {input_size!r}") from None
    if height <= 0 or width != 2 * height or height % patch_size:
        raise ConfigError(
            f"network input size must be 2:1 with both sides multiples of {patch_size} "
            f"(e.g. 512x1024 or 256x512), got {height}x{width}"
        )
    return height, width


@dataclass
class DepthResult:
    """One frame's output. ``range_m``: float32 (H, W) metres along each pixel's ray, +Inf beyond
    range / sky, NaN invalid. ``in_range``: bool (H, W). ``timings``: seconds per stage."""

    range_m: np.ndarray
    in_range: np.ndarray
    timings: dict[str, float]
    source_rgb: np.ndarray = field(repr=False)

    @cached_property
    def rgb(self) -> np.ndarray:
        """The input image at the output size (the input array itself when sizes agree)."""
        size = self.range_m.shape
        if self.source_rgb.shape[:2] == size:
            return self.source_rgb
        return resize_rgb_uint8(self.source_rgb, size)[0].permute(1, 2, 0).numpy()


DEFAULT_INPUT_SIZE = (512, 1024)  # what the released DAP model was trained at


def resolve_weights(
    checkpoint: str | Path | None, model_config: Any, allow_random: bool
) -> tuple[str | Path | None, Any, tuple[int, int]]:
    """(checkpoint, model config, native input size) after applying the no-checkpoint rules."""
    if checkpoint not in (None, ""):
        return checkpoint, model_config, DEFAULT_INPUT_SIZE
    if allow_random:
        LOG.warning("NO CHECKPOINT: using RANDOM weights; the depth is meaningless (%s)", WEIGHTS_HINT)
        return None, model_config, DEFAULT_INPUT_SIZE
    embedded = embedded_model()
    if embedded is None:
        raise CheckpointError(f"no checkpoint given; {WEIGHTS_HINT}")
    LOG.warning("%s (%s)", EMBEDDED_WARNING, WEIGHTS_HINT)
    return embedded.weights, embedded.config, embedded.input_size


class DepthPredictor:
    """Wraps a DAP network with pre- and post-processing. Not thread-safe: one caller at a time."""

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        device: torch.device,
        dtype: torch.dtype,
        input_size: tuple[int, int] = (512, 1024),
        normalization: str = "imagenet",
        mask_threshold: float = 0.5,
        max_range: float = 100.0,
        checkpoint: str | None = None,
        runner: Any = None,
    ) -> None:
        """``model`` may be None when ``runner`` (an ONNX Runtime or TensorRT backend) is given."""
        if runner is None:
            runner = TorchRunner(model, device, dtype)
        self.model = model
        self.runner = runner
        self.device = runner.device
        self.dtype = runner.input_dtype  # dtype of the network input the preprocessor produces
        patch = model.config.patch_size if model is not None else 16
        self.input_size = validate_input_size(input_size, patch)
        self.preprocessor = Preprocessor(self.input_size, normalization, self.device, self.dtype)
        self.mask_threshold = mask_threshold
        self.max_range = max_range
        self.checkpoint = checkpoint
        self.weights_source = "checkpoint"  # or "embedded" (packaged demo model) or "random"
        self.backend = runner.name

    @classmethod
    def create(
        cls,
        checkpoint: str | Path | None,
        model_config: str = "vitl",
        device: str = "cpu",
        precision: str = "fp32",
        input_size: tuple[int, int] | None = None,
        normalization: str = "imagenet",
        mask_threshold: float = 0.5,
        max_range: float = 100.0,
        allow_random: bool = False,
        backend: str = "torch",
        onnx: str | Path | None = None,
        engine: str | Path | None = None,
        cuda_graph: bool = False,
        compile: bool = False,
        build_engine: bool = False,
        engine_cache_dir: str | Path | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> "DepthPredictor":
        """Validate every setting, then load the model. Raises ConfigError / CheckpointError / DapError.

        ``checkpoint`` None or "": the embedded demo model when the package ships one (loudly
        logged; its own architecture replaces ``model_config``), random weights with
        ``allow_random``, else a CheckpointError saying how to get the weights. ``input_size``
        None: the model's native size (512x1024 for the released model).

        ``backend``: torch (default), onnxruntime (needs ``onnx``), tensorrt (needs ``engine`` or
        ``onnx``; with ``build_engine`` a missing engine is built on first start, reporting through
        ``progress``), or auto (best available; the choice and why is logged). ``cuda_graph``:
        replay the network as a CUDA graph (torch and tensorrt on CUDA). ``compile``: opt-in
        torch.compile (minutes of compilation; never on by default).
        """
        from dap_ros.pipeline.backends import choose_backend, detect_capabilities

        if str(device).strip().lower() == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        choice = choose_backend(backend, detect_capabilities(), device=device, onnx=onnx, engine=engine)
        for reason in choice.reasons:
            LOG.info("backend %s -> %s: %s", backend, choice.backend, reason)
        validate_mask_threshold(mask_threshold)
        validate_max_range(max_range)
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        if choice.backend != "torch":
            return cls._create_deployed(
                choice.backend, device=device, precision=precision, input_size=input_size or DEFAULT_INPUT_SIZE,
                normalization=normalization, mask_threshold=mask_threshold, max_range=max_range, onnx=onnx,
                engine=engine, cuda_graph=cuda_graph, build_engine=build_engine, engine_cache_dir=engine_cache_dir,
                progress=progress,
            )
        requested = checkpoint
        checkpoint, model_config, native_size = resolve_weights(checkpoint, model_config, allow_random)
        weights_source = "checkpoint" if requested not in (None, "") else ("random" if checkpoint is None else "embedded")
        input_size = input_size or native_size
        config = resolve_config(model_config)
        torch_device = resolve_device(device)
        dtype = resolve_precision(precision, torch_device)
        validate_input_size(input_size, config.patch_size)
        model = load_model(checkpoint, config, device=torch_device, dtype=dtype)
        runner = TorchRunner(model, torch_device, dtype, cuda_graph=cuda_graph, compile=compile)
        LOG.info("inference: %s", runner.describe())
        predictor = cls(
            model,
            device=torch_device,
            dtype=dtype,
            input_size=input_size,
            normalization=normalization,
            mask_threshold=mask_threshold,
            max_range=max_range,
            checkpoint=None if checkpoint is None else str(checkpoint),
            runner=runner,
        )
        predictor.weights_source = weights_source
        return predictor

    @classmethod
    def _create_deployed(
        cls,
        backend: str,
        *,
        device: str,
        precision: str,
        input_size: tuple[int, int],
        normalization: str,
        mask_threshold: float,
        max_range: float,
        onnx: str | Path | None,
        engine: str | Path | None,
        cuda_graph: bool,
        build_engine: bool,
        engine_cache_dir: str | Path | None,
        progress: Callable[[str], None] | None,
    ) -> "DepthPredictor":
        """An ONNX Runtime or TensorRT predictor; the weights and precision are the file's."""
        from dap_ros.deploy.onnx_export import read_metadata
        from dap_ros.pipeline.backends import OnnxRuntimeRunner, TensorRTBackend

        height, width = validate_input_size(input_size, 16)
        torch_device = resolve_device(device)
        source = onnx
        if backend == "onnxruntime":
            runner = OnnxRuntimeRunner(onnx, torch_device)
        else:
            from dap_ros.deploy.engine_cache import detect_environment, ensure_engine
            from dap_ros.deploy.trt_build import build_engine as build

            if torch_device.type != "cuda":
                raise ConfigError("backend 'tensorrt' needs device cuda or cuda:N")
            file_precision = read_metadata(onnx).get("precision", "fp32") if onnx not in (None, "") else None
            engine_path, sidecar = ensure_engine(
                env=detect_environment(torch_device.index or 0),
                builder=lambda o, e, p: build(o, e, precision=p, device_index=torch_device.index or 0,
                                             log=progress or LOG.info),
                onnx_path=onnx or None,
                engine_path=engine or None,
                precision=file_precision,
                input_shape=(1, 3, height, width),
                build_if_missing=build_engine,
                cache_dir=engine_cache_dir,
                progress=progress or LOG.info,
            )
            runner = TensorRTBackend(engine_path, torch_device, sidecar.precision, cuda_graph=cuda_graph)
            source = engine_path
        shape = tuple(runner.input_shape)
        if len(shape) != 4 or shape[1] != 3 or tuple(shape[2:]) != (height, width):
            raise ConfigError(
                f"{Path(str(source)).name} takes input {list(shape)} but the input size is {height}x{width}: "
                f"set the input size to match or re-export with --height {height} --width {width}"
            )
        if isinstance(shape[0], int) and shape[0] != 1:
            raise ConfigError(f"{Path(str(source)).name} was exported for batch {shape[0]}; the predictor runs batch 1 "
                              "(export with --batch 1, or --dynamic-batch)")
        if runner.precision != precision:
            LOG.info("precision %s comes from %s (the requested %s applies to the torch backend only)",
                     runner.precision, Path(str(source)).name, precision)
        LOG.info("inference: %s", runner.describe())
        return cls(
            None,
            device=runner.device,
            dtype=runner.input_dtype,
            input_size=(height, width),
            normalization=normalization,
            mask_threshold=mask_threshold,
            max_range=max_range,
            checkpoint=str(source),
            runner=runner,
        )

    @property
    def mask_threshold(self) -> float:
        return self._mask_threshold

    @mask_threshold.setter
    def mask_threshold(self, value: float) -> None:
        self._mask_threshold = validate_mask_threshold(value)

    @property
    def max_range(self) -> float:
        return self._max_range

    @max_range.setter
    def max_range(self, value: float) -> None:
        self._max_range = validate_max_range(value)

    @property
    def precision(self) -> str:
        return self.runner.precision

    @property
    def normalization(self) -> str:
        return self.preprocessor.normalization

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @staticmethod
    def check_image(rgb: np.ndarray) -> None:
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            shape = getattr(rgb, "shape", None)
            raise ImageError(f"expected a uint8 (H, W, 3) RGB array, got {type(rgb).__name__} {shape}")
        if rgb.shape[0] == 0 or rgb.shape[1] == 0:
            raise ImageError(f"image has zero size {rgb.shape[1]}x{rgb.shape[0]}")

    @torch.inference_mode()
    def predict(
        self, rgb: np.ndarray, output_size: tuple[int, int] | None = None, range_out: np.ndarray | None = None
    ) -> DepthResult:
        """Run one uint8 (H, W, 3) RGB panorama; outputs at ``output_size`` (default: the input's).

        ``range_out``: a writable float32 array of the output size that receives the range (the
        node passes its depth message's payload, saving a 7 MB copy per frame at 1920x960).
        """
        self.check_image(rgb)
        size = tuple(rgb.shape[:2]) if output_size is None else (int(output_size[0]), int(output_size[1]))
        out = None
        if range_out is not None:
            if range_out.shape != size or range_out.dtype != np.float32 or not range_out.flags.c_contiguous:
                raise ValueError(f"range_out must be a contiguous float32 array of shape {size}")
            out = torch.from_numpy(range_out)
        t0 = time.perf_counter()
        x = self.preprocessor(rgb)
        self._sync()
        t1 = time.perf_counter()
        pred_depth, pred_mask = self.runner(x)
        self._sync()
        t2 = time.perf_counter()
        range_t, in_range_t = postprocess(pred_depth, pred_mask, size, self.mask_threshold, self.max_range, out)
        range_m = range_out if range_out is not None else range_t.cpu().numpy()
        in_range = in_range_t.cpu().numpy()
        t3 = time.perf_counter()
        timings = {"preprocess": t1 - t0, "inference": t2 - t1, "postprocess": t3 - t2}
        return DepthResult(range_m=range_m, in_range=in_range, timings=timings, source_rgb=rgb)
