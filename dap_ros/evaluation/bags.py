"""ROS 2 bags through ``rosbags`` (pure Python; sqlite3 .db3 and MCAP; no ROS installation).

Reading: :class:`FrameSource` yields image frames (Image or CompressedImage) paired with ground
truth depth images by header stamp and records where reading stopped when a bag is truncated or
corrupt. Decoding of colour images reuses the node's decoders (``dap_ros.ros.decoding``), which
only touch ``height``/``width``/``step``/``encoding``/``data`` and so accept rosbags messages.

Writing: :class:`BagWriter` writes already-serialized CDR messages with explicit offered QoS
profiles in the metadata (``ros2 bag play`` then does not have to guess); :func:`image_message`
and :func:`compressed_message` build the camera-side messages of ``make-bag`` as rosbags
messages, so that no ROS installation is needed (``BagWriter.serialize`` turns them into CDR).
"""
from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dap_ros.errors import DapError

LOG = logging.getLogger("dap_ros")

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
DISTROS = ("humble", "jazzy", "kilted")
DEFAULT_DISTRO = "kilted"
STORAGES = {"sqlite3": ".db3", "mcap": ".mcap"}
BAG_VERSION = 8  # rosbag2 metadata v8: QoS as a YAML string, readable by Humble through Kilted


class BagError(DapError):
    """A bag cannot be opened, lacks a topic, or cannot be written."""


def _require_rosbags() -> None:
    try:
        import rosbags  # noqa: F401
    except ImportError:
        raise BagError("reading and writing bags needs the 'rosbags' package: pip install 'dap_ros[eval]'") from None


def typestore(distro: str | None):
    """rosbags typestore of a ROS 2 distribution (humble, jazzy, kilted; default kilted)."""
    _require_rosbags()
    from rosbags.typesys import Stores, get_typestore

    name = (distro or DEFAULT_DISTRO).strip().lower()
    if name not in DISTROS:
        raise BagError(f"unknown ROS distribution {distro!r}; use one of {', '.join(DISTROS)}")
    return get_typestore(getattr(Stores, f"ROS2_{name.upper()}"))


def stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


# --- depth images ---------------------------------------------------------------------------

def depth_image_to_metres(msg: Any) -> np.ndarray:
    """Ground-truth depth Image -> (H, W) float32 metres (REP 117: NaN invalid, +Inf no return).

    32FC1: metres as stored. 16UC1 / mono16: millimetres, 0 -> NaN (invalid).
    """
    encoding = msg.encoding.strip().upper()
    dtypes = {"32FC1": np.dtype("f4"), "64FC1": np.dtype("f8"), "16UC1": np.dtype("u2"), "MONO16": np.dtype("u2")}
    if encoding not in dtypes:
        raise DapError(f"ground truth encoding {msg.encoding!r} is not supported (use 32FC1 metres or 16UC1 mm)")
    dtype = dtypes[encoding].newbyteorder(">" if msg.is_bigendian else "<")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row = width * dtype.itemsize
    data = np.frombuffer(memoryview(msg.data), dtype=np.uint8)
    if height == 0 or width == 0 or step < row or data.size < step * (height - 1) + row:
        raise DapError(f"ground truth image {width}x{height} {msg.encoding} step {step} has {data.size} bytes")
    padded = np.zeros(step * height, dtype=np.uint8)
    padded[: min(data.size, padded.size)] = data[: padded.size]
    values = padded.reshape(height, step)[:, :row].copy().view(dtype).reshape(height, width)
    if encoding in ("16UC1", "MONO16"):
        return np.where(values > 0, values.astype(np.float32) / 1000.0, np.float32(np.nan)).astype(np.float32)
    return values.astype(np.float32)


# --- reading --------------------------------------------------------------------------------

@dataclass
class BagFrame:
    index: int  # 0-based, in the order frames are handed out
    log_time_ns: int  # when the image was recorded (bag time)
    stamp_ns: int  # the image header stamp
    msgtype: str  # IMAGE or COMPRESSED
    image: Any  # deserialized rosbags message
    gt: Any | None  # deserialized ground-truth Image, paired by stamp


@dataclass
class ReadProblem:
    kind: str  # "open", "storage", "message"
    message: str
    frames_read: int  # frames handed out before the problem
    last_stamp_ns: int | None


class FrameSource:
    """Iterate image frames of a bag, each with its ground truth (if a GT topic is given).

    Pairing: a GT image belongs to the image with the same header stamp (within
    ``gt_tolerance_ns``). Messages are streamed: at most ``max_pending`` unmatched images are
    held; an image older than the newest GT by more than the tolerance gets no GT.

    A storage error part-way (truncated or corrupt file) ends the iteration and is recorded in
    :attr:`problem`; a single undecodable message is skipped and counted in :attr:`skipped`.
    """

    def __init__(
        self,
        path: str | Path,
        image_topic: str,
        gt_topic: str | None = None,
        *,
        distro: str | None = None,
        gt_tolerance_ns: int = 1_000_000,
        max_frames: int | None = None,
        max_pending: int = 16,
    ) -> None:
        _require_rosbags()
        from rosbags.rosbag2 import Reader

        self.path = Path(path)
        self.image_topic = image_topic
        self.gt_topic = gt_topic
        self.gt_tolerance_ns = gt_tolerance_ns
        self.max_frames = max_frames
        self.max_pending = max_pending
        self.problem: ReadProblem | None = None
        self.skipped: list[str] = []
        self.gt_unmatched = 0
        self.gt_paired = 0  # frames handed out with their ground truth
        self.frames_read = 0
        self._stamps: dict[str, list[int]] = {"image": [], "gt": []}  # to tell why nothing paired
        self._last_stamp: int | None = None
        self.recovered: str | None = None  # set when a truncated MCAP file was opened through recovery
        self._tmpdir: Any = None
        try:
            self.reader = Reader(self.path)
            self.reader.open()
        except FileNotFoundError as exc:
            if not self.path.exists():
                raise BagError(f"bag not found: {self.path}") from None
            self.reader = self._recover(exc)  # e.g. a folder without metadata.yaml (killed recording)
        except Exception as exc:  # noqa: BLE001 - rosbags raises ReaderError, sqlite/apsw and OS errors
            self.reader = self._recover(exc)
        bag_distro = (self.reader.ros_distro or "").lower()
        self.distro = distro or (bag_distro if bag_distro in DISTROS else DEFAULT_DISTRO)
        self.typestore = typestore(self.distro)
        topics = {c.topic: c.msgtype for c in self.reader.connections}
        if image_topic not in topics:
            self.close()
            raise BagError(f"topic {image_topic!r} not in {self.path}; topics: {self._describe(topics)}")
        if topics[image_topic] not in (IMAGE, COMPRESSED):
            self.close()
            raise BagError(f"topic {image_topic!r} has type {topics[image_topic]}, expected Image or CompressedImage")
        if gt_topic is not None:
            if gt_topic not in topics:
                self.close()
                raise BagError(f"ground-truth topic {gt_topic!r} not in {self.path}; topics: {self._describe(topics)}")
            if topics[gt_topic] != IMAGE:
                self.close()
                raise BagError(f"ground-truth topic {gt_topic!r} has type {topics[gt_topic]}, expected Image")
        self.image_msgtype = topics[image_topic]
        self.connections = [c for c in self.reader.connections if c.topic in (image_topic, gt_topic)]
        self.image_count = sum(c.msgcount for c in self.reader.connections if c.topic == image_topic)
        self.start_time_ns = self.reader.start_time if self.reader.message_count else 0

    def _recover(self, exc: Exception) -> Any:
        """Open a truncated MCAP file (a recording that was killed: no summary, no footer, maybe
        half a chunk at the end) by handing rosbags a copy cut at the last complete record."""
        from rosbags.rosbag2 import Reader

        error = f"cannot open bag {self.path}: {type(exc).__name__}: {exc}"
        if self.path.suffix == ".mcap":
            mcaps = [self.path]
        else:
            mcaps = sorted(self.path.glob("*.mcap")) if self.path.is_dir() else []
        if len(mcaps) != 1:
            raise BagError(error) from None
        if mcaps[0] != self.path:  # a folder without (valid) metadata.yaml: the MCAP file may be whole
            try:
                reader = Reader(mcaps[0])
                reader.open()
                LOG.warning("bag %s: %s; reading %s directly", self.path, exc, mcaps[0].name)
                return reader
            except Exception:  # noqa: BLE001 - truncated too: go on with the recovery copy
                pass
        import tempfile

        self._tmpdir = tempfile.TemporaryDirectory(prefix="dap_ros_recovered_")
        copy = Path(self._tmpdir.name) / mcaps[0].name
        try:
            kept, size = truncated_mcap_copy(mcaps[0], copy)
            reader = Reader(copy)
            reader.open()
        except Exception:  # noqa: BLE001 - not a recoverable MCAP: report the original error
            self._tmpdir.cleanup()
            raise BagError(error) from None
        self.recovered = (
            f"{mcaps[0].name} is truncated ({exc}); read its first {kept} of {size} bytes "
            "(the complete records)"
        )
        LOG.warning("bag %s: %s", self.path, self.recovered)
        return reader

    @staticmethod
    def _describe(topics: dict[str, str]) -> str:
        return ", ".join(f"{t} ({m})" for t, m in sorted(topics.items())) or "none"

    @property
    def expected_frames(self) -> int:
        return self.image_count if self.max_frames is None else min(self.image_count, self.max_frames)

    def close(self) -> None:
        if getattr(self, "reader", None) is not None and self.reader.is_open:
            self.reader.close()
        if getattr(self, "_tmpdir", None) is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _deserialize(self, raw: bytes, msgtype: str, topic: str, log_time: int) -> Any | None:
        try:
            return self.typestore.deserialize_cdr(raw, msgtype)
        except Exception as exc:  # noqa: BLE001 - a garbled message: skip it, keep reading
            self.skipped.append(f"{topic} at bag time {log_time}: cannot deserialize ({type(exc).__name__}: {exc})")
            return None

    def _raw_messages(self) -> Iterator[tuple[str, int, bytes]]:
        try:
            for conn, log_time, raw in self.reader.messages(connections=self.connections):
                yield conn.topic, log_time, raw
        except Exception as exc:  # noqa: BLE001 - truncated/corrupt storage: stop, keep what we have
            self.problem = ReadProblem(
                "storage",
                f"{type(exc).__name__}: {exc}",
                frames_read=self.frames_read,
                last_stamp_ns=self._last_stamp,
            )

    def __iter__(self) -> Iterator[BagFrame]:
        # stamp -> [bag time, image, GT or None]; handed out in arrival order once paired or hopeless
        pending: OrderedDict[int, list[Any]] = OrderedDict()
        pending_gt: OrderedDict[int, Any] = OrderedDict()
        newest_gt: int | None = None
        tol = self.gt_tolerance_ns

        def emit(stamp: int, log_time: int, image: Any, gt: Any | None) -> BagFrame:
            frame = BagFrame(self.frames_read, log_time, stamp, self.image_msgtype, image, gt)
            self.frames_read += 1
            self.gt_paired += int(gt is not None)
            self._last_stamp = stamp
            return frame

        def done() -> bool:
            return self.max_frames is not None and self.frames_read >= self.max_frames

        if done():
            return
        for topic, log_time, raw in self._raw_messages():
            if topic == self.image_topic:
                msg = self._deserialize(raw, self.image_msgtype, topic, log_time)
                if msg is None:
                    continue
                stamp = stamp_ns(msg.header)
                self._stamps["image"].append(stamp)
                match = next((s for s in pending_gt if abs(s - stamp) <= tol), None)
                pending[stamp] = [log_time, msg, None if match is None else pending_gt.pop(match)]
            else:
                gt = self._deserialize(raw, IMAGE, topic, log_time)
                if gt is None:
                    continue
                stamp = stamp_ns(gt.header)
                self._stamps["gt"].append(stamp)
                newest_gt = stamp if newest_gt is None else max(newest_gt, stamp)
                match = next((s for s, e in pending.items() if e[2] is None and abs(s - stamp) <= tol), None)
                if match is not None:
                    pending[match][2] = gt
                else:
                    pending_gt[stamp] = gt
            # hand out, in order, frames that are paired or can no longer be (GT passed them)
            while pending and not done():
                stamp, (log, image, gt) = next(iter(pending.items()))
                hopeless = newest_gt is not None and stamp < newest_gt - tol
                if self.gt_topic is None or gt is not None or hopeless or len(pending) > self.max_pending:
                    del pending[stamp]
                    yield emit(stamp, log, image, gt)
                else:
                    break
            while len(pending_gt) > self.max_pending:
                pending_gt.popitem(last=False)
                self.gt_unmatched += 1
            if done():
                return
        for stamp, (log, image, gt) in list(pending.items()):
            if done():
                return
            yield emit(stamp, log, image, gt)
        self.gt_unmatched += len(pending_gt)
        if self.recovered and self.problem is None:
            self.problem = ReadProblem("truncated", self.recovered, self.frames_read, self._last_stamp)

    @property
    def gt_messages(self) -> int:
        """Ground-truth messages read (decodable ones)."""
        return len(self._stamps["gt"])

    def nearest_gt_offset_ns(self) -> int | None:
        """GT stamp minus image stamp of the closest pair read (signed); None without both."""
        import bisect

        images = sorted(self._stamps["image"])
        best: int | None = None
        for gt in self._stamps["gt"]:
            i = bisect.bisect_left(images, gt)
            for image in images[max(0, i - 1):i + 1]:
                if best is None or abs(gt - image) < abs(best):
                    best = gt - image
        return best


MCAP_MAGIC = b"\x89MCAP0\r\n"


def truncated_mcap_copy(src: Path, dst: Path) -> tuple[int, int]:
    """Copy the complete top-level records of an MCAP file (magic, then records of opcode,
    uint64 length, body) and close the copy with an empty footer, so rosbags can scan it.
    Returns (bytes kept, file size). Only record boundaries are read here; rosbags decodes."""
    import struct

    size = src.stat().st_size
    with open(src, "rb") as f:
        if f.read(8) != MCAP_MAGIC:
            raise ValueError("not an MCAP file")
        end = 8
        while end + 9 <= size:
            f.seek(end)
            op, length = struct.unpack("<BQ", f.read(9))
            if op == 0x02 or end + 9 + length > size:  # footer, or a record cut short
                break
            end += 9 + length
        f.seek(0)
        with open(dst, "wb") as out:
            remaining = end
            while remaining:
                block = f.read(min(remaining, 1 << 24))
                out.write(block)
                remaining -= len(block)
            out.write(struct.pack("<BQQQI", 0x02, 20, 0, 0, 0) + MCAP_MAGIC)  # footer: no summary
    return end, size


# --- writing --------------------------------------------------------------------------------

def qos_profile(reliability: str = "reliable", depth: int = 10):
    """A rosbags QoS profile: keep-last ``depth``, ``reliability``, volatile, default timing."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    zero = QosTime(0, 0)  # 0 = the rmw default ("infinite") for deadline, lifespan and lease
    return Qos(
        history=QosHistory.KEEP_LAST,
        depth=int(depth),
        reliability=QosReliability.RELIABLE if reliability == "reliable" else QosReliability.BEST_EFFORT,
        durability=QosDurability.VOLATILE,
        deadline=zero,
        lifespan=zero,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=zero,
        avoid_ros_namespace_conventions=False,
    )


def storage_for(path: Path, storage: str | None) -> str:
    """'sqlite3' or 'mcap': as given, else from the path's suffix (.mcap), else sqlite3."""
    if storage:
        if storage not in STORAGES:
            raise BagError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
        return storage
    return "mcap" if path.suffix.lower() == ".mcap" else "sqlite3"


SQLITE_MAGIC = b"SQLite format 3\x00"
_MAGIC = {".mcap": MCAP_MAGIC, ".db3": SQLITE_MAGIC}
_SQLITE_SIDECARS = ("-journal", "-wal", "-shm")  # left next to a .db3 by a writer that was killed


def _starts_with(path: Path, magic: bytes) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(magic)) == magic
    except OSError:
        return False


def _entries(folder: Path) -> list[Path] | None:
    """The entries of a real (not symlinked) folder; None for anything else or an unreadable one."""
    if folder.is_symlink() or not folder.is_dir():
        return None
    try:
        return list(folder.iterdir())
    except OSError:
        return None


def _holds_only(folder: Path, allowed: set[str]) -> bool:
    """``folder`` is a real folder whose entries are all plain files named in ``allowed``."""
    entries = _entries(folder)
    return entries is not None and all(e.name in allowed and e.is_file() and not e.is_symlink() for e in entries)


def _storage_names(name: str) -> set[str]:
    return {f"{name}{suffix}" for suffix in STORAGES.values()}


def is_written_bag(path: Path) -> bool:
    """Whether ``path`` is something BagWriter could have written, and so may replace: a folder
    holding metadata.yaml and storage files named after it (NAME.db3 / NAME.mcap) and nothing
    else, or a single .db3 / .mcap file that starts like one."""
    path = Path(path)
    if path.is_file() and not path.is_symlink():
        magic = _MAGIC.get(path.suffix.lower())
        return magic is not None and _starts_with(path, magic)
    names = {e.name for e in _entries(path) or ()}
    storage = _storage_names(path.name)
    return "metadata.yaml" in names and bool(names & storage) and _holds_only(path, storage | {"metadata.yaml"})


def partial_path(path: Path) -> Path:
    """Where a bag is written until it is complete: ``.NAME.partial/NAME`` next to the target."""
    path = Path(path)
    return path.parent / f".{path.name}.partial" / path.name


WRITER_LOCK = ".lock"  # in the partial folder, flock-ed by the writer while it writes


def _is_stale_partial(folder: Path, name: str) -> bool:
    """A partial bag of ours left by a run that was killed (maybe without metadata.yaml)."""
    entries = _entries(folder)
    if entries is None or any(e.name not in (name, WRITER_LOCK) for e in entries):
        return False
    sidecars = {f"{name}.db3{s}" for s in _SQLITE_SIDECARS}
    inner = folder / name
    return not inner.exists() or _holds_only(inner, _storage_names(name) | sidecars | {"metadata.yaml"})


def _relation(output: Path, source: Path) -> str | None:
    out, src = output.resolve(), Path(source).resolve()
    if out == src:
        return "is"
    if src in out.parents:
        return "is inside"
    if out in src.parents:
        return "contains"
    return None


def check_output_bag(path: Path, *, overwrite: bool = False, inputs: Sequence[Path] = ()) -> None:
    """Raise BagError unless a new bag can be written at ``path`` without destroying anything:
    never the input bag (nor inside it, nor around it), and with ``overwrite`` only over a bag
    we could have written. Cheap: callers run it before loading a model."""
    path = Path(path)
    for source in inputs:
        relation = _relation(path, source)
        if relation is not None:
            raise BagError(f"output bag {path} {relation} the input bag {source}; write the output elsewhere")
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise BagError(f"output bag {path} exists; pass --overwrite to replace it, or choose another path")
        if not is_written_bag(path):
            raise BagError(
                f"{path} is not a bag dap-ros could have written (a folder with metadata.yaml and "
                f"{path.name}.db3/.mcap only, or one .db3/.mcap file), so --overwrite leaves it alone; "
                "choose another path or remove it yourself"
            )
    partial = partial_path(path).parent
    if (partial.exists() or partial.is_symlink()) and not _is_stale_partial(partial, path.name):
        raise BagError(f"{partial} is in the way and is not a partial bag of dap-ros; remove it or choose "
                       "another output path")
    if _being_written(partial):
        raise BagError(f"another dap-ros process is writing {path} now (lock in {partial}); wait for it to "
                       "finish or choose another output path")


def _being_written(partial: Path) -> bool:
    """True while a live writer holds the partial folder's lock (a killed writer's lock is gone)."""
    import fcntl

    try:
        fd = os.open(partial / WRITER_LOCK, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


class BagWriter:
    """Writes serialized (CDR) messages into a new rosbag2 directory (sqlite3 or MCAP).

    The bag is written to :func:`partial_path` and moved to ``path`` by :meth:`close`, so that a
    run that fails (:meth:`abort`, or an exception in a ``with`` block) leaves the target as it
    was: no half-written bag that blocks the rerun, and an ``overwrite`` that fails keeps the old
    bag. ``inputs``: bags being read, which the output must never replace or sit in. A path named
    after its storage (``x.mcap``, ``x.db3``) becomes that one storage file, as ``ros2 bag`` and
    :class:`FrameSource` read it (not a folder ``x.mcap`` holding ``x.mcap.mcap``); any other name a
    rosbag2 folder.
    """

    def __init__(
        self,
        path: str | Path,
        storage: str | None = None,
        *,
        distro: str | None = None,
        overwrite: bool = False,
        inputs: Sequence[Path] = (),
    ) -> None:
        _require_rosbags()
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.path = Path(path)
        self.storage = storage_for(self.path, storage)
        self.single_file = self.path.suffix.lower() == STORAGES[self.storage]
        self.overwrite = overwrite
        check_output_bag(self.path, overwrite=overwrite, inputs=inputs)
        self.distro = distro or DEFAULT_DISTRO
        self.typestore = typestore(self.distro)
        self._partial = partial_path(self.path)
        plugin = StoragePlugin.MCAP if self.storage == "mcap" else StoragePlugin.SQLITE3
        self._lock_fd: int | None = None
        try:
            if self._partial.parent.exists():
                _remove(self._partial.parent)  # checked above: left by a run that was killed
            self._claim_partial_folder()
            self._writer = Writer(self._partial, version=BAG_VERSION, storage_plugin=plugin)
            self._writer.set_custom_data("dap_ros.typestore", self.distro)
            self._writer.open()
        except BagError:
            self._discard()
            raise
        except Exception as exc:  # noqa: BLE001 - rosbags WriterError, OS errors
            self._discard()
            raise BagError(f"cannot create bag {self.path}: {exc}") from None
        self._connections: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        self.closed = False

    def _claim_partial_folder(self) -> None:
        """Create the partial folder already holding our lock (built aside, renamed into place), so
        that a second writer of the same target sees the lock, never a folder it may clear."""
        import fcntl
        import tempfile

        folder = self._partial.parent
        folder.parent.mkdir(parents=True, exist_ok=True)
        aside = Path(tempfile.mkdtemp(prefix=f"{folder.name}.", dir=folder.parent))
        self._lock_fd = os.open(aside / WRITER_LOCK, os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            os.rename(aside, folder)  # fails when another writer's folder appeared meanwhile
        except OSError:
            os.close(self._lock_fd)
            self._lock_fd = None
            _remove(aside)
            raise BagError(f"another dap-ros process is writing {self.path} now ({folder} appeared); wait for it "
                           "to finish or choose another output path") from None

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def add_topic(self, topic: str, msgtype: str, qos: Any) -> None:
        self._connections[topic] = self._writer.add_connection(
            topic, msgtype, typestore=self.typestore, offered_qos_profiles=[qos]
        )
        self.counts[topic] = 0

    def write(self, topic: str, log_time_ns: int, cdr: bytes | memoryview) -> None:
        self._writer.write(self._connections[topic], int(log_time_ns), cdr)
        self.counts[topic] += 1

    def serialize(self, msg: Any, msgtype: str) -> bytes:
        return bytes(self.typestore.serialize_cdr(msg, msgtype))

    def close(self) -> None:
        """Finish the bag and move it into place (replacing the old bag when ``overwrite``)."""
        if self.closed:
            return
        self.closed = True
        try:
            self._writer.close()
        except Exception as exc:  # noqa: BLE001
            self._discard()
            raise BagError(f"cannot finish bag {self.path}: {exc}") from None
        if self.path.exists() or self.path.is_symlink():
            if not (self.overwrite and is_written_bag(self.path)):  # something appeared there meanwhile
                raise BagError(f"{self.path} appeared while the bag was written; the bag is in {self._partial}")
            _remove(self.path)
        if self.single_file:  # the QoS profiles are in the storage file too; metadata.yaml goes
            (self._partial / f"{self._partial.name}{STORAGES[self.storage]}").rename(self.path)
            self._discard()
        else:
            self._partial.rename(self.path)
            (self._partial.parent / WRITER_LOCK).unlink()
            self._release_lock()
            self._partial.parent.rmdir()

    def abort(self) -> None:
        """Drop the unfinished bag; the target stays as it was."""
        if self.closed:
            return
        self.closed = True
        try:
            self._writer.close()
        except Exception:  # noqa: BLE001, S110 - it is being thrown away
            pass
        self._discard()

    def _discard(self) -> None:
        import shutil

        if self._lock_fd is not None:  # ours: remove it while still holding the lock
            shutil.rmtree(self._partial.parent, ignore_errors=True)
        self._release_lock()

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def header(ts: Any, stamp: int, frame_id: str) -> Any:
    """A rosbags std_msgs/Header for ``stamp`` (ns since the epoch)."""
    Time = ts.types["builtin_interfaces/msg/Time"]
    Header = ts.types["std_msgs/msg/Header"]
    return Header(stamp=Time(sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000), frame_id=frame_id)


def image_message(ts: Any, stamp: int, frame_id: str, pixels: np.ndarray, encoding: str) -> Any:
    """A rosbags sensor_msgs/Image from an (H, W[, C]) array (little endian)."""
    Image = ts.types[IMAGE]
    pixels = np.ascontiguousarray(pixels)
    if pixels.dtype.byteorder == ">":
        pixels = pixels.astype(pixels.dtype.newbyteorder("<"))
    channels = pixels.shape[2] if pixels.ndim == 3 else 1
    return Image(
        header=header(ts, stamp, frame_id),
        height=int(pixels.shape[0]),
        width=int(pixels.shape[1]),
        encoding=encoding,
        is_bigendian=0,
        step=int(pixels.shape[1] * channels * pixels.dtype.itemsize),
        data=pixels.reshape(-1).view(np.uint8),
    )


def compressed_message(ts: Any, stamp: int, frame_id: str, data: bytes, fmt: str) -> Any:
    CompressedImage = ts.types[COMPRESSED]
    return CompressedImage(header=header(ts, stamp, frame_id), format=fmt, data=np.frombuffer(data, dtype=np.uint8))
