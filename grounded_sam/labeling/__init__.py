"""grounded_sam.labeling."""
