"""Synthetic CT cohort for bone-metastasis research: HU volumes, lesion masks, bone maps.

Phantom model
-------------
Anatomy is analytic, in patient (LPS) millimetres with the femoral-head centre at height 0,
scaled per patient by a body-size factor and shifted in the scanner; each primitive is
evaluated only inside its own bounding box (see :mod:`._shapes`), so a whole torso renders
in a fraction of a second.

* **Body**: a trunk ellipse whose semi-axes follow z (pelvis, waist, chest, shoulders),
  neck, head, two thighs below the buttocks and arms hanging at the sides (humerus, and
  radius/ulna that are rendered but left unlabelled, as TotalSegmentator's ``total`` task
  does). A subcutaneous fat ring (thickness = adiposity) surrounds muscle; the abdomen holds
  visceral fat, liver, spleen, kidneys, bowel loops (some with gas), bladder, psoas and
  paraspinal muscles; the thorax holds lungs (domed diaphragm, apex above rib 1),
  mediastinum, heart, aorta and trachea; the skull holds brain.
* **Bones** carry TotalSegmentator v2 ids (:mod:`osteomet.data.totalsegmentator`): every
  vertebra C1..L5 (elliptic body, pedicles, lamina, spinous and transverse processes; C1 a
  ring, C2 with the dens) with unlabelled discs between bodies; vertebrae_S1 and the sacrum;
  hips (iliac wing as a bent plate, acetabulum carved around the femoral head, pubic and
  ischial rami, obturator foramen between them); femora (head, neck, trochanters, shaft with
  a thick cortex and fatty medullary cavity); 12 rib pairs as arcs of the rib-cage ellipse,
  sloping down anteriorly, with costal cartilages to the sternum; sternum; scapulae;
  claviculae; humeri; the skull as a shell with diploe.
* **Materials** come from a signed depth below each bone surface: depth < cortical thickness
  is cortex (500-1900 HU), deeper is trabecular bone (100-300 HU, lower with age) or fatty
  marrow in long-bone shafts. Where the cortex is thinner than the voxel, it is widened to
  0.6 voxel and its contrast reduced in proportion (partial volume), so shells never break
  up at coarse matrices. Soft tissues follow the HU table in ``docs/domain-facts.md``.
* **Lesions** (prostate-cancer bone metastases): mostly sclerotic (300-1200 HU,
  heterogeneous), some lytic (0-100 HU, replacing bone); *focal* irregular nodules (8-30 mm,
  never more than 45% of the bone's axial cross-section on any slice) or *diffuse*
  replacement of most of a bone (more than 60% of the cross-section on some slice). Sites
  are drawn axial skeleton first (lumbar spine most, then pelvis, ribs, proximal femora,
  skull and humeri). The mask is the lesion inside its bone only; lesions never touch, so
  each is one 26-connected component and the truth table matches the mask exactly.
* **Image formation**: the HU map is blurred by about half a voxel (partial volume), then
  Gaussian noise is added and the result stored as int16.

Randomness: each patient draws from its own child of ``SeedSequence(seed)``, so a cohort is
identical whatever the number of worker processes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import cc3d
import numpy as np
import pandas as pd
import SimpleITK as sitk
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import ndimage

from osteomet.data.io import write_image
from osteomet.data.manifest import write_manifest
from osteomet.data.synth._cohort import start_cohort, write_synth_record
from osteomet.data.synth._shapes import Canvas, Capsule, Ellipsoid, Grid, Rib, Shell, ZCylinder
from osteomet.data.totalsegmentator import TOTALSEG_BONES
from osteomet.errors import InputError
from osteomet.utils.files import write_text_atomic
from osteomet.utils.parallel import map_tasks

Region = Literal["whole_body", "torso", "abdomen_pelvis"]

#: Internal label of rendered but unlabelled bones (forearms): not a ``total``-task class.
UNLABELLED_BONE = 200

# Tissue codes of the phantom's material map (returned by :func:`render_ct_phantom`).
AIR, LUNG, FAT, VISCERAL_FAT, MUSCLE, LIVER, SPLEEN, KIDNEY, URINE, BOWEL, BLOOD, BRAIN, DISC, GAS = range(14)
CARTILAGE, CORTICAL, TRABECULAR, FATTY_MARROW = 14, 15, 16, 17
TISSUE_NAMES = {
    AIR: "air", LUNG: "lung", FAT: "fat", VISCERAL_FAT: "visceral_fat", MUSCLE: "muscle", LIVER: "liver",
    SPLEEN: "spleen", KIDNEY: "kidney", URINE: "urine", BOWEL: "bowel", BLOOD: "blood", BRAIN: "brain",
    DISC: "disc", GAS: "gas", CARTILAGE: "cartilage", CORTICAL: "cortical", TRABECULAR: "trabecular",
    FATTY_MARROW: "fatty_marrow",
}
# Typical HU and texture SD per tissue (before per-patient jitter, blur and noise).
_TISSUE_HU = np.array([-1000, -850, -95, -90, 50, 58, 48, 33, 8, 28, 40, 35, 80, -950, 120, 0, 0, -50], np.float32)
_TISSUE_SD = np.array([0, 25, 8, 10, 6, 5, 5, 5, 3, 10, 5, 3, 8, 20, 15, 40, 25, 15], np.float32)

LUMBAR_IDS = list(range(27, 32))
VERTEBRA_IDS = list(range(27, 51))  # L5 .. C1
RIB_IDS = list(range(92, 116))


class CTSynthConfig(BaseModel):
    """Knobs of the synthetic CT cohort (defaults: a fast torso cohort for the demo)."""

    model_config = ConfigDict(extra="forbid")

    inplane_size: int = Field(128, ge=32, le=1024, description="In-plane matrix; 128 over 500 mm is ~3.9 mm voxels.")
    fov_mm: float = Field(500.0, gt=100, le=1000, description="In-plane field of view (mm).")
    slice_thickness_mm: float = Field(5.0, gt=0.3, le=10, description="Slice spacing = thickness (mm).")
    region: Region = Field("torso", description="Scan range: whole_body (mid-femur to vertex), torso "
                                                "(shoulders to proximal femur), abdomen_pelvis (~L1 to proximal femur).")
    noise_hu: float = Field(15.0, ge=0, le=200, description="SD of the Gaussian image noise (HU).")
    lesion_free_fraction: float = Field(0.2, ge=0, le=1, description="Fraction of patients without any lesion.")
    mean_lesions: float = Field(3.0, ge=1, le=20, description="Mean lesion count of patients with lesions.")
    max_lesions: int = Field(8, ge=1, le=30, description="Cap on lesions per patient.")
    diffuse_fraction: float = Field(0.2, ge=0, le=1, description="Fraction of lesions that replace most of a bone.")
    lytic_fraction: float = Field(0.1, ge=0, le=1, description="Fraction of lesions that are lytic (rest sclerotic).")
    focal_diameter_mm: tuple[float, float] = Field((8.0, 30.0), description="Range of focal nodule diameters (mm).")
    min_lesion_voxels: int = Field(4, ge=1, description="Smallest lesion kept, so that every lesion is visible.")

    @model_validator(mode="after")
    def _check(self) -> "CTSynthConfig":
        lo, hi = self.focal_diameter_mm
        if not 0 < lo <= hi:
            raise InputError(f"focal_diameter_mm must be increasing and positive, got {self.focal_diameter_mm}")
        return self

    @property
    def spacing(self) -> tuple[float, float, float]:
        sp = self.fov_mm / self.inplane_size
        return (sp, sp, self.slice_thickness_mm)


# --------------------------------------------------------------------------------------------
# Patient-level anatomy parameters
# --------------------------------------------------------------------------------------------


@dataclass
class Vertebra:
    label: int
    zc: float
    h: float
    a: float
    b: float
    yc: float


@dataclass
class Anatomy:
    """Per-patient parameters; lengths in anatomical mm (before the size factor)."""

    scale: float
    shift: np.ndarray  # world = scale * anat + shift
    fat: float  # subcutaneous fat thickness, anatomical mm
    age: float
    trab_hu: float
    cort_hu: float
    marrow_hu: float
    tissue_jitter: np.ndarray
    vertebrae: list[Vertebra] = field(default_factory=list)
    disc_z: list[tuple[float, float, float, float, float]] = field(default_factory=list)  # z0, z1, a, b, yc
    ribs: list[dict] = field(default_factory=list)
    z_shoulder: float = 590.0
    z_c1_top: float = 730.0
    z_diaphragm: float = 420.0
    head_c: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def y_spine(self, z: np.ndarray | float) -> np.ndarray:
        """Centre (y) of the vertebral bodies: lumbar lordosis, thoracic kyphosis, cervical lordosis."""
        return np.interp(z, [100, 200, 290, 450, 590, 660, 740], [24, 8, 18, 45, 30, 12, 15])


def _sample_anatomy(rng: np.random.Generator) -> Anatomy:
    scale = float(np.clip(rng.normal(1.0, 0.04), 0.9, 1.1))
    age = float(np.clip(rng.normal(71.0, 8.0), 50, 90))
    anatomy = Anatomy(
        scale=scale,
        shift=np.array([rng.normal(0, 8), rng.normal(-5, 8), rng.uniform(-700, -300)]),
        fat=float(rng.uniform(8, 35)),
        age=age,
        trab_hu=float(np.clip(260 - 3.0 * (age - 55) + rng.normal(0, 15), 115, 290)),
        cort_hu=float(np.clip(rng.uniform(1300, 1700) - 4.0 * (age - 55), 1000, 1800)),
        marrow_hu=float(rng.uniform(-70, -20)),
        tissue_jitter=rng.normal(0, 4, size=len(_TISSUE_HU)).astype(np.float32),
    )
    # vertebral column, stacked from the sacral promontory
    z = 105.0
    specs = []  # (label, h, a, b, disc below)
    for i, (h, a, b) in enumerate([(27, 26, 18), (27, 25, 18), (27, 24, 17), (26, 23, 17), (25, 22, 16)]):
        specs.append((27 + i, h, a, b, 10.0))
    for i in range(12):  # T12 .. T1
        f = i / 11
        specs.append((32 + i, 24 - 8 * f, 21 - 7 * f, 16 - 5 * f, 8.0 - 3 * f if i else 9.0))
    for i in range(5):  # C7 .. C3
        specs.append((44 + i, 14, 13 - 0.3 * i, 9, 5.0))
    specs.append((49, 18, 12, 9, 4.0))  # C2 body (dens added at render time)
    specs.append((50, 11, 22, 20, 3.0))  # C1 ring
    for label, h, a, b, disc in specs:
        h, a, b = (v * rng.normal(1.0, 0.02) for v in (h, a, b))
        z0 = z + disc
        zc = z0 + h / 2
        yc = float(anatomy.y_spine(zc))
        if label != 50:
            prev = anatomy.vertebrae[-1] if anatomy.vertebrae else None
            anatomy.disc_z.append((z, z0, prev.a if prev else a, prev.b if prev else b, yc))
        anatomy.vertebrae.append(Vertebra(label, zc, h, a, b, yc))
        z = z0 + h
    anatomy.z_c1_top = z
    by_label = {v.label: v for v in anatomy.vertebrae}
    anatomy.z_shoulder = by_label[43].zc + 5  # T1
    # ribs: posterior end at the body of T_k, arc of the rib-cage ellipse
    table = [  # a, b, drop, tr, tz
        (62, 48, 25, 5, 6), (92, 65, 45, 4, 7), (110, 75, 60, 4, 7), (122, 82, 75, 4, 7), (130, 86, 85, 4, 7),
        (134, 88, 90, 4, 7), (135, 88, 95, 4, 7), (134, 87, 90, 4, 7), (130, 85, 80, 4, 7), (125, 82, 70, 4, 6),
        (118, 78, 45, 4, 5), (108, 72, 30, 4, 5),
    ]
    x_end = [35, 50, 60, 70, 75, 80, 85]
    for k in range(12):
        a, b, drop, tr, tz = table[k]
        a, b = a * rng.normal(1, 0.02), b * rng.normal(1, 0.02)
        vert = by_label[43 - k]
        z_post = vert.zc + 0.3 * vert.h
        yc = vert.yc + 28 - b
        phi0 = float(np.arcsin(28 / a))
        phi1 = float(np.pi - np.arcsin(x_end[k] / a)) if k < 7 else [2.25, 2.1, 1.95, 1.6, 1.3][k - 7]
        anatomy.ribs.append(dict(k=k + 1, a=a, b=b, yc=yc, z_post=z_post, drop=drop, phi0=phi0, phi1=phi1,
                                 tr=tr, tz=tz, vert=vert))
    anatomy.z_diaphragm = anatomy.ribs[10]["z_post"]
    c1 = by_label[50]
    anatomy.head_c = np.array([0.0, c1.yc - 10, anatomy.z_c1_top + 88])
    return anatomy


def _thorax(anatomy: Anatomy, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rib-cage ellipse (a, b, y centre) at heights z, interpolated between the ribs' mid-arcs."""
    ribs = sorted(anatomy.ribs, key=lambda r: r["z_post"] - 0.5 * r["drop"])
    zk = [r["z_post"] - 0.5 * r["drop"] for r in ribs]
    return (np.interp(z, zk, [r["a"] for r in ribs]), np.interp(z, zk, [r["b"] for r in ribs]),
            np.interp(z, zk, [r["yc"] for r in ribs]))


_BODY_Z = [-60, 40, 160, 300, 420, 520, 590, 625, 650, 740]
_BODY_A = [160, 158, 150, 145, 150, 152, 158, 120, 60, 58]
_BODY_B = [112, 110, 100, 100, 110, 115, 100, 80, 55, 55]
_BODY_Y = [5, 5, 0, 0, -8, -8, 0, 10, 20, 15]


def _trunk(anatomy: Anatomy, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lean (muscle) trunk ellipse semi-axes and y centre at heights z, shoulders anchored to T1."""
    zz = np.asarray(_BODY_Z, float)
    zz[6:] += anatomy.z_shoulder - 590
    return np.interp(z, zz, _BODY_A), np.interp(z, zz, _BODY_B), np.interp(z, zz, _BODY_Y)


# --------------------------------------------------------------------------------------------
# Bones
# --------------------------------------------------------------------------------------------


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
        add(ZCylinder((0, yc), (0, yc), zc - h / 2, zc + h / 2, a, b), v.label, 1.5)
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


# --------------------------------------------------------------------------------------------
# Soft tissues
# --------------------------------------------------------------------------------------------


def _paint(tissue: np.ndarray, grid: Grid, prim, code: int, where: tuple[int, ...] | None = None) -> None:
    """Paint a primitive's interior with a tissue code (optionally only over the given codes)."""
    lo, hi = prim.bounds()
    sl = grid.box(lo, hi)
    if sl is None:
        return
    inside = prim.depth(*grid.coords(sl)) > 0
    sub = tissue[sl]
    inside = np.broadcast_to(inside, sub.shape)
    if where is not None:
        inside = inside & np.isin(sub, where)
    sub[inside] = code


def _soft_tissue(grid: Grid, anatomy: Anatomy, rng: np.random.Generator) -> np.ndarray:
    """Tissue code map of everything but bone: fat, muscle, organs, lungs, brain, air."""
    X, Y, Z = grid.coords((slice(None), slice(None), slice(None)))
    z1 = grid.z
    fat = anatomy.fat
    tissue = np.zeros(grid.shape, np.uint8)
    a, b, yb = (v[:, None, None] for v in _trunk(anatomy, z1))
    has_trunk = ((z1 >= -60) & (z1 <= anatomy.z_c1_top + 5))[:, None, None]
    fz = np.where(z1 > anatomy.z_shoulder + 40, 0.4, 1.0)[:, None, None] * fat
    rho_out = ((X / (a + fz)) ** 2 + ((Y - yb) / (b + fz)) ** 2)
    lean = ((X / a) ** 2 + ((Y - yb) / b) ** 2) <= 1
    tissue[(rho_out <= 1) & has_trunk] = FAT
    tissue[lean & has_trunk] = MUSCLE
    # thighs
    legs = (z1 < -20)[:, None, None]
    for s in (1, -1):
        r = np.interp(z1, [-450, -60], [58, 75])[:, None, None]
        cx = s * np.interp(z1, [-450, -60], [85, 100])[:, None, None]
        d2 = (X - cx) ** 2 + ((Y - 5) * 1.1) ** 2
        tissue[(d2 <= (r + 0.8 * fat) ** 2) & legs & (tissue == AIR)] = FAT
        tissue[(d2 <= r**2) & legs] = MUSCLE
    # arms
    z_sh = anatomy.z_shoulder
    for s in (1, -1):
        elbow, wrist = _arm_points(anatomy, s)
        top = (s * 180, 22, z_sh + 5)
        for p0, p1, r0, r1 in ((top, elbow, 40, 33), (elbow, wrist, 33, 24)):
            _paint(tissue, grid, Capsule(p0, p1, r0 + 0.6 * fat, r1 + 0.6 * fat), FAT, (AIR,))
            _paint(tissue, grid, Capsule(p0, p1, r0, r1), MUSCLE)
    # head and face
    hc = anatomy.head_c
    _paint(tissue, grid, Ellipsoid(hc, (78, 98, 94)), FAT, (AIR,))
    _paint(tissue, grid, Ellipsoid((0, hc[1] - 55, hc[2] - 55), (52, 38, 55)), MUSCLE, (AIR, FAT))
    _paint(tissue, grid, Ellipsoid(hc, (76, 96, 92)), MUSCLE)
    _paint(tissue, grid, Ellipsoid(hc, (64, 84, 80)), BRAIN)
    # abdominal cavity: visceral fat in front of the spine
    z_d = anatomy.z_diaphragm
    zsl = grid.box([-1e9, -1e9, -25], [1e9, 1e9, z_d + 60])
    if zsl is not None:
        zz = z1[zsl[0]]
        aa, bb, yy = (v[:, None, None] for v in _trunk(anatomy, zz))
        ys = anatomy.y_spine(zz)[:, None, None]
        cav = (((X / (aa - 14)) ** 2 + ((Y - yy) / (bb - 14)) ** 2) <= 1) & (Y < ys + 5)
        sub = tissue[zsl]
        sub[cav] = VISCERAL_FAT
    verts = {v.label: v for v in anatomy.vertebrae}
    vfat = (VISCERAL_FAT,)
    organs = (VISCERAL_FAT, LIVER, SPLEEN, KIDNEY, BOWEL)
    # bowel loops, some with gas
    for _ in range(22):
        c = (rng.uniform(-110, 110), rng.uniform(-85, 0), rng.uniform(40, z_d - 60))
        r = rng.uniform(14, 28)
        _paint(tissue, grid, Ellipsoid(c, (r, r * rng.uniform(0.7, 1.0), r * rng.uniform(0.8, 1.4))), BOWEL, vfat)
        if rng.random() < 0.35:
            _paint(tissue, grid, Ellipsoid(c, (0.45 * r, 0.4 * r, 0.45 * r)), GAS, (BOWEL,))
    _paint(tissue, grid, Capsule((0, 60, -15), (5, 45, 60), 15), BOWEL, organs + (MUSCLE,))  # rectum
    _paint(tissue, grid, Ellipsoid((0, -40, 15), (38, 30, 32)), URINE, organs + (MUSCLE,))  # bladder
    _paint(tissue, grid, Ellipsoid((-65, -15, z_d - 5), (88, 95, 80)), LIVER, organs)
    _paint(tissue, grid, Ellipsoid((85, 35, z_d - 15), (32, 45, 50)), SPLEEN, organs)
    l2 = verts[30]
    for s in (1, -1):
        _paint(tissue, grid, Ellipsoid((s * 72, l2.yc + 8, l2.zc + (10 if s < 0 else 20)), (27, 24, 55)), KIDNEY, organs)
    # psoas and paraspinal muscles
    for v in anatomy.vertebrae:
        if v.label <= 31:
            t = (v.label - 27) / 4  # 0 at L5, 1 at L1
            for s in (1, -1):
                r = 24 - 14 * t
                _paint(tissue, grid, ZCylinder((s * (v.a + r - 2), v.yc + 2), (s * (v.a + r - 2), v.yc + 2),
                                               v.zc - v.h, v.zc + v.h, r, r * 0.9), MUSCLE, organs + (FAT,))
    for s in (1, -1):
        for z0, z_1 in ((-10, 300), (300, anatomy.z_c1_top)):
            y0, y1 = float(anatomy.y_spine(z0)), float(anatomy.y_spine(z_1))
            rr = 30 if z0 < 300 else 24
            _paint(tissue, grid, ZCylinder((s * 33, y0 + 45), (s * 33, y1 + 42), z0, z_1, rr, 28), MUSCLE,
                   (FAT, VISCERAL_FAT, MUSCLE, BOWEL))
    # thorax: mediastinum, lungs above the domed diaphragm, heart, aorta, trachea
    apex = anatomy.ribs[0]["z_post"] + 25
    zsl = grid.box([-1e9, -1e9, z_d - 30], [1e9, 1e9, apex])
    if zsl is not None:
        zz = z1[zsl[0]]
        at, bt, yt = (v[:, None, None] for v in _thorax(anatomy, zz))
        Zs = zz[:, None, None]
        ys = anatomy.y_spine(zz)[:, None, None]
        inner = ((X / (at - 7)) ** 2 + ((Y - yt) / (bt - 7)) ** 2) <= 1
        dome = np.where(X < 0, z_d + 58, z_d + 45) - 45 * (((np.abs(X) - 70) / 110) ** 2 + ((Y - yt) / 120) ** 2)
        thorax = inner & (Zs > dome)
        sub = tissue[zsl]
        sub[thorax] = MUSCLE
        narrow = np.clip((apex - Zs) / 60, 0.3, 1.0)
        lung = thorax & (np.abs(X) > 18 + 12 * narrow) & ~((np.abs(X) < 45) & (Y > ys - 25))
        lung &= ((X / (at - 9)) ** 2 + ((Y - yt) / (bt - 9)) ** 2) <= np.clip((apex - Zs) / 40, 0, 1)
        sub[lung] = LUNG
        _paint(tissue, grid, Ellipsoid((18, -30, z_d + 70), (60, 48, 55), rot=_rot_z([np.cos(0.5), -np.sin(0.5), 0])),
               BLOOD, (LUNG, MUSCLE))
    t4 = verts[40]
    _paint(tissue, grid, ZCylinder((12, float(anatomy.y_spine(150)) - 28), (18, t4.yc - 28), 150, t4.zc, 12, 12), BLOOD,
           (LUNG, MUSCLE, VISCERAL_FAT, BOWEL, LIVER))
    _paint(tissue, grid, Capsule((18, t4.yc - 28, t4.zc), (5, -40, t4.zc + 25), 13), BLOOD, (LUNG, MUSCLE))
    _paint(tissue, grid, ZCylinder((5, -40), (5, -40), z_d + 60, t4.zc + 25, 14, 14), BLOOD, (LUNG, MUSCLE))
    _paint(tissue, grid, ZCylinder((0, t4.yc - 30), (0, verts[46].yc - 22), t4.zc + 10, verts[46].zc, 9, 9), AIR,
           (LUNG, MUSCLE))
    # intervertebral discs and the spinal canal (soft tissue, unlabelled)
    for z0, z_1, a, b, yc in anatomy.disc_z:
        _paint(tissue, grid, ZCylinder((0, yc), (0, yc), z0 - 1, z_1 + 1, a, b), DISC)
    return tissue


# --------------------------------------------------------------------------------------------
# Rendering one patient
# --------------------------------------------------------------------------------------------


@dataclass
class CTPhantom:
    """One synthetic patient: arrays in (z, y, x) order, the grid geometry and the lesion truth."""

    ct: np.ndarray  # int16 HU
    lesions: np.ndarray  # uint8 0/1
    bones: np.ndarray  # uint16 TotalSegmentator ids
    tissue: np.ndarray  # uint8 tissue codes (TISSUE_NAMES), bone materials before lesions
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    lesion_rows: list[dict]
    info: dict

    def image(self, array: np.ndarray, pixel: int) -> sitk.Image:
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        return sitk.Cast(image, pixel)


def _z_range(anatomy: Anatomy, region: str) -> tuple[float, float]:
    verts = {v.label: v for v in anatomy.vertebrae}
    if region == "whole_body":
        return -250.0, anatomy.head_c[2] + 98
    if region == "torso":
        return -95.0, anatomy.z_shoulder + 45
    return -75.0, verts[31].zc + verts[31].h / 2 + 20


def _make_grid(anatomy: Anatomy, config: CTSynthConfig, rng: np.random.Generator) -> tuple[Grid, tuple, tuple]:
    """World axes of the scan (centred in-plane, z range from landmarks) and their anatomical twins."""
    sp_xy, _, sp_z = config.spacing
    n = config.inplane_size
    lo, hi = _z_range(anatomy, config.region)
    lo, hi = lo + rng.normal(0, 6), hi + rng.normal(0, 6)
    s, shift = anatomy.scale, anatomy.shift
    z_lo = s * lo + shift[2]
    nz = max(int(np.ceil(s * (hi - lo) / sp_z)), 4)
    z0 = float(np.round(z_lo / sp_z * 2) / 2 * sp_z)  # table positions on a half-slice raster
    xw = -config.fov_mm / 2 + sp_xy / 2 + sp_xy * np.arange(n)
    zw = z0 + sp_z * np.arange(nz)
    anat = Grid(((xw - shift[0]) / s).astype(np.float32), ((xw - shift[1]) / s).astype(np.float32),
                ((zw - shift[2]) / s).astype(np.float32))
    return anat, (sp_xy, sp_xy, sp_z), (float(xw[0]), float(xw[0]), float(zw[0]))


def _site_weight(bone_id: int) -> float:
    """Relative metastasis frequency per bone: axial skeleton first, lumbar spine most."""
    if 27 <= bone_id <= 31:
        return 3.0
    if 32 <= bone_id <= 43:
        return 1.3
    if 44 <= bone_id <= 50:
        return 0.4
    if bone_id in (25, 26):
        return 1.5
    if bone_id in (77, 78):
        return 4.0
    if 92 <= bone_id <= 115:
        return 0.35
    return {75: 2.0, 76: 2.0, 91: 2.0, 69: 0.9, 70: 0.9, 116: 0.8, 71: 0.5, 72: 0.5, 73: 0.2, 74: 0.2}.get(bone_id, 0.0)


_DIFFUSE_OK = set(VERTEBRA_IDS) | {25, 26, 75, 76, 77, 78, 69, 70, 116, 71, 72} | set(RIB_IDS)


@dataclass
class _Lesion:
    bone_id: int
    kind: str
    type: str
    crop: tuple[slice, slice, slice]
    mask: np.ndarray
    coverage: float


def _blob(X, Y, Z, c, r, rng: np.random.Generator) -> np.ndarray:
    """Irregular nodule: a random ellipsoid with a few low-frequency bumps on its surface."""
    axes = r * rng.uniform(0.75, 1.25, size=3)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    dx, dy, dz = X - c[0], Y - c[1], Z - c[2]
    loc = [q[0, i] * dx + q[1, i] * dy + q[2, i] * dz for i in range(3)]
    rho = np.sqrt(sum((loc[i] / axes[i]) ** 2 for i in range(3)))
    for _ in range(3):
        w = rng.normal(0, 2.5, size=3) / r
        rho = rho + 0.12 * np.sin(w[0] * dx + w[1] * dy + w[2] * dz + rng.uniform(0, 2 * np.pi))
    return rho < 1.0


def _place_lesions(bones: np.ndarray, tissue: np.ndarray, spacing: tuple[float, float, float],
                   config: CTSynthConfig, rng: np.random.Generator) -> list[_Lesion]:
    """Draw lesion count, sites and shapes; enforce visibility, focal/diffuse coverage and separation."""
    if rng.random() < config.lesion_free_fraction:
        return []
    n_target = min(1 + int(rng.poisson(config.mean_lesions - 1)), config.max_lesions)
    sp = np.array(spacing[::-1])  # z, y, x
    voxel_ml = float(np.prod(sp)) / 1000.0
    objects = ndimage.find_objects(bones)
    counts = np.bincount(bones.ravel(), minlength=max(TOTALSEG_BONES) + 1)
    min_bone = max(40, 8 * config.min_lesion_voxels)
    present = [i for i in TOTALSEG_BONES if counts[i] >= min_bone and _site_weight(i) > 0]
    if not present:
        return []
    weights = np.array([_site_weight(i) for i in present])
    weights /= weights.sum()
    # smallest nodule that still covers min_lesion_voxels on average
    d_min = max(config.focal_diameter_mm[0], (6 * 1.5 * config.min_lesion_voxels * voxel_ml * 1000 / np.pi) ** (1 / 3))
    d_max = max(config.focal_diameter_mm[1], 1.4 * d_min)
    lesion_mask = np.zeros(bones.shape, bool)
    placed: list[_Lesion] = []
    slice_counts: dict[int, np.ndarray] = {}
    for _ in range(n_target):
        kind = "diffuse" if rng.random() < config.diffuse_fraction else "focal"
        ltype = "lytic" if rng.random() < config.lytic_fraction else "sclerotic"
        for _attempt in range(8):
            bone_id = int(rng.choice(present, p=weights))
            this_kind = kind if bone_id in _DIFFUSE_OK else "focal"
            lesion = _try_lesion(bone_id, this_kind, ltype, bones, tissue, objects[bone_id - 1], sp, d_min, d_max,
                                 lesion_mask, slice_counts, config, rng)
            if lesion is not None:
                lesion_mask[lesion.crop] |= lesion.mask
                placed.append(lesion)
                break
    return placed


def _try_lesion(bone_id: int, kind: str, ltype: str, bones: np.ndarray, tissue: np.ndarray, bsl: tuple,
                sp: np.ndarray, d_min: float, d_max: float, lesion_mask: np.ndarray,
                slice_counts: dict[int, np.ndarray], config: CTSynthConfig, rng: np.random.Generator) -> _Lesion | None:
    """One lesion in one bone, or None when it cannot satisfy the constraints there."""
    bone_sub = bones[bsl] == bone_id
    tis_sub = tissue[bsl]
    cand = bone_sub & ((tis_sub == TRABECULAR) if bone_id in (69, 70, 75, 76) or ltype == "lytic" else
                       np.isin(tis_sub, (TRABECULAR, FATTY_MARROW)))
    if not cand.any():
        cand = bone_sub
    if bone_id not in slice_counts:
        slice_counts[bone_id] = (bones == bone_id).sum(axis=(1, 2))
    counts = slice_counts[bone_id]
    idx = np.flatnonzero(cand)
    start = np.array(np.unravel_index(idx[rng.integers(len(idx))], cand.shape)) + [s.start for s in bsl]
    extent = np.array([(s.stop - s.start) for s in bsl]) * sp
    if kind == "diffuse":
        r = float(np.clip(0.55 * np.max(extent[1:]), 22, 60)) * rng.uniform(0.9, 1.2)
        if bone_id in VERTEBRA_IDS:  # centre on the body so that the vertebra is replaced
            body = bone_sub & (tis_sub == TRABECULAR)
            if body.any():
                start = np.round(ndimage.center_of_mass(body)).astype(int) + [s.start for s in bsl]
    else:
        r = float(np.exp(rng.uniform(np.log(d_min), np.log(d_max)))) / 2
    # lytic lesions have less contrast and lose more of it to partial volume: keep them bigger
    min_voxels = config.min_lesion_voxels * (3 if ltype == "lytic" else 1)
    if ltype == "lytic" and kind == "focal":
        r *= 1.3
    seed = int(rng.integers(2**31))
    for _ in range(6):
        blob_rng = np.random.default_rng(seed)
        half = np.ceil(1.6 * r / sp).astype(int) + 1
        lo = np.maximum(start - half, 0)
        hi = np.minimum(start + half + 1, bones.shape)
        crop = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        Z = ((np.arange(lo[0], hi[0]) - start[0]) * sp[0])[:, None, None]
        Y = ((np.arange(lo[1], hi[1]) - start[1]) * sp[1])[None, :, None]
        X = ((np.arange(lo[2], hi[2]) - start[2]) * sp[2])[None, None, :]
        mask = _blob(X, Y, Z, (0.0, 0.0, 0.0), r, blob_rng) & (bones[crop] == bone_id)
        near = lesion_mask[crop]
        if near.any():
            mask &= ~ndimage.binary_dilation(near, structure=np.ones((3, 3, 3), bool))
        if mask.any():
            labels = cc3d.connected_components(mask.astype(np.uint8), connectivity=26)
            sizes = np.bincount(labels.ravel())
            sizes[0] = 0
            mask = labels == int(np.argmax(sizes))
        n = int(mask.sum())
        per_slice = mask.sum(axis=(1, 2))
        coverage = float(np.max(per_slice / np.maximum(counts[lo[0]:hi[0]], 1))) if n else 0.0
        if kind == "focal":
            if n < min_voxels:
                r *= 1.25
                continue
            if coverage > 0.45:
                r *= 0.8
                continue
        else:
            if n < min_voxels or coverage < 0.6:
                r *= 1.3
                continue
        return _Lesion(bone_id, kind, ltype, crop, mask, coverage)
    return None


def _lesion_hu(lesion: _Lesion, hu: np.ndarray, tissue: np.ndarray, trab_hu: float, rng: np.random.Generator) -> None:
    """Paint a lesion's HU: sclerotic 300-1200 (heterogeneous) or lytic 0-100 replacing bone."""
    sub_hu, sub_t, m = hu[lesion.crop], tissue[lesion.crop], lesion.mask
    shape = m.shape
    zz, yy, xx = np.meshgrid(*(np.linspace(0, 1, n) for n in shape), indexing="ij", sparse=True)
    field_ = sum(np.sin(2 * np.pi * (f[0] * zz + f[1] * yy + f[2] * xx) + ph)
                 for f, ph in zip(rng.uniform(0.3, 1.5, size=(3, 3)), rng.uniform(0, 2 * np.pi, 3))) / 3
    noise = rng.standard_normal(shape, dtype=np.float32)
    if lesion.type == "sclerotic":
        # at least ~300 HU above this patient's trabecular bone, so that even small nodules show
        low = max(500.0, trab_hu + 300) if lesion.kind == "focal" else max(420.0, trab_hu + 250)
        base = rng.uniform(low, 1000 if lesion.kind == "focal" else 850)
        values = np.clip(base + 150 * field_ + 60 * noise, 300, 1200)
        cortex = m & (sub_t == CORTICAL)
        marrow = m & ~cortex
        sub_hu[marrow] = values[marrow]
        sub_hu[cortex] = np.maximum(sub_hu[cortex], values[cortex])
    else:
        base = rng.uniform(15, 60)
        values = np.clip(base + 20 * field_ + 10 * noise, 0, 100)
        sub_hu[m] = values[m]


def render_ct_phantom(rng_or_seed: np.random.Generator | np.random.SeedSequence | int,
                      config: CTSynthConfig | None = None) -> CTPhantom:
    """Render one patient as arrays plus the tissue map (for tests and QA of the phantom)."""
    config = config or CTSynthConfig()
    rng = rng_or_seed if isinstance(rng_or_seed, np.random.Generator) else np.random.default_rng(rng_or_seed)
    anatomy = _sample_anatomy(rng)
    grid, spacing, origin = _make_grid(anatomy, config, rng)
    s = anatomy.scale
    canvas = Canvas(grid)
    _build_bones(canvas, anatomy)
    tissue = _soft_tissue(grid, anatomy, rng)

    # bone materials from depth (converted to world mm) and each primitive's cortex thickness
    depth = canvas.depth * np.float32(s)
    is_bone = canvas.label > 0
    pv_min = 0.6 * spacing[0]
    t_cort = np.array([max(c.t_cortex, pv_min) if c.marrow != "cartilage" else 0.0 for c in canvas.classes] or [0.0],
                      np.float32)
    mix = np.array([min(1.0, c.t_cortex / max(c.t_cortex, pv_min)) for c in canvas.classes] or [1.0], np.float32)
    marrow_code = np.array([{"trabecular": TRABECULAR, "fatty": FATTY_MARROW, "cartilage": CARTILAGE}[c.marrow]
                            for c in canvas.classes] or [TRABECULAR], np.uint8)
    mat = canvas.material
    cortex = is_bone & (depth < t_cort[mat])
    tissue[is_bone] = marrow_code[mat[is_bone]]
    tissue[cortex] = CORTICAL

    lut = _TISSUE_HU + anatomy.tissue_jitter
    lut[TRABECULAR] = anatomy.trab_hu
    lut[FATTY_MARROW] = anatomy.marrow_hu
    lut[AIR] = -1000.0
    hu = lut[tissue]
    hu += _TISSUE_SD[tissue] * rng.standard_normal(tissue.shape, dtype=np.float32)
    # cortex: full cortical HU where thick enough, mixed with marrow where thinner than a voxel
    under = np.where(marrow_code[mat] == FATTY_MARROW, anatomy.marrow_hu, anatomy.trab_hu).astype(np.float32)
    cort_values = under + (anatomy.cort_hu - under) * mix[mat]
    hu[cortex] = cort_values[cortex] + 40 * rng.standard_normal(int(cortex.sum()), dtype=np.float32)
    # per-bone density variation
    bones = np.where(np.isin(canvas.label, list(TOTALSEG_BONES)), canvas.label, 0).astype(np.uint16)
    trab = tissue == TRABECULAR
    factor = rng.uniform(0.9, 1.1, size=256).astype(np.float32)
    hu[trab] *= factor[np.minimum(canvas.label[trab], 255)]
    # gentle lung gradient (dependent lung is denser, patient supine: posterior = +y)
    lung = tissue == LUNG
    if lung.any():
        Yb = np.broadcast_to(grid.y[None, :, None], tissue.shape)
        hu[lung] += 0.25 * (Yb[lung] + 100)

    lesions = _place_lesions(bones, tissue, spacing, config, rng)
    lesion_mask = np.zeros(bones.shape, np.uint8)
    for lesion in lesions:
        _lesion_hu(lesion, hu, tissue, anatomy.trab_hu, rng)
        lesion_mask[lesion.crop][lesion.mask] = 1

    hu = ndimage.gaussian_filter(hu, sigma=(0.35, 0.45, 0.45), mode="nearest")
    if config.noise_hu > 0:
        hu += np.float32(config.noise_hu) * rng.standard_normal(hu.shape, dtype=np.float32)
    ct = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)

    rows = []
    voxel_ml = float(np.prod(spacing)) / 1000.0
    for i, lesion in enumerate(lesions, start=1):
        idx = np.argwhere(lesion.mask) + [s_.start for s_ in lesion.crop]
        centre = idx.mean(axis=0)[::-1] * np.array(spacing) + np.array(origin)
        bone = TOTALSEG_BONES[lesion.bone_id]
        rows.append({
            "lesion_id": i, "bone_id": lesion.bone_id, "bone_name": bone.name, "group": bone.group,
            "kind": lesion.kind, "type": lesion.type,
            "centre_x_mm": round(float(centre[0]), 2), "centre_y_mm": round(float(centre[1]), 2),
            "centre_z_mm": round(float(centre[2]), 2),
            "volume_ml": round(len(idx) * voxel_ml, 4), "n_voxels": int(len(idx)),
            "max_slice_fraction": round(lesion.coverage, 3),
        })
    info = {"age": round(anatomy.age, 1), "scale": round(s, 3), "fat_mm": round(anatomy.fat * s, 1),
            "trabecular_hu": round(anatomy.trab_hu, 1), "cortical_hu": round(anatomy.cort_hu, 1)}
    return CTPhantom(ct, lesion_mask, bones, tissue, spacing, origin, rows, info)


def synthesize_ct_patient(rng_or_seed: np.random.Generator | np.random.SeedSequence | int,
                          config: CTSynthConfig | None = None) -> tuple[sitk.Image, sitk.Image, sitk.Image, list[dict]]:
    """CT (int16 HU), lesion mask (uint8 0/1), bone map (uint16 TotalSegmentator ids) and lesion truth rows."""
    phantom = render_ct_phantom(rng_or_seed, config)
    return (phantom.image(phantom.ct, sitk.sitkInt16), phantom.image(phantom.lesions, sitk.sitkUInt8),
            phantom.image(phantom.bones, sitk.sitkUInt16), phantom.lesion_rows)


# --------------------------------------------------------------------------------------------
# Cohort
# --------------------------------------------------------------------------------------------

TRUTH_COLUMNS = ["patient_id", "lesion_id", "bone_id", "bone_name", "group", "kind", "type", "centre_x_mm",
                 "centre_y_mm", "centre_z_mm", "volume_ml", "n_voxels", "max_slice_fraction"]


def _patient_task(args: tuple) -> dict[str, Any]:
    """Generate and write one patient (a process-pool task; RNG from its own SeedSequence)."""
    index, seed_seq, config, out = args
    pid = f"CT{index + 1:03d}"
    ct, lesions, bones, rows = synthesize_ct_patient(np.random.default_rng(seed_seq), config)
    paths = {
        "ct": out / "images" / f"{pid}_ct.nii.gz",
        "lesion_mask": out / "labels" / f"{pid}_lesions.nii.gz",
        "bone_map": out / "labels" / f"{pid}_bones.nii.gz",
    }
    write_image(ct, paths["ct"])
    write_image(lesions, paths["lesion_mask"])
    write_image(bones, paths["bone_map"])
    return {
        "manifest": {"patient_id": pid, "centre": "C1", **{k: str(p.relative_to(out)) for k, p in paths.items()},
                     "split": None},
        "truth": [{"patient_id": pid, **row} for row in rows],
    }


def generate_ct_cohort(out: str | Path, n: int, *, seed: int = 0, config: CTSynthConfig | None = None,
                       progress: Callable[[], None] | None = None, overwrite: bool = False, jobs: int = 1) -> Path:
    """Write ``n`` synthetic CT patients, their manifest and lesion truth into ``out``; return the manifest path.

    Files: ``images/<pid>_ct.nii.gz``, ``labels/<pid>_lesions.nii.gz`` (empty for lesion-free
    patients), ``labels/<pid>_bones.nii.gz``, ``manifest.csv`` (kind ct, split left empty),
    ``lesions_truth.csv`` and ``synth.json`` (seed, config, version).
    """
    out, manifest_path = start_cohort(out, n, overwrite=overwrite)
    config = config or CTSynthConfig()
    start = time.perf_counter()
    children = np.random.SeedSequence(seed).spawn(n)
    tasks = [(i, children[i], config, out) for i in range(n)]
    results = map_tasks(_patient_task, tasks, jobs=jobs, progress=progress)
    manifest = pd.DataFrame([r["manifest"] for r in results])
    truth = pd.DataFrame([row for r in results for row in r["truth"]], columns=TRUTH_COLUMNS)
    write_text_atomic(out / "lesions_truth.csv", truth.to_csv(index=False))
    write_synth_record(out, "ct", n=n, seed=seed, config=config, started=start)
    write_manifest(manifest, manifest_path, kind="ct", overwrite=overwrite)
    return manifest_path
