"""Procedural synthetic panoramas: indoor rooms and outdoor scenes ray-cast straight into ERP.

Our stand-in for the paper's UE5 simulator. A scene is a small list of analytic primitives
(:func:`make_scene`), rendered by casting one ray per ERP pixel from the camera centre
(:func:`render_scene`, :func:`render_rays`). All intersections are closed-form and vectorized over
every ray at once (torch, any device):

- room (camera inside an axis-aligned box): exit distance of the slab test, t = min_i t_far,i;
- box (axis-aligned, camera outside): slab test, t = max_i t_near,i when max_i t_near <= min_i t_far;
- vertical cylinder with caps: quadratic for the side + two plane hits for the caps;
- sphere: quadratic; ground plane z = 0: t = -o_z / d_z for d_z < 0.

The range is the exact ray parameter t of the nearest hit (rays are unit vectors), i.e. the radial
range of docs/conventions.md; a ray that hits nothing (sky) has range +inf. ``beyond`` = range > 100 m or
+inf (the range-mask target).

Appearance gives real monocular cues: world-space procedural textures (checker tiles, planks,
value noise, bricks with window grids, roads), texture contrast that fades with the pixel footprint
(no aliasing shimmer at distance), Lambert shading from a point light (indoor) or the sun (outdoor)
with cast shadows (a second ray cast towards the light), an ambient-occlusion-like darkening near
room edges and building footprints, distance fog / aerial perspective, a sky with a horizon gradient,
sun disc and clouds, and mild sensor noise. Everything is drawn from ``numpy.random.default_rng(seed)``
and a seeded torch generator, so a seed always gives the same panorama.

Camera frame: REP 103 body frame (x forward, y left, z up) as in dap_ros.geometry; the camera is
level and yawed by ``scene.yaw`` about z in the world frame. The world has z up, floor / ground at
z = 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dap_ros.geometry import ray_directions_torch
from dap_ros.settings import DEPTH_SCALE_M

_EPS_T = 1e-6

# ----------------------------------------------------------------------------------------------
# Scene description
# ----------------------------------------------------------------------------------------------


@dataclass
class Material:
    """Procedural surface: ``pattern`` in plain | checker | planks | noise | bricks | facade | road |
    emissive; ``color_a`` / ``color_b`` linear RGB in [0, 1]; ``scale`` = pattern period in metres."""

    pattern: str
    color_a: tuple[float, float, float]
    color_b: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: float = 1.0


@dataclass
class Primitive:
    """``shape`` in room | box | cylinder | sphere | ground.

    - room / box: ``lo`` and ``hi`` corners (x, y, z);
    - cylinder: ``center`` (x, y), ``radius``, ``z0``, ``z1`` (vertical axis);
    - sphere: ``center`` (x, y, z), ``radius``;
    - ground: the plane z = 0 seen from above.

    ``material`` indexes Scene.materials; a room has one per face: ``face_materials`` = (x-, x+,
    y-, y+, floor, ceiling).
    """

    shape: str
    material: int = 0
    lo: tuple[float, float, float] | None = None
    hi: tuple[float, float, float] | None = None
    center: tuple[float, ...] | None = None
    radius: float = 0.0
    z0: float = 0.0
    z1: float = 0.0
    face_materials: tuple[int, ...] | None = None
    casts_shadow: bool = True


@dataclass
class Decal:
    """A flat rectangle painted on a room wall (door or window): ``axis`` 0/1 = wall normal axis,
    ``side`` 0 = low wall, 1 = high wall; ``a0..a1`` along the wall, ``z0..z1`` height."""

    axis: int
    side: int
    a0: float
    a1: float
    z0: float
    z1: float
    material: int


@dataclass
class Scene:
    kind: str  # "indoor" | "outdoor"
    camera: tuple[float, float, float]
    yaw: float
    primitives: list[Primitive]
    materials: list[Material]
    decals: list[Decal] = field(default_factory=list)
    light_pos: tuple[float, float, float] | None = None  # indoor point light
    light_power: float = 1.0
    sun_dir: tuple[float, float, float] | None = None  # outdoor, unit vector towards the sun
    ambient: float = 0.25
    fog_distance: float = 1e9  # metres: fraction exp(-range / fog_distance) of the surface colour stays
    fog_color: tuple[float, float, float] = (0.7, 0.75, 0.8)
    sky_zenith: tuple[float, float, float] = (0.25, 0.45, 0.85)
    sky_horizon: tuple[float, float, float] = (0.75, 0.82, 0.9)
    exposure: float = 1.0
    noise_seed: int = 0

    @property
    def room(self) -> Primitive | None:
        return next((p for p in self.primitives if p.shape == "room"), None)


def _u(rng: np.random.Generator, a: float, b: float) -> float:
    return float(rng.uniform(a, b))


def _color(
    rng: np.random.Generator, base: tuple[float, float, float], spread: float = 0.08
) -> tuple[float, float, float]:
    c = np.clip(np.asarray(base) * rng.uniform(1 - spread * 2, 1 + spread * 2) + rng.normal(0, spread, 3), 0.02, 0.98)
    return tuple(float(v) for v in c)


_INDOOR_FLOORS = [((0.55, 0.38, 0.22), (0.42, 0.27, 0.15), "planks", 0.18),
                  ((0.75, 0.74, 0.70), (0.35, 0.35, 0.37), "checker", 0.5),
                  ((0.45, 0.45, 0.48), (0.30, 0.30, 0.33), "noise", 0.6),
                  ((0.62, 0.52, 0.40), (0.50, 0.40, 0.30), "checker", 0.3)]
_WALL_COLORS = [(0.85, 0.83, 0.78), (0.70, 0.78, 0.82), (0.82, 0.74, 0.62), (0.75, 0.80, 0.70),
                (0.90, 0.90, 0.90), (0.65, 0.60, 0.70)]
_FURNITURE_COLORS = [(0.55, 0.35, 0.20), (0.25, 0.30, 0.45), (0.60, 0.20, 0.15), (0.20, 0.45, 0.25),
                     (0.80, 0.78, 0.72), (0.15, 0.15, 0.17), (0.70, 0.60, 0.30)]


def _boxes_overlap_xy(lo, hi, x, y, clearance):
    return lo[0] - clearance < x < hi[0] + clearance and lo[1] - clearance < y < hi[1] + clearance


def _make_indoor(rng: np.random.Generator, seed: int) -> Scene:
    mats: list[Material] = []

    def add(m: Material) -> int:
        mats.append(m)
        return len(mats) - 1

    sx, sy = _u(rng, 2.0, 15.0), _u(rng, 2.0, 15.0)
    hz = _u(rng, 2.4, 4.0)
    fa, fb, fpat, fscale = _INDOOR_FLOORS[int(rng.integers(len(_INDOOR_FLOORS)))]
    floor = add(Material(fpat, _color(rng, fa), _color(rng, fb), fscale * _u(rng, 0.8, 1.5)))
    ceiling = add(Material("noise", _color(rng, (0.92, 0.92, 0.9), 0.03), _color(rng, (0.82, 0.82, 0.8), 0.03), 0.8))
    wall_base = _WALL_COLORS[int(rng.integers(len(_WALL_COLORS)))]
    wall_kind = ["noise", "planks", "noise", "bricks"][int(rng.integers(4))]
    wall = add(Material(wall_kind, _color(rng, wall_base, 0.04), _color(rng, np.asarray(wall_base) * 0.85, 0.04),
                        _u(rng, 0.3, 0.8) if wall_kind != "noise" else _u(rng, 0.5, 2.0)))
    accent = add(Material("plain", _color(rng, _WALL_COLORS[int(rng.integers(len(_WALL_COLORS)))], 0.1)))
    faces = [wall, wall, wall, wall, floor, ceiling]
    faces[int(rng.integers(4))] = accent if rng.random() < 0.5 else wall
    room = Primitive("room", lo=(0.0, 0.0, 0.0), hi=(sx, sy, hz), face_materials=tuple(faces), casts_shadow=False)

    margin = min(0.5, 0.25 * min(sx, sy))
    cam = (_u(rng, margin, sx - margin), _u(rng, margin, sy - margin), _u(rng, 1.0, min(1.8, hz - 0.4)))
    prims = [room]

    # doors and windows painted on the walls
    door = add(Material("planks", _color(rng, (0.45, 0.30, 0.18)), _color(rng, (0.38, 0.24, 0.14)), 0.12))
    window = add(Material("emissive", _color(rng, (1.6, 1.7, 1.9), 0.05)))
    decals: list[Decal] = []
    for _ in range(int(rng.integers(1, 5))):
        axis, side = int(rng.integers(2)), int(rng.integers(2))
        length = sy if axis == 0 else sx
        if rng.random() < 0.5:  # door
            w = min(_u(rng, 0.8, 1.2), length - 0.2)
            a0 = _u(rng, 0.1, max(0.1, length - w - 0.1))  # max: w = length - 0.2 rounds below
            decals.append(Decal(axis, side, a0, a0 + w, 0.0, min(2.1, hz - 0.1), door))
        else:  # window
            w = min(_u(rng, 0.6, 2.5), length - 0.2)
            a0 = _u(rng, 0.1, max(0.1, length - w - 0.1))  # max: w = length - 0.2 rounds below
            z0 = _u(rng, 0.7, 1.1)
            decals.append(Decal(axis, side, a0, a0 + w, z0, min(z0 + _u(rng, 0.8, 1.6), hz - 0.15), window))

    n_furniture = int(rng.integers(2, 4 + int(sx * sy / 8)))
    n_furniture = min(n_furniture, 14)
    for _ in range(n_furniture):
        mat = add(Material(["plain", "noise", "planks"][int(rng.integers(3))],
                           _color(rng, _FURNITURE_COLORS[int(rng.integers(len(_FURNITURE_COLORS)))]),
                           _color(rng, (0.3, 0.3, 0.3)), _u(rng, 0.05, 0.3)))
        for _attempt in range(20):
            r = rng.random()
            if r < 0.55:  # box: table, cabinet, bed, shelf
                w, d = _u(rng, 0.4, min(2.2, sx * 0.6)), _u(rng, 0.4, min(2.0, sy * 0.6))
                h = _u(rng, 0.35, min(2.2, hz - 0.2))
                x0, y0 = _u(rng, 0.0, sx - w), _u(rng, 0.0, sy - d)
                z0 = 0.0 if rng.random() < 0.85 else _u(rng, 0.8, max(0.81, hz - h - 0.1))
                lo, hi = (x0, y0, z0), (x0 + w, y0 + d, min(z0 + h, hz - 0.05))
                if _boxes_overlap_xy(lo, hi, cam[0], cam[1], 0.4):
                    continue
                prims.append(Primitive("box", mat, lo=lo, hi=hi))
            elif r < 0.85:  # cylinder: stool, bin, column
                rad = _u(rng, 0.12, 0.5)
                cx, cy = _u(rng, rad, sx - rad), _u(rng, rad, sy - rad)
                if math.hypot(cx - cam[0], cy - cam[1]) < rad + 0.4:
                    continue
                top = hz if rng.random() < 0.2 else _u(rng, 0.35, min(1.3, hz - 0.1))
                prims.append(Primitive("cylinder", mat, center=(cx, cy), radius=rad, z0=0.0, z1=top))
            else:  # sphere: lamp / ball
                rad = _u(rng, 0.12, 0.45)
                cx, cy = _u(rng, rad, sx - rad), _u(rng, rad, sy - rad)
                cz = rad if rng.random() < 0.5 else _u(rng, max(rad, hz - 1.0), hz - rad)
                if math.dist((cx, cy, cz), cam) < rad + 0.4:
                    continue
                prims.append(Primitive("sphere", mat, center=(cx, cy, cz), radius=rad))
            break
    light = (_u(rng, 0.25 * sx, 0.75 * sx), _u(rng, 0.25 * sy, 0.75 * sy), hz - 0.15)
    return Scene("indoor", cam, _u(rng, -math.pi, math.pi), prims, mats, decals, light_pos=light,
                 light_power=_u(rng, 0.8, 1.3), ambient=_u(rng, 0.18, 0.35),
                 fog_distance=_u(rng, 40.0, 120.0), fog_color=_color(rng, (0.6, 0.6, 0.6), 0.05),
                 exposure=_u(rng, 0.9, 1.2), noise_seed=int(rng.integers(2**31)))


def _make_outdoor(rng: np.random.Generator, seed: int) -> Scene:
    mats: list[Material] = []

    def add(m: Material) -> int:
        mats.append(m)
        return len(mats) - 1

    road_half = _u(rng, 3.0, 6.0)
    ground = add(Material("road", _color(rng, (0.28, 0.42, 0.18)), _color(rng, (0.20, 0.20, 0.21), 0.03), road_half))
    cam = (0.0, _u(rng, -road_half, road_half) if rng.random() < 0.7 else _u(rng, -15.0, 15.0), _u(rng, 1.2, 2.5))
    prims = [Primitive("ground", ground, casts_shadow=False)]

    def clear(x: float, y: float, r: float) -> bool:
        return math.hypot(x - cam[0], y - cam[1]) > r

    for _ in range(int(rng.integers(4, 16))):  # buildings
        mat = add(Material("facade", _color(rng, [(0.6, 0.35, 0.25), (0.75, 0.72, 0.65), (0.5, 0.5, 0.52),
                                                   (0.8, 0.7, 0.5)][int(rng.integers(4))]),
                           _color(rng, (0.15, 0.2, 0.28)), _u(rng, 2.8, 3.6)))
        for _attempt in range(20):
            dist = 10.0 + 120.0 * float(rng.random()) ** 1.5 if rng.random() < 0.9 else _u(rng, 130.0, 300.0)
            ang = _u(rng, -math.pi, math.pi)
            w, d, h = _u(rng, 5.0, 30.0), _u(rng, 5.0, 25.0), _u(rng, 4.0, 60.0)
            cx, cy = dist * math.cos(ang), dist * math.sin(ang)
            lo, hi = (cx - w / 2, cy - d / 2, 0.0), (cx + w / 2, cy + d / 2, h)
            if _boxes_overlap_xy(lo, hi, cam[0], cam[1], 6.0):
                continue
            prims.append(Primitive("box", mat, lo=lo, hi=hi))
            break
    pole_mat = add(Material("plain", _color(rng, (0.35, 0.35, 0.37))))
    for _ in range(int(rng.integers(0, 8))):  # poles
        x, y = _u(rng, -40, 40), _u(rng, -12, 12)
        if clear(x, y, 1.0):
            prims.append(Primitive("cylinder", pole_mat, center=(x, y), radius=_u(rng, 0.08, 0.2), z0=0.0,
                                   z1=_u(rng, 3.0, 9.0)))
    trunk = add(Material("noise", _color(rng, (0.32, 0.22, 0.14)), _color(rng, (0.2, 0.14, 0.1)), 0.15))
    leaves = add(Material("noise", _color(rng, (0.18, 0.38, 0.12)), _color(rng, (0.08, 0.22, 0.06)), 0.4))
    for _ in range(int(rng.integers(2, 16))):  # trees: trunk + crown
        x, y = _u(rng, -60, 60), _u(rng, -60, 60)
        crown = _u(rng, 1.2, 3.5)
        if not clear(x, y, crown + 1.0):
            continue
        th = _u(rng, 1.5, 4.5)
        prims.append(Primitive("cylinder", trunk, center=(x, y), radius=_u(rng, 0.12, 0.35), z0=0.0,
                               z1=th + 0.3 * crown))
        prims.append(Primitive("sphere", leaves, center=(x, y, th + crown), radius=crown))
    for _ in range(int(rng.integers(0, 5))):  # cars / kiosks as boxes
        mat = add(Material("plain", _color(rng, _FURNITURE_COLORS[int(rng.integers(len(_FURNITURE_COLORS)))])))
        x, y = _u(rng, -30, 30), _u(rng, -10, 10)
        w, d, h = _u(rng, 1.6, 4.5), _u(rng, 1.5, 2.0), _u(rng, 1.3, 2.2)
        lo, hi = (x - w / 2, y - d / 2, 0.0), (x + w / 2, y + d / 2, h)
        if not _boxes_overlap_xy(lo, hi, cam[0], cam[1], 1.0):
            prims.append(Primitive("box", mat, lo=lo, hi=hi))
    sun_el, sun_az = _u(rng, 0.25, 1.2), _u(rng, -math.pi, math.pi)
    sun = (math.cos(sun_el) * math.cos(sun_az), math.cos(sun_el) * math.sin(sun_az), math.sin(sun_el))
    haze = _color(rng, (0.78, 0.83, 0.9), 0.03)
    return Scene("outdoor", cam, _u(rng, -math.pi, math.pi), prims, mats, [], sun_dir=sun,
                 light_power=_u(rng, 0.9, 1.2), ambient=_u(rng, 0.25, 0.4), fog_distance=_u(rng, 150.0, 600.0),
                 fog_color=haze, sky_zenith=_color(rng, (0.22, 0.42, 0.8), 0.04), sky_horizon=haze,
                 exposure=_u(rng, 0.9, 1.15), noise_seed=int(rng.integers(2**31)))


def make_scene(seed: int, kind: str = "random") -> Scene:
    """Deterministic scene for ``seed``: ``kind`` = "indoor", "outdoor" or "random" (50/50 from the seed)."""
    if kind not in ("indoor", "outdoor", "random"):
        raise ValueError(f"kind must be 'indoor', 'outdoor' or 'random', got {kind!r}")
    rng = np.random.default_rng(int(seed))
    if kind == "random":
        kind = "indoor" if rng.random() < 0.5 else "outdoor"
    return _make_indoor(rng, seed) if kind == "indoor" else _make_outdoor(rng, seed)


# ----------------------------------------------------------------------------------------------
# Ray casting
# ----------------------------------------------------------------------------------------------


def _safe_dir(d: torch.Tensor) -> torch.Tensor:
    tiny = torch.full_like(d, 1e-12)
    return torch.where(d.abs() < 1e-12, torch.where(d < 0, -tiny, tiny), d)


def _t(v: Any, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(v, dtype=like.dtype, device=like.device)


def intersect_room(o: torch.Tensor, d: torch.Tensor, lo, hi) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera inside an axis-aligned box: exit distance (N,) and face id (N,) in 0..5 =
    (x-, x+, y-, y+, z- floor, z+ ceiling)."""
    dd = _safe_dir(d)
    bound = torch.where(dd > 0, _t(hi, d), _t(lo, d))
    tf = (bound - o) / dd
    t, axis = tf.min(-1)
    side = torch.gather((dd > 0).long(), 1, axis[:, None])[:, 0]
    return t, axis * 2 + side


def intersect_box(o: torch.Tensor, d: torch.Tensor, lo, hi) -> tuple[torch.Tensor, torch.Tensor]:
    """Slab test, camera outside: distance (N,) (+inf on a miss) and hit axis (N,)."""
    inv = 1.0 / _safe_dir(d)
    t1 = (_t(lo, d) - o) * inv
    t2 = (_t(hi, d) - o) * inv
    tn, axis = torch.minimum(t1, t2).max(-1)
    tf = torch.maximum(t1, t2).min(-1).values
    hit = (tn <= tf) & (tn > _EPS_T)
    return torch.where(hit, tn, torch.full_like(tn, math.inf)), axis


def intersect_cylinder(o: torch.Tensor, d: torch.Tensor, center, radius: float, z0: float, z1: float
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Vertical finite cylinder with caps: distance (N,) and part (N,) 0 = side, 1 = bottom, 2 = top."""
    px, py = o[..., 0] - center[0], o[..., 1] - center[1]
    dx, dy, dz = d[..., 0], d[..., 1], d[..., 2]
    a = dx * dx + dy * dy
    b = dx * px + dy * py
    c = px * px + py * py - radius * radius
    disc = b * b - a * c
    sq = torch.sqrt(disc.clamp_min(0))
    a_safe = a.clamp_min(1e-18)
    t_side = (-b - sq) / a_safe
    z = o[..., 2] + t_side * dz
    inf = torch.full_like(t_side, math.inf)
    t_side = torch.where((disc >= 0) & (a > 1e-18) & (t_side > _EPS_T) & (z >= z0) & (z <= z1), t_side, inf)
    dz_safe = _safe_dir(dz)
    best, part = t_side, torch.zeros_like(t_side, dtype=torch.long)
    for k, zc in ((1, z0), (2, z1)):
        tc = (zc - o[..., 2]) / dz_safe
        qx, qy = px + tc * dx, py + tc * dy
        ok = (tc > _EPS_T) & (qx * qx + qy * qy <= radius * radius)
        tc = torch.where(ok, tc, inf)
        closer = tc < best
        best = torch.where(closer, tc, best)
        part = torch.where(closer, torch.full_like(part, k), part)
    return best, part


def intersect_sphere(o: torch.Tensor, d: torch.Tensor, center, radius: float) -> torch.Tensor:
    """Sphere seen from outside: distance (N,) or +inf."""
    p = o - _t(center, d)
    b = (d * p).sum(-1)
    c = (p * p).sum(-1) - radius * radius
    disc = b * b - c
    t = -b - torch.sqrt(disc.clamp_min(0))
    return torch.where((disc >= 0) & (t > _EPS_T), t, torch.full_like(t, math.inf))


def intersect_ground(o: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Plane z = 0 from above: distance (N,) or +inf."""
    t = -o[..., 2] / _safe_dir(d[..., 2])
    return torch.where((d[..., 2] < 0) & (t > _EPS_T), t, torch.full_like(t, math.inf))


def bounding_sphere(prim: Primitive) -> tuple[tuple[float, float, float], float] | None:
    """Centre and radius enclosing a finite primitive (None for room / ground)."""
    if prim.shape == "box":
        lo, hi = np.asarray(prim.lo, float), np.asarray(prim.hi, float)
        return tuple((lo + hi) / 2), float(np.linalg.norm(hi - lo) / 2)
    if prim.shape == "cylinder":
        half = (prim.z1 - prim.z0) / 2
        return (prim.center[0], prim.center[1], prim.z0 + half), math.hypot(prim.radius, half)
    if prim.shape == "sphere":
        return tuple(prim.center), prim.radius
    return None


def _candidates(o: torch.Tensor, d: torch.Tensor, sphere) -> torch.Tensor | None:
    """Indices of the rays that pass within the bounding sphere (None = all rays)."""
    if sphere is None:
        return None
    c, r = sphere
    w = _t(c, d) - o
    tc = (w * d).sum(-1)
    dist2 = (w * w).sum(-1) - tc * tc
    near = (dist2 <= r * r * 1.0001 + 1e-9) & (tc > -r)
    # rays starting inside the sphere are candidates too
    near |= (w * w).sum(-1) <= r * r
    return near.nonzero()[:, 0]


def _intersect(prim: Primitive, o: torch.Tensor, d: torch.Tensor, normal_like: torch.Tensor):
    """(t, normal, material) of one primitive for rays (o, d) (same leading size)."""
    if prim.shape == "room":
        t, face = intersect_room(o, d, prim.lo, prim.hi)
        axis, side = face // 2, face % 2
        nrm = torch.zeros_like(normal_like)
        nrm.scatter_(1, axis[:, None], (1.0 - 2.0 * side.to(d.dtype))[:, None])  # faces inward
        return t, nrm, torch.as_tensor(prim.face_materials, device=d.device)[face]
    if prim.shape == "box":
        t, axis = intersect_box(o, d, prim.lo, prim.hi)
        nrm = torch.zeros_like(normal_like)
        nrm.scatter_(1, axis[:, None], -torch.sign(torch.gather(d, 1, axis[:, None])))
    elif prim.shape == "cylinder":
        t, part = intersect_cylinder(o, d, prim.center, prim.radius, prim.z0, prim.z1)
        p = o + t.clamp(max=1e6)[:, None] * d
        side = torch.stack([(p[:, 0] - prim.center[0]) / prim.radius, (p[:, 1] - prim.center[1]) / prim.radius,
                            torch.zeros_like(t)], -1)
        cap = torch.zeros_like(normal_like)
        cap[:, 2] = torch.where(part == 2, 1.0, -1.0).to(d.dtype)
        nrm = torch.where((part == 0)[:, None], side, cap)
    elif prim.shape == "sphere":
        t = intersect_sphere(o, d, prim.center, prim.radius)
        p = o + t.clamp(max=1e6)[:, None] * d
        nrm = (p - _t(prim.center, d)) / prim.radius
    elif prim.shape == "ground":
        t = intersect_ground(o, d)
        nrm = torch.zeros_like(normal_like)
        nrm[:, 2] = 1.0
    else:
        raise ValueError(f"unknown primitive shape {prim.shape!r}")
    return t, nrm, torch.full_like(t, prim.material, dtype=torch.long)


def cast(scene: Scene, o: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Nearest hit of unit rays (o (N,3) or (3,), d (N,3)) with the scene.

    Returns range t (N,) (+inf = no hit), outward unit normal (N, 3) and material id (N,) (-1 = sky).
    Finite primitives are only intersected with the rays that pass through their bounding sphere.
    """
    n = d.shape[0]
    o = o.expand(n, 3) if o.dim() == 1 else o
    best = torch.full((n,), math.inf, dtype=d.dtype, device=d.device)
    normal = torch.zeros((n, 3), dtype=d.dtype, device=d.device)
    mat = torch.full((n,), -1, dtype=torch.long, device=d.device)
    for prim in scene.primitives:
        idx = _candidates(o, d, bounding_sphere(prim))
        if idx is None:
            t, nrm, m = _intersect(prim, o, d, normal)
            closer = t < best
            best = torch.where(closer, t, best)
            normal = torch.where(closer[:, None], nrm, normal)
            mat = torch.where(closer, m, mat)
        elif idx.numel():
            t, nrm, m = _intersect(prim, o[idx], d[idx], normal[idx])
            closer = t < best[idx]
            sel = idx[closer]
            best[sel] = t[closer]
            normal[sel] = nrm[closer]
            mat[sel] = m[closer]
    return best, normal, mat


def occluded(scene: Scene, o: torch.Tensor, d: torch.Tensor, max_t: torch.Tensor) -> torch.Tensor:
    """Shadow rays: True where a shadow-casting primitive lies between o and o + max_t d."""
    hit = torch.zeros(d.shape[0], dtype=torch.bool, device=d.device)
    for prim in scene.primitives:
        if not prim.casts_shadow or prim.shape in ("room", "ground"):
            continue
        idx = _candidates(o, d, bounding_sphere(prim))
        if idx.numel() == 0:
            continue
        oi, di = o[idx], d[idx]
        if prim.shape == "box":
            t, _ = intersect_box(oi, di, prim.lo, prim.hi)
        elif prim.shape == "cylinder":
            t, _ = intersect_cylinder(oi, di, prim.center, prim.radius, prim.z0, prim.z1)
        else:
            t = intersect_sphere(oi, di, prim.center, prim.radius)
        hit[idx] |= t < max_t[idx]
    return hit


# ----------------------------------------------------------------------------------------------
# Textures and shading
# ----------------------------------------------------------------------------------------------


_HASH_TABLES: dict = {}


def _hash_table(device: Any) -> torch.Tensor:
    key = str(device)
    if key not in _HASH_TABLES:
        g = torch.Generator(device="cpu").manual_seed(12345)
        _HASH_TABLES[key] = torch.rand(1 << 16, generator=g).to(device)
    return _HASH_TABLES[key]


def _hash(ix: torch.Tensor, iy: torch.Tensor, iz: torch.Tensor, salt: int) -> torch.Tensor:
    """Integer lattice hash -> float in [0, 1) (a fixed random table indexed by a mixed key)."""
    key = (ix * 1619 + iy * 31337 + iz * 6971 + salt * 1013) & 0xFFFF
    key = (key * 40503 + (key >> 7)) & 0xFFFF
    return _hash_table(ix.device)[key]


def value_noise(p: torch.Tensor, salt: int = 0) -> torch.Tensor:
    """Smooth 3-D value noise in [0, 1] at points p (N, 3) (lattice spacing 1)."""
    f = torch.floor(p)
    i = f.to(torch.int32)
    w = p - f
    w = (w * w * (3 - 2 * w)).to(torch.float32)
    out = torch.zeros(p.shape[0], dtype=torch.float32, device=p.device)
    for cx in (0, 1):
        for cy in (0, 1):
            for cz in (0, 1):
                wx = w[:, 0] if cx else 1 - w[:, 0]
                wy = w[:, 1] if cy else 1 - w[:, 1]
                wz = w[:, 2] if cz else 1 - w[:, 2]
                out += wx * wy * wz * _hash(i[:, 0] + cx, i[:, 1] + cy, i[:, 2] + cz, salt)
    return out


def fbm(p: torch.Tensor, octaves: int = 3, salt: int = 0) -> torch.Tensor:
    total, amp, norm = torch.zeros(p.shape[0], dtype=torch.float32, device=p.device), 1.0, 0.0
    for k in range(octaves):
        total += amp * value_noise(p * (2.0 ** k), salt + k)
        norm += amp
        amp *= 0.5
    return total / norm


def _surface_uv(p: torch.Tensor, n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """2-D texture coordinates on a surface: the two world axes orthogonal to the dominant normal axis
    (u horizontal, v vertical on walls)."""
    a = n.abs().argmax(-1)
    u = torch.where(a == 0, p[:, 1], p[:, 0])
    v = torch.where(a == 2, p[:, 1], p[:, 2])
    return u, v


def _pattern(mat: Material, p: torch.Tensor, n: torch.Tensor, footprint: torch.Tensor, salt: int) -> torch.Tensor:
    """Mix factor in [0, 1] between color_a (0) and color_b (1) for one material's hits."""
    s = mat.scale
    u, v = _surface_uv(p, n)
    fade = (1.0 - (footprint / s).clamp(0, 1)).to(torch.float32) ** 2  # band-limit: fades to mean
    if mat.pattern == "checker":
        k = (torch.floor(u / s) + torch.floor(v / s)).long() % 2
        m = k.to(torch.float32)
        m = 0.5 + (m - 0.5) * fade
        return (m + 0.15 * (fbm(p * (4.0 / s), 2, salt) - 0.5)).clamp(0, 1)
    if mat.pattern == "planks":
        horizontal = n[:, 2].abs() > 0.5
        along, across = torch.where(horizontal, u, u), torch.where(horizontal, v, v)
        plank = torch.floor(across / s)
        tone = _hash(plank.long(), torch.floor(along / (8 * s)).long(), torch.zeros_like(plank, dtype=torch.long), salt)
        grain = fbm(torch.stack([along * 0.5 / s, across * 8.0 / s, plank], -1), 2, salt + 7)
        seam = ((across / s - plank) < 0.06).to(torch.float32)
        m = 0.5 + (0.6 * tone + 0.4 * grain - 0.5) * fade
        return (m * (1 - seam * fade) + seam * fade).clamp(0, 1)
    if mat.pattern == "noise":
        return (0.5 + (fbm(p / s, 3, salt) - 0.5) * 1.6 * fade.sqrt()).clamp(0, 1)
    if mat.pattern == "bricks":
        row = torch.floor(v / (s * 0.33))
        uu = u / s + 0.5 * (row % 2)
        mortar = (((v / (s * 0.33)) - row) < 0.1) | ((uu - torch.floor(uu)) < 0.05)
        tone = _hash(torch.floor(uu).long(), row.long(), torch.zeros_like(row, dtype=torch.long), salt)
        m = torch.where(mortar, torch.ones_like(tone), 0.3 * tone)
        return 0.5 + (m - 0.5) * fade
    if mat.pattern == "facade":  # window grid on building walls, plain roofs
        wall = n[:, 2].abs() < 0.5
        fu, fv = u / s - torch.floor(u / s), v / s - torch.floor(v / s)
        win = wall & (fu > 0.3) & (fu < 0.75) & (fv > 0.3) & (fv < 0.8) & (p[:, 2] > 1.0)
        m = win.to(torch.float32)
        grime = fbm(p * 0.5, 2, salt)
        return (0.5 + (m - 0.5) * fade + 0.2 * (grime - 0.5)).clamp(0, 1)
    if mat.pattern == "road":  # grass (a) with a road (b) along the world x axis through y = 0
        road = p[:, 1].abs() < s
        dash = road & (p[:, 1].abs() < 0.08) & ((p[:, 0] / 3.0) % 1.0 < 0.5)
        grass = 0.35 * fbm(p * 0.7, 3, salt)
        m = torch.where(road, torch.ones_like(grass), grass)
        return torch.where(dash, torch.full_like(m, -1.0), m)  # -1: lane marking (white)
    return torch.full_like(u, 0.0, dtype=torch.float32)  # plain / emissive


def _sky(scene: Scene, d: torch.Tensor) -> torch.Tensor:
    el = d[:, 2].clamp(-1, 1).to(torch.float32)
    zen, hor = torch.tensor(scene.sky_zenith, device=d.device), torch.tensor(scene.sky_horizon, device=d.device)
    k = el.clamp_min(0).sqrt()[:, None]
    col = hor * (1 - k) + zen * k
    if scene.sun_dir is not None:
        cosang = (d.to(torch.float32) * torch.tensor(scene.sun_dir, device=d.device)).sum(-1)
        col = col + (torch.exp((cosang - 1) * 2000.0) * 3.0 + torch.exp((cosang - 1) * 20.0) * 0.25)[:, None]
        # clouds: noise on the direction projected onto a cloud layer
        q = d[:, :2].to(torch.float32) / el.clamp_min(0.05)[:, None] * 1.5
        c = fbm(torch.cat([q, torch.zeros_like(q[:, :1])], -1), 4, scene.noise_seed % 1000)
        cover = ((c - 0.5) * 3.0).clamp(0, 1) * (el > 0).to(torch.float32)
        col = col * (1 - cover[:, None] * 0.8) + cover[:, None] * 0.95
    return col


def shade(scene: Scene, d: torch.Tensor, t: torch.Tensor, normal: torch.Tensor, mat: torch.Tensor,
          pixel_angle: float, shadows: bool = True) -> torch.Tensor:
    """Linear RGB (N, 3) float32 for rays d with hits (t, normal, material)."""
    dev = d.device
    cam = torch.tensor(scene.camera, dtype=d.dtype, device=dev)
    out = torch.zeros((d.shape[0], 3), dtype=torch.float32, device=dev)
    hit = torch.isfinite(t)
    sky_idx = (~hit).nonzero()[:, 0]
    if sky_idx.numel():
        out[sky_idx] = _sky(scene, d[sky_idx])
    idx = hit.nonzero()[:, 0]
    if idx.numel() == 0:
        return out
    th, dh, nh, mh = t[idx], d[idx], normal[idx], mat[idx]
    nh = torch.where(((nh * dh).sum(-1) > 0)[:, None], -nh, nh)  # face the camera
    p = cam + th[:, None] * dh
    footprint = th * pixel_angle
    albedo = torch.zeros((idx.numel(), 3), dtype=torch.float32, device=dev)
    emissive = torch.zeros(idx.numel(), dtype=torch.bool, device=dev)
    for mi, material in enumerate(scene.materials):
        sel = (mh == mi).nonzero()[:, 0]
        if sel.numel() == 0:
            continue
        a = torch.tensor(material.color_a, device=dev)
        b = torch.tensor(material.color_b, device=dev)
        if material.pattern == "emissive":
            albedo[sel] = a
            emissive[sel] = True
            continue
        m = _pattern(material, p[sel], nh[sel], footprint[sel], salt=mi * 101 + 7)
        col = a * (1 - m.clamp(0, 1)[:, None]) + b * m.clamp(0, 1)[:, None]
        col = torch.where((m < 0)[:, None], torch.full_like(col, 0.85), col)
        albedo[sel] = col * (0.94 + 0.12 * value_noise(p[sel] * 23.0, mi))[:, None]
    for dec in scene.decals:  # doors / windows on room walls
        room = scene.room
        wall = scene.room.face_materials[dec.axis * 2 + dec.side]
        along = p[:, 1 - dec.axis]
        on = (mh == wall) & (nh[:, dec.axis].abs() > 0.5)
        bound = room.hi[dec.axis] if dec.side else room.lo[dec.axis]
        on &= (p[:, dec.axis] - bound).abs() < 1e-3 * max(1.0, abs(bound))
        on &= (along >= dec.a0) & (along <= dec.a1) & (p[:, 2] >= dec.z0) & (p[:, 2] <= dec.z1)
        sel = on.nonzero()[:, 0]
        if sel.numel():
            dm = scene.materials[dec.material]
            if dm.pattern == "emissive":
                frame = ((along[sel] - dec.a0).abs() < 0.05) | ((along[sel] - dec.a1).abs() < 0.05) | \
                        ((p[sel, 2] - dec.z0).abs() < 0.05) | ((p[sel, 2] - dec.z1).abs() < 0.05)
                albedo[sel] = torch.where(frame[:, None], torch.tensor((0.9, 0.9, 0.88), device=dev),
                                          torch.tensor(dm.color_a, device=dev))
                emissive[sel] = ~frame
            else:
                m = _pattern(dm, p[sel], nh[sel], footprint[sel], salt=dec.material)
                color_a, color_b = torch.tensor(dm.color_a, device=dev), torch.tensor(dm.color_b, device=dev)
                albedo[sel] = color_a * (1 - m[:, None]) + color_b * m[:, None]
    # lighting
    if scene.light_pos is not None:
        lp = torch.tensor(scene.light_pos, dtype=d.dtype, device=dev)
        to_l = lp - p
        dist = to_l.norm(dim=-1).clamp_min(1e-6)
        ldir = to_l / dist[:, None]
        lam = (nh * ldir).sum(-1).clamp_min(0).to(torch.float32)
        irr = scene.light_power * lam * 9.0 / (4.0 + dist.to(torch.float32) ** 2)
        if shadows:
            irr = torch.where(occluded(scene, p + nh * 1e-4, ldir, dist), irr * 0.08, irr)
    else:
        sun = torch.tensor(scene.sun_dir, dtype=d.dtype, device=dev)
        lam = (nh * sun).sum(-1).clamp_min(0).to(torch.float32)
        irr = scene.light_power * lam
        if shadows:
            shadow = occluded(scene, p + nh * 1e-3, sun.expand_as(p), torch.full_like(th, math.inf))
            irr = torch.where(shadow, irr * 0.0, irr)
    amb = scene.ambient * (0.75 + 0.25 * nh[:, 2].to(torch.float32))  # sky-ish ambient from above
    ao = _ambient_occlusion(scene, p, nh)
    col = albedo * ((irr + amb) * ao)[:, None]
    col = torch.where(emissive[:, None], albedo, col)
    fog = torch.exp(-th.to(torch.float32) / scene.fog_distance)[:, None]
    col = col * fog + torch.tensor(scene.fog_color, device=dev) * (1 - fog)
    out[idx] = col
    return out


def _ambient_occlusion(scene: Scene, p: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """Darkening near concave edges: room edges indoors, building / object footprints outdoors."""
    room = scene.room
    closest = torch.full((p.shape[0],), math.inf, dtype=p.dtype, device=p.device)
    if room is not None:
        for axis in range(3):
            for bound in (room.lo[axis], room.hi[axis]):
                dist = (p[:, axis] - bound).abs()
                dist = torch.where(dist < 1e-3, torch.full_like(dist, math.inf), dist)  # own face
                closest = torch.minimum(closest, dist)
    on_floor = (p[:, 2] < 1e-3) & (n[:, 2] > 0.5)
    if on_floor.any():
        fi = on_floor.nonzero()[:, 0]
        q = p[fi]
        fl = torch.full((fi.numel(),), math.inf, dtype=p.dtype, device=p.device)
        for prim in scene.primitives:
            if prim.shape == "box" and prim.lo[2] <= 1e-6:
                dx = torch.maximum(prim.lo[0] - q[:, 0], q[:, 0] - prim.hi[0]).clamp_min(0)
                dy = torch.maximum(prim.lo[1] - q[:, 1], q[:, 1] - prim.hi[1]).clamp_min(0)
                fl = torch.minimum(fl, torch.sqrt(dx * dx + dy * dy))
            elif prim.shape == "cylinder" and prim.z0 <= 1e-6:
                r = torch.sqrt((q[:, 0] - prim.center[0]) ** 2 + (q[:, 1] - prim.center[1]) ** 2) - prim.radius
                fl = torch.minimum(fl, r.clamp_min(0))
        closest[fi] = torch.minimum(closest[fi], fl)
    return (1.0 - 0.45 * torch.exp(-closest.to(torch.float32) / 0.35)).clamp(0.3, 1.0)


# ----------------------------------------------------------------------------------------------
# Rendering entry points
# ----------------------------------------------------------------------------------------------


def world_rays(scene: Scene, body_rays: torch.Tensor) -> torch.Tensor:
    """Rotate camera-frame rays (..., 3) into the world frame (yaw about z)."""
    c, s = math.cos(scene.yaw), math.sin(scene.yaw)
    x, y, z = body_rays[..., 0], body_rays[..., 1], body_rays[..., 2]
    return torch.stack([c * x - s * y, s * x + c * y, z], -1)


def render_rays(scene: Scene, body_rays: torch.Tensor, pixel_angle: float = 0.005, shadows: bool = True,
                noise: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Render camera-frame unit rays (N, 3): returns (linear RGB (N, 3) float32, range (N,) in the
    rays' dtype, +inf = sky). ``pixel_angle`` (radians) sets texture band-limiting."""
    d = world_rays(scene, body_rays)
    o = torch.tensor(scene.camera, dtype=d.dtype, device=d.device)
    t, normal, mat = cast(scene, o, d)
    rgb = shade(scene, d, t, normal, mat, pixel_angle, shadows)
    return rgb, t


def to_srgb_uint8(rgb_linear: torch.Tensor, exposure: float = 1.0) -> torch.Tensor:
    x = (rgb_linear * exposure).clamp(0, 1)
    return (x ** (1 / 2.2) * 255.0 + 0.5).clamp(0, 255).to(torch.uint8)


def render_scene(scene: Scene, height: int, width: int, device: Any = "cpu", dtype: torch.dtype = torch.float32,
                 shadows: bool = True, noise: float = 1.5) -> dict:
    """Render an ERP panorama of ``scene``: dict(rgb uint8 (H, W, 3), range_m float32 (H, W) with
    +inf for sky, beyond bool (H, W) = range > 100 m or sky, kind str)."""
    rays = ray_directions_torch(height, width, device=device, dtype=dtype).reshape(-1, 3)
    lin, t = render_rays(scene, rays, pixel_angle=math.pi / height, shadows=shadows)
    rgb = to_srgb_uint8(lin, scene.exposure).reshape(height, width, 3)
    if noise > 0:
        g = torch.Generator(device="cpu").manual_seed(scene.noise_seed)
        n = torch.randn((height, width, 3), generator=g) * noise
        rgb = (rgb.cpu().float() + n).round().clamp(0, 255).to(torch.uint8)
    range_m = t.reshape(height, width).to(torch.float32).cpu().numpy()
    return {
        "rgb": rgb.cpu().numpy(),
        "range_m": range_m,
        "beyond": ~(range_m <= DEPTH_SCALE_M),
        "kind": scene.kind,
    }


def render_panorama(seed: int, height: int, width: int, kind: str = "random", device: Any = "cpu") -> dict:
    """Deterministic synthetic panorama for ``seed`` (see :func:`render_scene` for the fields)."""
    return render_scene(make_scene(seed, kind), height, width, device=device)
