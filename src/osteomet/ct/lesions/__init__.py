"""Per-lesion analysis: 3D lesions, bones, clusters, matching to the reference, cohort tables."""
