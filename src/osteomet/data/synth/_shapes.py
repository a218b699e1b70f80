"""Analytic shape primitives for the synthetic CT phantom, evaluated inside their bounding box.

Each primitive returns an approximate *signed depth* in mm (positive inside, roughly the
distance to its surface near the surface). Depth rather than a boolean lets one pass give
the bone label, the cortex shell (depth below the cortical thickness) and the marrow, and
makes the union of primitives of one bone a simple maximum. Everything is vectorised on
the voxel-centre axes of the sub-block that the primitive's bounding box covers, which is
what keeps a whole-body phantom at about a second.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

Vec = Sequence[float]


@dataclass(frozen=True)
class Grid:
    """Axis-aligned voxel-centre axes in world mm (identity direction, LPS)."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:  # array order z, y, x
        return (len(self.z), len(self.y), len(self.x))

    @staticmethod
    def _axis(axis: np.ndarray, lo: float, hi: float) -> slice | None:
        step = axis[1] - axis[0] if len(axis) > 1 else 1.0
        i0 = max(int(np.ceil((lo - axis[0]) / step)), 0)
        i1 = min(int(np.floor((hi - axis[0]) / step)) + 1, len(axis))
        return slice(i0, i1) if i1 > i0 else None

    def box(self, lo: Vec, hi: Vec) -> tuple[slice, slice, slice] | None:
        """Array slices (z, y, x) of the voxels whose centres lie in the world box, or None."""
        sx = self._axis(self.x, lo[0], hi[0])
        sy = self._axis(self.y, lo[1], hi[1])
        sz = self._axis(self.z, lo[2], hi[2])
        if sx is None or sy is None or sz is None:
            return None
        return (sz, sy, sx)

    def coords(self, sl: tuple[slice, slice, slice]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable X (1,1,nx), Y (1,ny,1), Z (nz,1,1) of a sub-block."""
        return (self.x[sl[2]][None, None, :], self.y[sl[1]][None, :, None], self.z[sl[0]][:, None, None])


def ellipse_depth(u: np.ndarray, v: np.ndarray, a: float | np.ndarray, b: float | np.ndarray) -> np.ndarray:
    """First-order distance to the ellipse (u/a)^2+(v/b)^2=1, positive inside."""
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    grad = np.sqrt((u / a**2) ** 2 + (v / b**2) ** 2) / np.maximum(rho, 1e-6)
    return (1.0 - rho) / np.maximum(grad, 1e-6)


class Primitive:
    """A solid with a bounding box and a signed depth."""

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def depth(self, X: np.ndarray, Y: np.ndarray, Z: np.ndarray) -> np.ndarray:
        raise NotImplementedError


@dataclass
class Ellipsoid(Primitive):
    """Ellipsoid with semi-axes ``r`` along the columns of rotation ``rot``; ``bend`` curves it into a shell
    segment (the third local axis is shifted by ``bend * u0^2``, e.g. the concave iliac wing)."""

    c: Vec
    r: Vec
    rot: np.ndarray | None = None
    bend: float = 0.0

    def bounds(self):
        c, r = np.asarray(self.c, float), np.asarray(self.r, float)
        rot = np.eye(3) if self.rot is None else self.rot
        half = np.sqrt(((rot * r[None, :]) ** 2).sum(axis=1)) + abs(self.bend) * r[0] ** 2
        return c - half, c + half

    def depth(self, X, Y, Z):
        c, r = self.c, self.r
        dx, dy, dz = X - c[0], Y - c[1], Z - c[2]
        if self.rot is None:
            q = [dx, dy, dz]
        else:
            m = self.rot
            q = [m[0, i] * dx + m[1, i] * dy + m[2, i] * dz for i in range(3)]
        if self.bend:
            q[2] = q[2] - self.bend * q[0] ** 2
        rho = np.sqrt((q[0] / r[0]) ** 2 + (q[1] / r[1]) ** 2 + (q[2] / r[2]) ** 2)
        grad = np.sqrt((q[0] / r[0] ** 2) ** 2 + (q[1] / r[1] ** 2) ** 2 + (q[2] / r[2] ** 2) ** 2)
        grad = grad / np.maximum(rho, 1e-6)
        return (1.0 - rho) / np.maximum(grad, 1e-6)


@dataclass
class Capsule(Primitive):
    """Tube between two points with a radius varying linearly from ``r0`` to ``r1`` (rounded ends)."""

    p0: Vec
    p1: Vec
    r0: float
    r1: float | None = None

    def bounds(self):
        p0, p1 = np.asarray(self.p0, float), np.asarray(self.p1, float)
        r = max(self.r0, self.r1 if self.r1 is not None else self.r0)
        return np.minimum(p0, p1) - r, np.maximum(p0, p1) + r

    def depth(self, X, Y, Z):
        p0, p1 = np.asarray(self.p0, float), np.asarray(self.p1, float)
        axis = p1 - p0
        length2 = max(float(axis @ axis), 1e-9)
        dx, dy, dz = X - p0[0], Y - p0[1], Z - p0[2]
        t = np.clip((dx * axis[0] + dy * axis[1] + dz * axis[2]) / length2, 0.0, 1.0)
        ex, ey, ez = dx - t * axis[0], dy - t * axis[1], dz - t * axis[2]
        dist = np.sqrt(ex * ex + ey * ey + ez * ez)
        r1 = self.r0 if self.r1 is None else self.r1
        return self.r0 + (r1 - self.r0) * t - dist


@dataclass
class ZCylinder(Primitive):
    """Elliptic cylinder along z between ``z0`` and ``z1``, its axis drifting linearly from
    ``c0`` (x, y at z0) to ``c1`` (at z1): vertebral bodies, long-bone shafts, the sternum."""

    c0: Vec
    c1: Vec
    z0: float
    z1: float
    a: float
    b: float

    def bounds(self):
        lo = [min(self.c0[0], self.c1[0]) - self.a, min(self.c0[1], self.c1[1]) - self.b, self.z0]
        hi = [max(self.c0[0], self.c1[0]) + self.a, max(self.c0[1], self.c1[1]) + self.b, self.z1]
        return np.asarray(lo), np.asarray(hi)

    def depth(self, X, Y, Z):
        t = (Z - self.z0) / max(self.z1 - self.z0, 1e-6)
        cx = self.c0[0] + t * (self.c1[0] - self.c0[0])
        cy = self.c0[1] + t * (self.c1[1] - self.c0[1])
        d = ellipse_depth(X - cx, Y - cy, self.a, self.b)
        return np.minimum(d, np.minimum(Z - self.z0, self.z1 - Z))


@dataclass
class Shell(Primitive):
    """Between two concentric ellipsoids (the skull vault: outer and inner table)."""

    c: Vec
    r_out: Vec
    thickness: float

    def bounds(self):
        c, r = np.asarray(self.c, float), np.asarray(self.r_out, float)
        return c - r, c + r

    def depth(self, X, Y, Z):
        outer = Ellipsoid(self.c, self.r_out).depth(X, Y, Z)
        inner = Ellipsoid(self.c, [v - self.thickness for v in self.r_out]).depth(X, Y, Z)
        return np.minimum(outer, -inner)


@dataclass
class Rib(Primitive):
    """A rib as an arc of the rib-cage ellipse in cylindrical coordinates.

    The centreline lies on the ellipse (semi-axes ``a``, ``b``, centre ``(0, yc)``) of one
    side (``side`` +1 = patient left, +x), from elliptic angle ``phi0`` (posterior, 0 =
    straight back) to ``phi1`` (towards pi = straight front), dropping ``drop`` mm from
    ``z_post`` as it goes forward. The cross-section is an ellipse ``tr`` (radial) by ``tz``
    (vertical). Evaluating the angle per voxel is far cheaper than a distance to a polyline.
    """

    side: int
    a: float
    b: float
    yc: float
    z_post: float
    drop: float
    phi0: float
    phi1: float
    tr: float
    tz: float

    def bounds(self):
        pad = self.tr + 2.0
        lo = [-self.a - pad if self.side < 0 else 0.0, self.yc - self.b - pad, self.z_post - self.drop - self.tz - 2]
        hi = [0.0 if self.side < 0 else self.a + pad, self.yc + self.b + pad, self.z_post + self.tz + 8]
        return np.asarray(lo), np.asarray(hi)

    def z_at(self, u: np.ndarray) -> np.ndarray:
        # rises a little behind the angle of the rib, then slopes down anteriorly
        return self.z_post + 6.0 * np.sin(np.pi * np.clip(u, 0, 1) * 0.5) * (1 - u) - self.drop * np.clip(u, 0, 1) ** 1.3

    def depth(self, X, Y, Z):
        sx = self.side * X
        v = Y - self.yc
        phi = np.arctan2(sx / self.a, v / self.b)  # 0 posterior, pi/2 lateral, pi anterior
        rho = np.sqrt((sx / self.a) ** 2 + (v / self.b) ** 2)
        local_r = np.sqrt((self.a * np.sin(phi)) ** 2 + (self.b * np.cos(phi)) ** 2)
        dr = (rho - 1.0) * local_r
        u = (phi - self.phi0) / (self.phi1 - self.phi0)
        dz = Z - self.z_at(u)
        q = np.sqrt((dr / self.tr) ** 2 + (dz / self.tz) ** 2)
        d = (1.0 - q) * min(self.tr, self.tz)
        # ends: a depth that falls off beyond the arc (measured along it in mm)
        arc = (self.phi1 - self.phi0) * local_r
        along = np.minimum(u, 1.0 - u) * arc
        return np.where(sx > 0, np.minimum(d, along), -1.0)


@dataclass
class BoneClass:
    """Material of one primitive: cortical thickness (mm) and what fills the marrow space."""

    t_cortex: float
    marrow: str  # "trabecular", "fatty" or "cartilage"


@dataclass
class Canvas:
    """Accumulates bone primitives: per voxel the deepest primitive wins (label and material)."""

    grid: Grid
    depth: np.ndarray = field(init=False)
    label: np.ndarray = field(init=False)
    material: np.ndarray = field(init=False)
    classes: list[BoneClass] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.depth = np.zeros(self.grid.shape, np.float32)
        self.label = np.zeros(self.grid.shape, np.uint16)
        self.material = np.zeros(self.grid.shape, np.uint8)

    def material_id(self, t_cortex: float, marrow: str) -> int:
        key = BoneClass(round(float(t_cortex), 2), marrow)
        if key not in self.classes:
            self.classes.append(key)
        return self.classes.index(key)

    def add(self, prim: Primitive, label: int, t_cortex: float, marrow: str = "trabecular",
            subtract: Sequence[tuple[Vec, float]] = ()) -> None:
        """Union ``prim`` into bone ``label``; ``subtract`` carves spheres (c, r) out of it (joint spaces)."""
        lo, hi = prim.bounds()
        sl = self.grid.box(lo, hi)
        if sl is None:
            return
        X, Y, Z = self.grid.coords(sl)
        d = np.broadcast_to(prim.depth(X, Y, Z), self.depth[sl].shape)
        for c, r in subtract:
            d = np.minimum(d, np.sqrt((X - c[0]) ** 2 + (Y - c[1]) ** 2 + (Z - c[2]) ** 2) - r)
        current = self.depth[sl]
        win = d > current
        if not win.any():
            return
        current[win] = d[win]
        self.label[sl][win] = label
        self.material[sl][win] = self.material_id(t_cortex, marrow)
