"""Synthetic CT cohort for bone-metastasis research: HU volumes, lesion masks, bone maps.

Phantom model
-------------
Anatomy is analytic, in patient (LPS) millimetres with the femoral-head centre at height 0,
scaled per patient by a body-size factor and shifted in the scanner; each primitive is
evaluated only inside its own bounding box (see :mod:`._shapes`), so a whole torso renders
in about a second (128 x 128, sub-slices included).

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
  heterogeneous), some lytic (0-100 HU, replacing the marrow inside the cortex, which stays and
  is not part of the mask); *focal* irregular nodules (8-30 mm,
  never more than 45% of the bone's axial cross-section on any slice) or *diffuse*
  replacement of most of a bone (more than 60% of the cross-section on some slice). Sites
  are drawn axial skeleton first (lumbar spine most, then pelvis, ribs, proximal femora,
  skull and humeri). The mask is the lesion inside its bone only; lesions never touch, so
  each is one 26-connected component and the truth table matches the mask exactly.
  Whether a patient has lesions is its generator's first draw; a cohort holds exactly
  ``round(n * lesion_free_fraction)`` lesion-free patients (default 0.4), and a patient meant
  to have lesions always gets at least one.
* **Benign look-alikes** (:mod:`.lookalikes`), in every patient and never in the lesion mask:
  bone islands (small, round, homogeneous, cortex-dense foci in trabecular bone) and vertebral
  osteophytes (dense spurs from endplate margins, part of their vertebra in the bone map). Joint
  cortex cut tangentially (femoral-head dome, acetabular roof) already arises from the anatomy.
* **Image formation**: each slice is the mean of its slab. The HU map is rendered on up to
  five sub-slices per slice (none thicker than the widened cortex; fewer where memory
  would not allow), averaged, blurred by about
  half a voxel (partial volume), then Gaussian noise is added and the result stored as int16.
  The label maps are those at the slice centre, and a lesion is labelled where it fills most of
  a slab (its HU is painted only there). Rendering only the slice centre made a 5 mm slice that
  cut a 1 mm endplate uniformly cortical, a healthy vertebra that looked sclerotic.

Randomness: each patient draws from its own child of ``SeedSequence(seed)``, so a cohort is
identical whatever the number of worker processes.
"""

from osteomet.data.synth.ct.cohort import TRUTH_COLUMNS, generate_ct_cohort, lesion_free_patients
from osteomet.data.synth.ct.lookalikes import BONE_ISLAND, LOOKALIKE_COLUMNS, LOOKALIKE_KINDS, OSTEOPHYTE
from osteomet.data.synth.ct.materials import (
    AIR,
    BLOOD,
    BOWEL,
    BRAIN,
    CARTILAGE,
    CORTICAL,
    DISC,
    FAT,
    FATTY_MARROW,
    GAS,
    KIDNEY,
    LIVER,
    LUMBAR_IDS,
    LUNG,
    MUSCLE,
    RIB_IDS,
    SPLEEN,
    TISSUE_NAMES,
    TRABECULAR,
    UNLABELLED_BONE,
    URINE,
    VERTEBRA_IDS,
    VISCERAL_FAT,
    CTSynthConfig,
    Region,
)
from osteomet.data.synth.ct.render import CTPhantom, phantom_images, render_ct_phantom, synthesize_ct_patient

__all__ = [
    "AIR",
    "BLOOD",
    "BONE_ISLAND",
    "BOWEL",
    "BRAIN",
    "CARTILAGE",
    "CORTICAL",
    "DISC",
    "FAT",
    "FATTY_MARROW",
    "GAS",
    "KIDNEY",
    "LIVER",
    "LOOKALIKE_COLUMNS",
    "LOOKALIKE_KINDS",
    "LUMBAR_IDS",
    "LUNG",
    "MUSCLE",
    "OSTEOPHYTE",
    "RIB_IDS",
    "SPLEEN",
    "TISSUE_NAMES",
    "TRABECULAR",
    "TRUTH_COLUMNS",
    "UNLABELLED_BONE",
    "URINE",
    "VERTEBRA_IDS",
    "VISCERAL_FAT",
    "CTPhantom",
    "CTSynthConfig",
    "Region",
    "generate_ct_cohort",
    "lesion_free_patients",
    "phantom_images",
    "render_ct_phantom",
    "synthesize_ct_patient",
]
