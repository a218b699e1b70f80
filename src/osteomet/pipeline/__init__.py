"""End-to-end runs that chain the stages through a run directory."""
