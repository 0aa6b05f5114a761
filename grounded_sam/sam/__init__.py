"""grounded_sam.sam."""
