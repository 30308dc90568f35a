"""aims_core."""
