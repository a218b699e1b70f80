"""Training settings both CT slice trainers share: the schedule and per-architecture overrides."""
