"""Drawing with Pillow only: labelled image grids, annotated grids with a fixed geometry, and line plots."""
