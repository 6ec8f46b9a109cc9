"""SGCAD QGIS plugin: optical+SAR land-cover segmentation with a distilled SAR water expert."""


def classFactory(iface):  # noqa: N802 - name required by QGIS
    """Entry point QGIS calls with its interface object.

    Packages the plugin installed into the QGIS profile (see :mod:`.deps`) are put on
    ``sys.path`` first, before anything imports torch.
    """
    from .deps import activate

    activate()
    from .plugin import SgcadPlugin

    return SgcadPlugin(iface)
