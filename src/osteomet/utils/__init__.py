"""Small shared helpers (atomic files, hashing) used by every stage."""
