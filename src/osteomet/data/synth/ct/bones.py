"""The skeleton as analytic primitives carrying TotalSegmentator v2 ids (vertebrae, pelvis, femora, ribs...)."""

from __future__ import annotations

import numpy as np

from osteomet.data.synth._shapes import Canvas, Capsule, Ellipsoid, Rib, Shell, ZCylinder
from osteomet.data.synth.ct.anatomy import Anatomy, _thorax, _trunk
from osteomet.data.synth.ct.materials import UNLABELLED_BONE


def _rot_z(u: np.ndarray) -> np.ndarray:
    """Rotation whose columns are u (horizontal), z and their normal: for plates standing upright."""
    u = np.asarray(u, float) / np.linalg.norm(u)
    w = np.cross(u, [0.0, 0.0, 1.0])
    return np.stack([u, [0.0, 0.0, 1.0], w], axis=1)


def _build_bones(canvas: Canvas, anatomy: Anatomy) -> None:
    """Rasterise every bone of the skeleton into the canvas (labels = TotalSegmentator ids)."""
    add = canvas.add
    # --- spine
    for v in anatomy.vertebrae:
        zc, h, a, b, yc = v.zc, v.h, v.a, v.b, v.yc
        lumbar, cervical = v.label <= 31, v.label >= 44
        if v.label == 50:  # C1: ring with lateral masses
            pts = [(a * np.sin(t), yc + 6 + b * np.cos(t)) for t in np.linspace(0, 2 * np.pi, 9)]
            for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:]):
                add(Capsule((x0, y0, zc), (x1, y1, zc), 4.0), v.label, 1.2)
            for s in (-1, 1):
                add(Ellipsoid((s * 17, yc + 4, zc), (8, 10, 7)), v.label, 1.2)
            continue
        # the vertebral body's shell and endplates are thin (~1 mm); thicker, every 5 mm slab holding an
        # endplate would average like a sclerotic vertebra
        add(ZCylinder((0, yc), (0, yc), zc - h / 2, zc + h / 2, a, b), v.label, 1.0)
        if v.label == 49:  # C2 dens
            add(Capsule((0, yc, zc), (0, yc + 2, zc + h / 2 + 12), 5.0), v.label, 1.2)
        r_ped = 6.0 if lumbar else (3.5 if cervical else 4.5)
        back = 14.0 if lumbar else (8.0 if cervical else 11.0)
        for s in (-1, 1):
            add(Capsule((s * 0.55 * a, yc + 0.7 * b, zc), (s * 0.6 * a, yc + b + back, zc), r_ped), v.label, 1.5)
            add(Capsule((s * 0.6 * a, yc + b + back, zc), (0, yc + b + back + 12, zc - 2), r_ped * 0.85), v.label, 1.5)
            if lumbar:
                tip = (s * (a + 30), yc + b + 6, zc)
            elif cervical:
                tip = (s * (a + 12), yc + 2, zc)
            else:
                tip = (s * (a + 22), yc + b + 22, zc + 3)
            add(Capsule((s * 0.6 * a, yc + b + back - 3, zc), tip, 5.0 if not cervical else 3.5, 4.0 if not cervical else 3.0),
                v.label, 1.5)
        y_sp = yc + b + back + 10
        if lumbar:
            add(Ellipsoid((0, y_sp + 16, zc - 3), (4.5, 18, 12)), v.label, 1.5)
        elif cervical:
            add(Capsule((0, y_sp, zc), (0, y_sp + 22, zc - 6), 3.5), v.label, 1.2)
        else:
            add(Capsule((0, y_sp, zc), (0, y_sp + 26, zc - 22), 4.0), v.label, 1.5)
    # --- sacrum: S1 (its own TotalSegmentator class) and S2..coccyx
    add(Ellipsoid((0, 28, 92), (26, 18, 13)), 26, 1.5)
    add(Ellipsoid((0, 36, 88), (52, 20, 16)), 26, 1.5)
    for (y, z, ax, ay, az) in [(42, 70, 44, 16, 14), (55, 48, 36, 14, 13), (68, 26, 26, 12, 12),
                               (77, 6, 17, 9, 10), (83, -12, 10, 7, 9)]:
        add(Ellipsoid((0, y, z), (ax, ay, az)), 25, 1.5)
    # --- hips and femora
    for s, hip, femur in ((1, 77, 75), (-1, 78, 76)):
        head = (s * 88.0, -5.0, 0.0)
        cup = [(head, 25.5)]
        alpha = np.deg2rad(55)
        add(Ellipsoid((s * 92, 0, 8), (24, 30, 32)), hip, 1.5, subtract=cup)
        add(Capsule((s * 85, 15, 15), (s * 66, 46, 85), 17, 14), hip, 1.5, subtract=cup)
        add(Ellipsoid((s * 92, 12, 118), (58, 46, 7), rot=_rot_z([s * np.cos(alpha), -np.sin(alpha), 0]), bend=-0.004),
            hip, 1.5)
        add(Capsule((s * 60, 50, 72), (s * 58, 56, 128), 14), hip, 1.5)
        add(Capsule((s * 98, -18, 18), (s * 122, -38, 100), 12, 8), hip, 1.5, subtract=cup)
        add(Capsule((s * 80, -20, 5), (s * 15, -62, -8), 10, 8), hip, 1.5, subtract=cup)
        add(Ellipsoid((s * 12, -62, -15), (7, 10, 20)), hip, 1.5)
        add(Capsule((s * 12, -58, -30), (s * 55, -5, -52), 8), hip, 1.5)
        add(Capsule((s * 85, 15, -5), (s * 62, 8, -50), 15, 13), hip, 1.5, subtract=cup)
        add(Ellipsoid((s * 60, 8, -55), (15, 18, 12)), hip, 1.5)
        add(Ellipsoid(head, (23, 23, 23)), femur, 1.5)
        add(Capsule(head, (s * 122, 2, -38), 15), femur, 2.5)
        add(Ellipsoid((s * 132, 8, -32), (17, 22, 24)), femur, 1.5)
        add(Ellipsoid((s * 120, 6, -58), (20, 20, 28)), femur, 2.0)
        add(Ellipsoid((s * 106, 14, -72), (10, 10, 12)), femur, 1.5)
        add(ZCylinder((s * 121, 4), (s * 124, 5), -115, -45, 15, 15), femur, 3.0)
        add(ZCylinder((s * 95, -2), (s * 121, 4), -430, -100, 15, 15), femur, 5.0, "fatty")
    # --- thorax: ribs, costal cartilages, sternum
    ribs = anatomy.ribs
    by_k = {r["k"]: r for r in ribs}
    z_sh = anatomy.z_shoulder
    st_top, st_bottom = z_sh - 25, by_k[7]["z_post"] - by_k[7]["drop"] - 5
    y_st_top = by_k[1]["yc"] - by_k[1]["b"] * 0.6 - 8
    y_st_bottom = by_k[6]["yc"] - by_k[6]["b"] - 2

    def sternum_y(z: float) -> float:
        return float(np.interp(z, [st_bottom, st_top], [y_st_bottom, y_st_top]))

    add(ZCylinder((0, sternum_y(z_sh - 75)), (0, y_st_top), z_sh - 75, st_top, 26, 7), 116, 1.2)
    add(ZCylinder((0, y_st_bottom), (0, sternum_y(z_sh - 75)), st_bottom, z_sh - 70, 15, 6), 116, 1.2)
    add(Capsule((0, y_st_bottom, st_bottom), (0, y_st_bottom - 4, st_bottom - 25), 5, 3), 116, 1.0)
    prev_end: dict[int, tuple] = {}
    for r in ribs:
        k = r["k"]
        for s in (1, -1):
            label = (91 if s > 0 else 103) + k
            rib = Rib(s, r["a"], r["b"], r["yc"], r["z_post"], r["drop"], r["phi0"], r["phi1"], r["tr"], r["tz"])
            add(rib, label, 1.2)
            vert = r["vert"]
            y0 = r["yc"] + r["b"] * np.cos(r["phi0"])
            add(Capsule((s * 28, y0, r["z_post"]), (s * (vert.a + 2), vert.yc + 3, vert.zc + 0.2 * vert.h), 4.5, 4), label, 1.2)
            if k <= 10:  # costal cartilage from the anterior end to the sternum (8-10: to the cartilage above)
                end = (s * r["a"] * np.sin(r["phi1"]), r["yc"] + r["b"] * np.cos(r["phi1"]), float(rib.z_at(np.array(1.0))))
                if k <= 7:
                    zt = float(np.interp(k, [1, 7], [st_top - 10, st_bottom + 8]))
                    target = (s * 14, sternum_y(zt) + 3, zt)
                else:
                    target = prev_end[s * 10 + k - 1]
                mid = ((end[0] + target[0]) / 2 * 1.05, (end[1] + target[1]) / 2 - 6, (end[2] + target[2]) / 2)
                add(Capsule(end, mid, 5.0), 117, 0.0, "cartilage")
                add(Capsule(mid, target, 5.0), 117, 0.0, "cartilage")
                prev_end[s * 10 + k] = mid
    # --- shoulder girdle and arms
    a_th, b_th, yc_th = (float(v) for v in _thorax(anatomy, np.array(z_sh - 60)))
    for s, scap, clav, hum in ((1, 71, 73, 69), (-1, 72, 74, 70)):
        y_blade = yc_th + b_th * np.sqrt(max(1 - (92 / a_th) ** 2, 0.05)) + 14
        beta = np.deg2rad(25)
        rot = _rot_z([s * np.cos(beta), -np.sin(beta), 0])
        add(Ellipsoid((s * 95, y_blade, z_sh - 35), (50, 45, 5), rot=rot, bend=-0.003), scap, 1.5)
        add(Ellipsoid((s * 84, y_blade + 3, z_sh - 95), (28, 55, 5), rot=rot), scap, 1.5)
        add(Capsule((s * 60, y_blade + 12, z_sh - 20), (s * 150, 50, z_sh + 15), 6), scap, 1.5)
        add(Ellipsoid((s * 155, 35, z_sh + 22), (16, 20, 6)), scap, 1.5)
        add(Ellipsoid((s * 142, 28, z_sh), (10, 16, 20)), scap, 1.5)
        add(Capsule((s * 135, 15, z_sh + 15), (s * 128, -20, z_sh + 10), 6), scap, 1.5)
        add(Capsule((s * 18, y_st_top - 2, z_sh + 8), (s * 80, y_st_top + 2, z_sh + 22), 7), clav, 1.5)
        add(Capsule((s * 80, y_st_top + 2, z_sh + 22), (s * 150, 32, z_sh + 28), 7, 6), clav, 1.5)
        elbow, wrist = _arm_points(anatomy, s)
        head = (s * 172, 22, z_sh)
        add(Ellipsoid(head, (23, 23, 23)), hum, 1.5)
        add(Ellipsoid((s * 188, 12, z_sh + 4), (10, 12, 14)), hum, 1.5)
        add(Capsule(head, (s * 176, 22, z_sh - 70), 15), hum, 1.5)
        add(Capsule((s * 176, 22, z_sh - 50), elbow, 12), hum, 3.5, "fatty")
        add(Ellipsoid(elbow, (28, 12, 14)), hum, 1.5)
        for dx, dy in ((8, -4), (-8, 6)):  # radius and ulna, unlabelled in the ``total`` task
            add(Capsule((elbow[0] + s * dx, elbow[1] + dy, elbow[2] - 12), (wrist[0] + s * dx, wrist[1] + dy, wrist[2]), 7, 6),
                UNLABELLED_BONE, 2.0)
    # --- skull: shell with diploe between the tables
    add(Shell(anatomy.head_c, (72, 92, 88), 7.0), 91, 2.0)
    hc = anatomy.head_c
    add(Ellipsoid((0, hc[1] - 62, hc[2] - 48), (45, 22, 30)), 91, 2.0)  # maxilla / facial skeleton
    add(Capsule((-40, hc[1] - 30, hc[2] - 85), (0, hc[1] - 72, hc[2] - 95), 7), 91, 2.0)  # mandible
    add(Capsule((40, hc[1] - 30, hc[2] - 85), (0, hc[1] - 72, hc[2] - 95), 7), 91, 2.0)


def _arm_points(anatomy: Anatomy, s: int) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Elbow and wrist, pushed out so that the arm clears the trunk's soft tissue."""
    z_elbow, z_wrist = anatomy.z_shoulder - 330, anatomy.z_shoulder - 585
    a_e = float(_trunk(anatomy, np.array(z_elbow))[0]) + anatomy.fat
    a_w = float(_trunk(anatomy, np.array(z_wrist))[0]) + anatomy.fat
    return (s * max(185.0, a_e + 40), 30.0, z_elbow), (s * max(190.0, a_w + 33), 10.0, z_wrist)
