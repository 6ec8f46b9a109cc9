"""Guided installation of SGCAD's Python dependencies into a folder the plugin owns.

QGIS's Python (the system Python on Linux, OSGeo4W's or QGIS.app's elsewhere) usually lacks
torch. Instead of asking users to run pip by hand (which PEP 668 refuses on Debian 12 and
which is easy to point at the wrong Python), the plugin installs the missing packages with
QGIS's own interpreter into ``<profile>/python/sgcad_deps/<python version>`` and puts that
folder on ``sys.path``, so no environment variable and, in most cases, no restart is needed.

Modules:
    spec: what SGCAD needs, the pinned versions per platform, GPU detection and the torch build.
    interpreter: the real Python executable behind QGIS (``sys.executable`` is QGIS itself).
    location: the plugin-owned folder and putting it on ``sys.path``.
    plan: the pip commands of an installation (pure functions, tested without running pip).
    runner: runs those commands with progress, a log and Cancel (Qt).
"""

from .location import activate, deps_dir  # noqa: F401
