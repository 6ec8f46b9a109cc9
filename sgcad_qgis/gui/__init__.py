"""The SGCAD dock: segment, fine-tune from drawn polygons, and inspect gates and KD ratios.

Everything here is Qt/QGIS user interface. The work itself always runs through the ``sgcad``
Processing algorithms in a background task (see :mod:`.tasks`), never by calling the engine.
"""
