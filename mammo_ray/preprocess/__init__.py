"""Preprocessing: enhancement, segmentation, quality measures and the cached Ray Data pipeline."""
