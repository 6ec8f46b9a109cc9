"""SGCAD QGIS plugin: optical+SAR land-cover segmentation with a distilled SAR water expert."""


def classFactory(iface):  # noqa: N802 - name required by QGIS
    """Entry point QGIS calls with its interface object."""
    from .plugin import SgcadPlugin

    return SgcadPlugin(iface)
