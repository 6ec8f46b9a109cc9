"""Flood mapping from two SAR dates (before and after an event).

- :mod:`.mapping`: :func:`~.mapping.map_flood`: water on each date (the SAR water teacher,
  the scene-adaptive threshold, or the student where an optical image of the date is given),
  observed flood extent, permanent water, flood likelihood and the exclusion layer.
- :mod:`.sources`: one date's SAR in speckle-filtered dB on the output grid.
- :mod:`.terrain`: radar shadow and layover from a local incidence angle or a DEM.
- :mod:`.report`: flooded area per area-of-interest polygon, as JSON and HTML.
- :mod:`.synthetic`: a before/after pair with a known flood, and flood scores.
"""
