"""Binary little-endian PLY point clouds: float x y z, optional uchar red green blue."""
from __future__ import annotations

import os

import numpy as np

__all__ = ["write_ply", "read_ply"]

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "<i2", "int16": "<i2", "ushort": "<u2", "uint16": "<u2",
    "int": "<i4", "int32": "<i4", "uint": "<u4", "uint32": "<u4",
    "float": "<f4", "float32": "<f4", "double": "<f8", "float64": "<f8",
}


def write_ply(
    path: str | os.PathLike, points: np.ndarray, colors: np.ndarray | None = None
) -> None:
    """Write points (N, 3) (stored as float32 metres) and optional colours (N, 3) uint8 RGB."""
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must be (N, 3), got shape {pts.shape}")
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if colors is not None:
        cols = np.asarray(colors)
        if cols.shape != pts.shape:
            raise ValueError(f"colors must be (N, 3) like points {pts.shape}, got {cols.shape}")
        if cols.dtype != np.uint8:
            raise ValueError(f"colors must be uint8, got {cols.dtype}")
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertices = np.empty(len(pts), dtype=fields)
    vertices["x"], vertices["y"], vertices["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
    if colors is not None:
        vertices["red"], vertices["green"], vertices["blue"] = cols[:, 0], cols[:, 1], cols[:, 2]
    header = ["ply", "format binary_little_endian 1.0", "comment written by dap_ros",
              f"element vertex {len(pts)}"]
    header += [f"property {'float' if t == '<f4' else 'uchar'} {name}" for name, t in fields]
    header.append("end_header")
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        f.write(vertices.tobytes())


def read_ply(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a binary little-endian PLY vertex list.

    Returns (points (N, 3) float32, colours (N, 3) uint8 or None).

    Supports scalar vertex properties only (no faces / lists), which covers :func:`write_ply`.
    """
    with open(path, "rb") as f:
        if f.readline().strip() != b"ply":
            raise ValueError(f"not a PLY file: {path}")
        count, fields, in_vertex = 0, [], False
        while True:
            line = f.readline()
            if not line:
                raise ValueError(f"PLY header has no end_header: {path}")
            words = line.decode("ascii").split()
            if not words or words[0] in ("comment", "obj_info"):
                continue
            if words[0] == "end_header":
                break
            if words[0] == "format" and words[1] != "binary_little_endian":
                raise ValueError(f"unsupported PLY format {words[1]!r}: {path}")
            if words[0] == "element":
                in_vertex = words[1] == "vertex"
                if in_vertex:
                    count = int(words[2])
                elif fields:
                    break  # vertex data come first; ignore later elements
            elif words[0] == "property" and in_vertex:
                if words[1] == "list":
                    raise ValueError(f"vertex list properties are not supported: {path}")
                fields.append((words[2], _PLY_TYPES[words[1]]))
        payload = f.read(count * np.dtype(fields).itemsize)
        vertices = np.frombuffer(payload, dtype=fields, count=count)
    points = np.stack([vertices[c] for c in ("x", "y", "z")], axis=1).astype(np.float32)
    names = vertices.dtype.names or ()
    colors = None
    if all(c in names for c in ("red", "green", "blue")):
        colors = np.stack([vertices[c] for c in ("red", "green", "blue")], axis=1).astype(np.uint8)
    return points, colors
