"""Benchmark: per-lesion analysis of a 512x512x300 mask with 50 lesions and a full bone map.

Target (issue 8): under 2 s on the project's 2-core CPU. The bone map is the real
TotalSegmentator ``total`` map of ../shared/data/ct/totalseg_example (organs included)
resampled to 512x512x300 by nearest neighbour; 50 lesions (spheres of 3-15 voxel radius,
clipped to their bone, 10% of them filling most of the bone's cross-section) are placed in
random bones. Timed: labelling (10-connectivity), geometry, HU, bone assignment,
diffuse/focal, clusters — i.e. :func:`osteomet.ct.lesions.analyse_lesions` on in-memory
images — and, separately, matching a prediction (the mask shifted by one voxel) against it.
For reference it also times plain ``scipy.ndimage.label`` with the same structure on the
whole volume.

Run: ``.venv/bin/python benchmarks/bench_lesions.py [--repeat 3]``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from osteomet.ct.lesions.analysis import LESION_STRUCTURE, analyse_lesions
from osteomet.ct.lesions.metrics import evaluate_patient
from osteomet.data.totalsegmentator import TOTALSEG_BONES

SHAPE = (300, 512, 512)  # z, y, x
BONE_MAP = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ct" / "totalseg_example" / \
    "bones_totalsegmentator.nii.gz"


def make_case(n_lesions: int = 50, seed: int = 0) -> tuple[sitk.Image, sitk.Image, sitk.Image]:
    """Bone map, lesion mask and CT (HU) on a 512x512x300 grid."""
    rng = np.random.default_rng(seed)
    small = sitk.GetArrayFromImage(sitk.ReadImage(str(BONE_MAP))).astype(np.uint16)
    zoom = [t / s for t, s in zip(SHAPE, small.shape)]
    bones = ndimage.zoom(small, zoom, order=0, grid_mode=True, mode="grid-constant")[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    boxes = ndimage.find_objects(bones)
    bone_ids = [b for b in TOTALSEG_BONES if b <= len(boxes) and boxes[b - 1] is not None]
    mask = np.zeros(SHAPE, np.uint8)
    placed = 0
    while placed < n_lesions:
        b = int(rng.choice(bone_ids))
        box = boxes[b - 1]
        sub = bones[box] == b
        idx = np.argwhere(sub)
        centre = idx[rng.integers(len(idx))] + [s.start for s in box]
        r = rng.uniform(3, 15) if rng.random() > 0.1 else 40.0
        lo = np.maximum(centre - int(r) - 1, 0)
        hi = np.minimum(centre + int(r) + 2, SHAPE)
        crop = tuple(slice(int(a), int(c)) for a, c in zip(lo, hi))
        grids = np.ogrid[tuple(slice(int(a), int(c)) for a, c in zip(lo, hi))]
        ball = sum((g - c) ** 2 for g, c in zip(grids, centre)) <= r * r
        lesion = ball & (bones[crop] == b)
        if lesion.sum() < 5 or mask[crop][ndimage.binary_dilation(lesion)].any():
            continue
        mask[crop][lesion] = 1
        placed += 1
    ct = np.where(bones > 0, 250, 40).astype(np.int16)
    ct[mask > 0] = 800
    images = []
    for array in (bones, mask, ct):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((0.8, 0.8, 1.5))
        images.append(image)
    return images[0], images[1], images[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    t0 = time.perf_counter()
    bones, mask, ct = make_case()
    print(f"built case {SHAPE[::-1]} (x, y, z) in {time.perf_counter() - t0:.1f} s")
    timings = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        analysis = analyse_lesions(mask, bones, ct)
        timings.append(time.perf_counter() - start)
    best = min(timings)
    print(f"analyse_lesions: {analysis.table.shape[0]} lesions ({int((analysis.table['kind'] == 'diffuse').sum())} "
          f"diffuse, {analysis.table['cluster_id'].nunique()} clusters); best of {args.repeat}: {best:.3f} s, "
          f"median {np.median(timings):.3f} s; target 2 s -> ratio {best / 2.0:.2f} "
          f"({'PASS' if best < 2.0 else 'FAIL'})")
    shifted = sitk.GetImageFromArray(np.roll(sitk.GetArrayViewFromImage(mask), 1, axis=2))
    shifted.CopyInformation(mask)
    start = time.perf_counter()
    pred = analyse_lesions(shifted, bones, ct)
    evaluation = evaluate_patient(pred, analysis, criterion="iou", iou_threshold=0.1)
    seconds = time.perf_counter() - start
    print(f"prediction analysis + matching: {seconds:.3f} s ({int(evaluation.reference['detected'].sum())}/"
          f"{len(evaluation.reference)} detected)")
    start = time.perf_counter()
    _, n = ndimage.label(sitk.GetArrayViewFromImage(mask), structure=LESION_STRUCTURE)
    print(f"reference: scipy.ndimage.label on the whole volume alone {time.perf_counter() - start:.3f} s ({n} lesions)")


if __name__ == "__main__":
    main()
