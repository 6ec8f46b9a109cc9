"""Class maps to polygons: streamed, seamless across blocks, with per-polygon attributes.

- :mod:`.components`: connected components of equal class over a raster read block by block,
  exact across block borders, with per-component pixel counts and confidence sums.
- :mod:`.geometry`: pixel-space geometry helpers (canonical rings, affine transform of WKB).
- :mod:`.polygonize`: :func:`~.polygonize.vectorize_classes`, the GeoPackage writer.
"""
