"""grounded_sam.inpaint."""
