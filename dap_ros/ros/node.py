"""The DAP depth node: 360-degree ERP image in; depth, range mask, points, scan out.

One class serves both ways of running it (parameter ``lifecycle``):

- plain (default): the node configures and activates itself at start; a bad parameter or a
  missing checkpoint ends the process with a one-line error and exit code 2 or 1;
- managed: it starts unconfigured and follows a lifecycle manager (configure loads the model,
  activate starts the topics, deactivate stops them, cleanup unloads the model).

Threads: the executor runs the subscription callback (it only drops the message into a one-frame
slot), parameter changes and the diagnostics timer; an ``InferenceWorker`` thread decodes, runs
the model, builds and publishes. See docs/ros_node.md for topics, parameters and QoS.
"""
from __future__ import annotations

import re
import signal
import sys
import time
import traceback
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from sensor_msgs.msg import CompressedImage, Image, Imu, LaserScan, PointCloud2
from std_msgs.msg import Header

from dap_ros.errors import CameraFileError, CheckpointError, ConfigError, DapError, ImageError
from dap_ros.ros import diagnostics as diag
from dap_ros.ros import params as prm
from dap_ros.ros.cdr_publish import CdrPublisher
from dap_ros.ros.decoding import InputRejected, check_stamp, compressed_to_rgb, image_to_rgb
from dap_ros.ros.inputs import ImuTilt, LensPairer, stamp_ns, tilt_degrees
from dap_ros.ros.log_bridge import library_log_to
from dap_ros.ros.memory import tune_malloc_for_large_frames
from dap_ros.ros.outputs import MSG_TYPES, OUTPUTS, TOPICS, FrameOutputs, OutputBuilder, enabled_outputs
from dap_ros.ros.point_cloud import point_kernel
from dap_ros.ros.worker import InferenceWorker

NODE_NAME = prm.NODE_NAME
EXIT_CHECKPOINT = 1  # missing / wrong weights
EXIT_PARAMETERS = 2  # a parameter is invalid (or names something this machine lacks)
_MESSAGE_CLASSES = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/PointCloud2": PointCloud2,
                    "sensor_msgs/msg/LaserScan": LaserScan}

SUCCESS = TransitionCallbackReturn.SUCCESS
FAILURE = TransitionCallbackReturn.FAILURE


@dataclass(frozen=True)
class Frame:
    msg: Any  # Image or CompressedImage, or the (lens 0, lens 1) pair of a two-topic fisheye camera
    received: float  # time.monotonic() at the callback

    @property
    def messages(self) -> tuple[Any, ...]:
        return self.msg if isinstance(self.msg, tuple) else (self.msg,)


def qos_profile(reliability: str, depth: int) -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.VOLATILE,
    )


def create_predictor(p: prm.NodeParams, logger: Any, progress: Any = None) -> Any:
    """Load the model for ``p``; DapError with a one-line message naming the parameter otherwise."""
    from dap_ros.pipeline import DepthPredictor

    if not p.checkpoint and p.allow_random_weights:
        logger.warning(
            "checkpoint is empty and allow_random_weights is true: running RANDOM WEIGHTS. "
            "The depth is MEANINGLESS (plumbing tests only); set 'checkpoint' to the DAP weights."
        )
    try:
        return DepthPredictor.from_spec(p.model_spec(), p.camera_spec(), progress=progress)
    except CheckpointError as exc:
        raise CheckpointError(f"parameter 'checkpoint' ({p.checkpoint or 'empty'}): {exc}") from None
    except CameraFileError as exc:
        raise ConfigError(f"camera parameters (input_projection/fisheye_calibration/self_mask): {exc}") from None
    except ConfigError as exc:
        raise ConfigError(f"model parameters (model_config/backend/device/precision/input size): {exc}") from None


class DepthNode(LifecycleNode):
    """ERP image -> depth (32FC1 m), range_mask (mono8), points, scan, depth/colorized, diagnostics."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        prm.declare(self)
        self.managed = self.get_parameter("lifecycle").value is True
        self.params: prm.NodeParams | None = None  # set at configure, swapped on parameter changes
        self.predictor: Any = None
        self.stats = diag.NodeStats()
        self.startup_error: DapError | None = None
        self.exit_code = 0
        self._throttle = diag.KindThrottle()
        self._outputs = OutputBuilder()  # serialized messages reused frame after frame, one frame at a time
        # a helper thread builds the point cloud (the costliest message) while the inference
        # thread builds and publishes the images: message building uses both cores, as inference does
        self._helper: ThreadPoolExecutor | None = None
        self._pubs: dict[str, CdrPublisher] = {}
        self.published: Counter[str] = Counter()  # messages built and handed to publish, per output
        self._subs: list[Any] = []
        self._lenses: LensPairer | None = None  # two-topic fisheye cameras
        self._imu: ImuTilt | None = None  # leveling: imu
        self._tilt: np.ndarray | None = None  # the last frame's (diagnostics)
        self._imu_stale = 0  # frames levelled statically for want of an IMU sample
        self._last_filtered = 0  # self-filtered / unseen pixels of the last frame
        self._worker: InferenceWorker[Frame] | None = None
        self._diag_pub: Any = None
        self._diag_timer: Any = None
        self._active_since: float | None = None
        self._warn_unknown_overrides()
        self.add_on_set_parameters_callback(self._on_set_parameters)

    # --- plain-node start and stop -------------------------------------------------------------

    def start(self) -> int:
        """Configure and activate (plain mode). Returns 0 or the exit code for the failure."""
        if self.trigger_configure() != SUCCESS:
            return self.exit_code or EXIT_PARAMETERS
        if self.trigger_activate() != SUCCESS:
            return 1
        return 0

    def close(self) -> None:
        """Stop the worker and free everything (idempotent); then destroy the node."""
        self._stop_processing()
        self._release()
        self.destroy_node()

    # --- lifecycle transitions ----------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configure()
        except DapError as exc:
            return self._start_failed(exc, EXIT_CHECKPOINT if isinstance(exc, CheckpointError) else EXIT_PARAMETERS)
        except Exception as exc:  # noqa: BLE001 - any start failure (a driver, rclpy) must still say why, in one line
            if not self.context.ok():  # a signal shut the context down mid-start (rclpy fails then): a stop
                self.get_logger().info("stopped during start-up")
                self._release()
                return FAILURE
            self.get_logger().debug(traceback.format_exc())
            return self._start_failed(DapError(f"start failed: {describe_exception(exc)}"), EXIT_PARAMETERS)
        return super().on_configure(state)

    def _start_failed(self, exc: DapError, exit_code: int) -> TransitionCallbackReturn:
        self.startup_error, self.exit_code = exc, exit_code
        self.get_logger().fatal(str(exc))
        self._release()  # nothing half-configured stays behind: a manager may configure again
        return FAILURE

    def _configure(self) -> None:
        """Load the model, create the publishers and the diagnostics timer."""
        # Diagnostics stay on while inactive: a manager can see why a node is not producing, and
        # a TensorRT engine build at start (minutes) reports its progress there.
        if self._diag_pub is None:
            self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        p = prm.NodeParams.from_values(prm.read(self))
        with library_log_to(self.get_logger()):
            predictor = create_predictor(p, self.get_logger(), progress=self._report_startup_progress)
        self.params, self.predictor = p, predictor
        qos = qos_profile(p.qos_output_reliability, p.qos_output_depth)
        for name in OUTPUTS:
            msg_type = _MESSAGE_CLASSES[MSG_TYPES[name]]
            self._pubs[name] = CdrPublisher(self.create_lifecycle_publisher(msg_type, TOPICS[name], qos))
        if self._pubs["depth"].fallback_reason:
            self.get_logger().info(f"publishing through rclpy: {self._pubs['depth'].fallback_reason}")
        self._diag_timer = self.create_timer(p.diagnostics_period_sec, self._publish_diagnostics)
        height, width = predictor.input_size
        self.get_logger().info(
            f"model ready: backend {predictor.backend}, device {predictor.device}, precision "
            f"{predictor.precision}, input {height}x{width}, weights {predictor.weights.describe()}"
        )
        self._warm_up_point_kernel(p)
        if predictor.weights.kind == "embedded":
            from dap_ros.model.embedded import EMBEDDED_WARNING

            self.get_logger().warning(EMBEDDED_WARNING)

    def _warm_up_point_kernel(self, p: prm.NodeParams) -> None:
        """Compile the optional numba point-cloud kernel now rather than on the first frames."""
        kernel = point_kernel() if p.points_enable else None
        if kernel is None:
            return
        t0 = time.monotonic()
        kernel.warm_up()
        self.get_logger().info(f"point cloud kernel (numba) ready in {time.monotonic() - t0:.1f} s")

    def _report_startup_progress(self, message: str) -> None:
        """Progress of a long start-up step (TensorRT engine build): log and diagnostic."""
        self.get_logger().info(message)
        array = diag.diagnostic_array(
            self.get_clock().now().to_msg(),
            f"{self.get_fully_qualified_name()}: depth",
            "starting",
            diag.WARN,
            f"starting: {message}",
            [("state", "configuring")],
        )
        self._diag_pub.publish(array)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        p = self.params
        assert p is not None
        result = super().on_activate(state)  # enables the lifecycle publishers
        self._helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dap_points")
        self._worker = InferenceWorker(self._process, self._on_worker_crash)
        self._worker.start()
        compressed = p.input_transport == "compressed"
        msg_type, suffix = (CompressedImage, "/compressed") if compressed else (Image, "")
        calibration = self.predictor.camera.calibration
        if calibration is not None and calibration.layout == "two_topics":
            self._lenses = LensPairer(int(p.fisheye_sync_tolerance_ms * 1e6))
            callbacks = {f"image/lens{i}{suffix}": (lambda msg, i=i: self._on_lens(i, msg)) for i in (0, 1)}
        else:
            callbacks = {f"image{suffix}": self._on_image}
        for topic, callback in callbacks.items():
            self._subs.append(self.create_subscription(
                msg_type, topic, callback, qos_profile(p.qos_input_reliability, p.qos_input_depth),
                event_callbacks=SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_qos)))
        if p.leveling == "imu":
            self._imu = ImuTilt()
            self._subs.append(self.create_subscription(Imu, "imu", self._imu.add, qos_profile("best_effort", 50)))
        self._active_since = time.monotonic()
        topics = ", ".join(sub.topic_name for sub in self._subs)
        self.get_logger().info(f"subscribed to {topics} ({p.input_transport}, {p.input_projection}, "
                               f"leveling {p.leveling})")
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        self._release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        self._release()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        self._release()
        return super().on_error(state)

    def _stop_processing(self) -> None:
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs.clear()
        self._lenses = self._imu = None
        if self._worker is not None:
            if not self._worker.stop(timeout=30.0):
                self.get_logger().error("inference thread did not stop within 30 s")
            self._worker = None
        if self._helper is not None:
            self._helper.shutdown(wait=True)
            self._helper = None
        self._active_since = None

    def _release(self) -> None:
        for pub in self._pubs.values():
            self.destroy_lifecycle_publisher(pub.publisher)
        self._pubs.clear()
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        if self._diag_pub is not None:
            self.destroy_publisher(self._diag_pub)
            self._diag_pub = None
        self.predictor = None
        self.params = None

    # --- input ---------------------------------------------------------------------------------

    def _on_image(self, msg: Any) -> None:
        now = time.monotonic()
        self.stats.input(now)
        worker = self._worker
        if worker is not None and worker.submit(Frame(msg, now)):
            self.stats.drop()

    def _on_lens(self, lens: int, msg: Any) -> None:
        pairer = self._lenses
        pair = pairer.add(lens, msg) if pairer is not None else None
        if pair is not None:
            self._on_image(pair)

    def _on_incompatible_qos(self, info: Any) -> None:
        p = self.params
        self._log_problem(
            "incompatible_qos",
            "a publisher on the input topic has QoS incompatible with this subscription "
            f"(qos.input.reliability={p.qos_input_reliability if p else '?'}); a best-effort "
            "(sensor-data) camera driver needs qos.input.reliability: best_effort",
        )

    # --- processing (inference thread) ---------------------------------------------------------

    def _process(self, frame: Frame) -> None:
        p, predictor = self.params, self.predictor
        if p is None or predictor is None:
            return
        t0 = time.perf_counter()
        first = frame.messages[0]
        try:
            images = self._decode(p, frame)
            native = predictor.output_size(images)  # checks a fisheye frame against its calibration
        except InputRejected as exc:
            self._fail(exc.kind, f"frame skipped: {exc}")
            return
        except ImageError as exc:
            self._fail("frame_size", f"frame skipped: {exc}")
            return
        t1 = time.perf_counter()
        header = Header(stamp=first.header.stamp, frame_id=p.output_frame_id or first.header.frame_id)
        if not header.frame_id:
            self._log_problem("no_frame_id", "input has an empty frame_id and parameter 'frame_id' is empty")
        size = native if p.output_size == "input" else tuple(predictor.input_size)
        tilt = self._tilt_for(p, stamp_ns(first)) if self._imu is not None else None
        outputs = self._outputs.begin(p, header, size, self._subscribed_outputs(p))
        try:  # the predictor writes the range straight into the depth message
            result = predictor.predict(images, size, range_out=outputs.range_out, tilt=tilt)
            self._last_filtered = result.filtered
        except Exception as exc:  # noqa: BLE001 - e.g. CUDA out of memory: skip the frame, keep going
            self._fail("model", f"inference failed, frame skipped: {type(exc).__name__}: {exc}")
            self._free_accelerator_memory()
            return
        try:
            build_sec, publish_sec = self._publish_outputs(outputs, result)
        except Exception as exc:  # noqa: BLE001 - a failed output must not stop the next frame
            if not self.context.ok():
                return  # shutting down (Ctrl-C): the publishers are already gone
            self._fail("output", f"building or publishing outputs failed: {type(exc).__name__}: {exc}")
            return
        stages = {"decode": t1 - t0, **result.timings, "build": build_sec, "publish": publish_sec}
        age = (self.get_clock().now() - Time.from_msg(header.stamp)).nanoseconds * 1e-9
        self.stats.output(time.monotonic(), stages, age)

    def _decode(self, p: prm.NodeParams, frame: Frame) -> Any:
        """The frame's image(s) as uint8 RGB arrays: one, or a tuple of two lens images."""
        decode = compressed_to_rgb if p.input_transport == "compressed" else image_to_rgb
        panorama = p.input_projection == "erp"
        for msg in frame.messages:
            check_stamp(msg)
        images = tuple(decode(msg, p.max_input_width, panorama) for msg in frame.messages)
        return images if len(images) > 1 else images[0]

    def _tilt_for(self, p: prm.NodeParams, stamp: int) -> np.ndarray | None:
        """The IMU's levelling rotation for a frame, or None (static levelling, WARN) when stale."""
        tilt, problem = self._imu.at(stamp, int(p.imu_timeout_sec * 1e9))
        if tilt is None:
            self._imu_stale += 1
            self._log_problem("imu_stale", f"levelling this frame statically (as if frame_id were level): {problem} "
                                           f"(imu.timeout_sec={p.imu_timeout_sec:g})")
        self._tilt = tilt
        return tilt

    def _subscribed_outputs(self, p: prm.NodeParams) -> tuple[str, ...]:
        """The enabled outputs somebody listens to (lazy: nothing is built for the others)."""
        return tuple(name for name in enabled_outputs(p) if self._pubs[name].get_subscription_count() > 0)

    def _publish_outputs(self, outputs: FrameOutputs, result: Any) -> tuple[float, float]:
        """Build and publish the frame's outputs; returns (build s, publish s) of this thread's wall time.

        The point cloud (the costliest message) is built and published on the helper thread while
        this thread does the others: both cores work, as during inference. Waiting for the helper
        at the end counts as publish time up to the helper's own publish time, the rest as build.
        """
        names = list(outputs.names)
        helper, future = self._helper, None
        if helper is not None and len(names) > 1 and names[0] == "points":
            future = helper.submit(self._build_and_publish, outputs, "points", result)
            names = names[1:]
        build = publish = 0.0
        try:
            for name in names:
                b, pub_s = self._build_and_publish(outputs, name, result)
                build, publish = build + b, publish + pub_s
        except Exception:
            if future is not None:  # the next frame reuses the buffers the helper is reading
                wait([future])
            raise
        if future is not None:
            t0 = time.perf_counter()
            _, helper_publish = future.result()
            waited = time.perf_counter() - t0
            publish += min(waited, helper_publish)
            build += waited - min(waited, helper_publish)
        return build, publish

    def _build_and_publish(self, outputs: FrameOutputs, name: str, result: Any) -> tuple[float, float]:
        t0 = time.perf_counter()
        message = outputs.build(name, result)
        t1 = time.perf_counter()
        self.published[name] += 1  # counted first: a subscriber may see the message before publish returns
        self._pubs[name].publish(message.cdr)
        return t1 - t0, time.perf_counter() - t1

    def _free_accelerator_memory(self) -> None:
        device = getattr(self.predictor, "device", None)
        if getattr(device, "type", None) == "cuda":
            import torch

            torch.cuda.empty_cache()

    def _fail(self, kind: str, message: str) -> None:
        self.stats.failure(kind, message)
        self._log_problem(kind, message)

    def _log_problem(self, kind: str, message: str) -> None:
        suppressed = self._throttle.check(kind, time.monotonic())
        if suppressed is not None:
            more = f" ({suppressed} more of this kind since the last report)" if suppressed else ""
            self.get_logger().warning(f"[{kind}] {message}{more}")

    def _on_worker_crash(self, exc: BaseException) -> None:
        self._fail("internal", f"unexpected {type(exc).__name__}: {exc}")

    # --- parameters ----------------------------------------------------------------------------

    def _on_set_parameters(self, changes: list[Parameter]) -> SetParametersResult:
        ours = [c for c in changes if c.name in prm.SPEC_BY_NAME]
        if not ours:
            return SetParametersResult(successful=True)
        current = prm.read(self)
        loaded = self.params is not None
        for c in ours:  # checked first: "restart" is the useful answer even for a bad value
            restart = c.name == "lifecycle" or (loaded and c.name in prm.RESTART_ONLY)
            if restart and c.value != current[c.name]:
                how = "cleanup and configure the node" if self.managed and c.name != "lifecycle" else "restart the node"
                return SetParametersResult(
                    successful=False, reason=f"'{c.name}' is read at start only: {how} to change it"
                )
        values = dict(current)
        values.update({c.name: c.value for c in ours})
        problems = prm.problems_for({c.name for c in ours}, values, cross=loaded)
        if problems:
            return SetParametersResult(successful=False, reason="; ".join(problems))
        if loaded:
            try:
                new = prm.NodeParams.from_values(values)
            except DapError as exc:  # another, untouched parameter is invalid: keep running as is
                return SetParametersResult(successful=False, reason=str(exc))
            self._apply(new)
            self.get_logger().info("parameters updated: " + ", ".join(f"{c.name}={c.value!r}" for c in ours))
        return SetParametersResult(successful=True)

    def _apply(self, new: prm.NodeParams) -> None:
        """Switch to new run-time parameters; the worker picks them up at its next frame."""
        if self.predictor is not None:
            self.predictor.mask_threshold = new.mask_threshold
            self.predictor.max_range = new.max_range
        self.params = new

    def _warn_unknown_overrides(self) -> None:
        """A typo in the params file would otherwise be silently ignored."""
        overrides = getattr(self, "_parameter_overrides", {}) or {}
        unknown = prm.unknown_names(overrides)
        if unknown:
            self.get_logger().warning("unknown parameters ignored (typo?): " + ", ".join(unknown))

    # --- diagnostics ---------------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        p, predictor, pub = self.params, self.predictor, self._diag_pub
        if p is None or predictor is None or pub is None:
            return
        now = time.monotonic()
        snap = self.stats.snapshot(now)
        active = self._active_since is not None
        level, message = diag.level_and_message(
            snap,
            active=active,
            started_sec_ago=now - (self._active_since or now),
            stale_input_sec=p.diagnostics_stale_input_sec,
            error_after=p.diagnostics_error_after_failures,
            fallback=predictor.fallback,
        )
        info = {
            "state": "active" if active else "inactive",
            "input topic": ", ".join(sub.topic_name for sub in self._subs) or "none",
            "input projection": p.input_projection,
            "leveling": p.leveling + (f" (IMU tilt {tilt_degrees(self._tilt)}, {self._imu_stale} frames without "
                                      "a fresh IMU sample)" if p.leveling == "imu" else ""),
            "self-filtered pixels (last frame)": str(self._last_filtered),
            "backend": str(predictor.backend),
            "device": str(predictor.device),
            "precision": str(predictor.precision),
            "model config": p.model_config,
            "model file": predictor.weights.describe(),
            "network input": "x".join(str(v) for v in predictor.input_size),
        }
        if predictor.fallback:
            info["backend fallback"] = predictor.fallback
        array = diag.diagnostic_array(
            self.get_clock().now().to_msg(),
            f"{self.get_fully_qualified_name()}: depth",
            f"{predictor.backend}/{predictor.device}",
            level,
            message,
            diag.status_values(snap, info),
        )
        pub.publish(array)


def _fatal(message: str) -> int:
    """Log why the node cannot start (one line, also before rclpy is initialized); the exit code."""
    rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {message}")
    return EXIT_PARAMETERS


def describe_exception(exc: BaseException) -> str:
    """'Type: message' on one line, without rcl's source locations (', at /path/file.c:123')."""
    message = re.sub(r",? at \S+\.c:\d+", "", " ".join(str(exc).split())).strip()
    return f"{type(exc).__name__}: {message}"


def main(args: list[str] | None = None) -> int:
    """Entry point of ``depth_node`` and ``python -m dap_ros.node``; returns the exit code."""
    malloc_note = tune_malloc_for_large_frames()  # before the first multi-MB buffer
    # SIGTERM (docker stop, systemd, launch) stops the node as Ctrl-C does, during the model load
    # too: rclpy's handler, installed next, shuts the context down and then chains to this one.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        rclpy.init(args=args)
    except RuntimeError as exc:  # RCLError: a missing or unparsable --params-file, bad --ros-args
        return _fatal(describe_exception(exc))
    node: DepthNode | None = None
    code = 0
    try:
        try:
            node = DepthNode()
        except Exception as exc:  # noqa: BLE001 - e.g. a parameter ROS itself refuses
            return _fatal(describe_exception(exc))
        node.get_logger().debug(malloc_note)
        if not node.managed:
            code = node.start()
            if code and not rclpy.ok():  # Ctrl-C / SIGTERM during the start: a stop, not a failure
                code = 0
        if code == 0:
            executor = SingleThreadedExecutor()
            executor.add_node(node)
            executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RuntimeError:
        # rclpy's signal handler shuts the context down asynchronously: when that lands while spin()
        # builds its wait set, rcl raises RCLError "context is not valid" instead of
        # ExternalShutdownException (seen under load: exit code 1 and a traceback on Ctrl-C).
        # The signal's KeyboardInterrupt is then still pending (Python raises it at its next check,
        # which an error raised in C skips): the first call made here raises it, and it must not
        # escape from this clause as a traceback either.
        try:
            running = rclpy.ok()
        except KeyboardInterrupt:
            running = False
        if running:
            raise
    finally:
        if node is not None:
            node.close()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
