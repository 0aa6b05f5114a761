"""grounded_sam.export."""
