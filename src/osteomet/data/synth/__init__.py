"""Seeded synthetic cohorts written in the manifest format (bpMRI and CT)."""
