"""Pictures: grids, strips, curves and reports."""
