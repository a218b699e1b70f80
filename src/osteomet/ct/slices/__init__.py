"""CT slice data: the cached, windowed axial slices both slice models train on."""
