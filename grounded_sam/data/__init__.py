"""grounded_sam.data."""
