"""grounded_sam.text."""
