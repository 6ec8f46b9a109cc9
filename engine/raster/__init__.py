"""Raster I/O: windows, target grids, on-the-fly alignment, label rasterisation, atomic GeoTIFF writing."""
