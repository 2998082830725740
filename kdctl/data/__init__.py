"""Dataset preparation and COCO annotation checks."""
