"""The dock's Flood tab (``sgcad:floodmap``; ``sgcad:watermap`` without a before date) and its "vectorise
the class map" option (``sgcad:vectorize``).

Both run their Processing algorithm on a background task of their own (:mod:`.tasks`), share the
dock's water expert, device and output folder, and show their results as styled layers in a
group per run (``layers.publish_results`` / ``layers.add_polygon_layer``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, Optional

from qgis.core import QgsFieldProxyModel, QgsMapLayerProxyModel, QgsProject
from qgis.gui import QgsFieldComboBox, QgsMapLayerComboBox
from qgis.PyQt.QtCore import QUrl
from qgis.PyQt.QtGui import QDesktopServices
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .. import layers as styles
from .inputs import shrinkable
from .tasks import TaskRunner

FLOODMAP = "sgcad:floodmap"
WATERMAP = "sgcad:watermap"
VECTORIZE = "sgcad:vectorize"
METHODS = (("teacher", "Water expert (network)"), ("threshold", "Scene-adaptive threshold"))


def _busy(dock) -> bool:
    """True (with a message) when any SGCAD run of the dock is still going."""
    runners = [dock.runner]
    for name in ("flood_tab", "vector_option"):
        part = getattr(dock, name, None)
        if part is not None:
            runners.append(part.runner)
    if any(r.busy() for r in runners):
        dock.notify("Another SGCAD run is still going; wait for it or cancel it first.", 1)
        return True
    return False


class FloodTab(QWidget):
    """Pick a before and an after SAR layer (and areas to report), run ``sgcad:floodmap``, show the maps.

    Args:
        dock: the SGCAD dock (water expert, device, output folder, progress bar, log and messages).
    """

    def __init__(self, dock, parent=None) -> None:
        super().__init__(parent or dock)
        self.dock = dock
        self.runner = TaskRunner(self)
        self.pending: Dict[str, Any] = {}
        self.last: Dict[str, Any] = {}
        self.layer_ids: Dict[str, str] = {}
        layout = QVBoxLayout(self)
        text = QLabel("Maps a flood from a SAR image before and one after the event: red = water after and "
                      "not before, blue = water on both dates, grey = where SAR cannot see water. The "
                      "report gives the flooded km² per area. Leave 'Before' empty to map the water of "
                      "the 'After' image alone.", self)
        text.setWordWrap(True)
        layout.addWidget(text)
        form = QFormLayout()
        form.setRowWrapPolicy(QFormLayout.WrapLongRows)
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        self.before = self._raster_combo()
        self.after = self._raster_combo()
        self.method = QComboBox(self)
        for key, label in METHODS:
            self.method.addItem(label, key)
        self.method.setToolTip("Water expert: the SAR network (choose it above). Threshold: a split-based "
                               "threshold of each date's backscatter, no network.")
        shrinkable(self.method)
        self.areas = QgsMapLayerComboBox(self)
        self.areas.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.areas.setAllowEmptyLayer(True)
        self.areas.setLayer(None)
        self.areas.setToolTip("Optional polygons (e.g. municipalities): the report gives each one's flood")
        shrinkable(self.areas)
        self.name_field = QgsFieldComboBox(self)
        self.name_field.setFilters(QgsFieldProxyModel.String)
        self.name_field.setAllowEmptyFieldName(True)
        shrinkable(self.name_field)
        self.areas.layerChanged.connect(self.name_field.setLayer)
        self.polygons = QCheckBox("Also write the flood as polygons", self)
        form.addRow("Before", self.before)
        form.addRow("After", self.after)
        form.addRow("Water from", self.method)
        form.addRow("Areas", self.areas)
        form.addRow("Area names", self.name_field)
        form.addRow(self.polygons)
        layout.addLayout(form)
        row = QHBoxLayout()
        self.run_button = QPushButton("Map flood", self)
        self.run_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.runner.cancel)
        row.addWidget(self.run_button, 1)
        row.addWidget(self.cancel_button)
        layout.addLayout(row)
        self.summary = QLabel("", self)
        self.summary.setWordWrap(True)
        layout.addWidget(self.summary)
        self.report_button = QPushButton("Open the flood report", self)
        self.report_button.setEnabled(False)
        self.report_button.clicked.connect(self.open_report)
        layout.addWidget(self.report_button)
        layout.addStretch(1)
        self.runner.progress.connect(lambda v: self.dock.progress.setValue(int(v)))
        self.runner.line.connect(lambda text: self.dock.log.appendPlainText(text))
        self.runner.finished.connect(self._finished)
        self.before.layerChanged.connect(self._name_button)
        self._pick_defaults()
        self._name_button()

    def _name_button(self, *_) -> None:
        """'Map flood' with a before layer; 'Map water' (of the after image alone) without one."""
        self.run_button.setText("Map flood" if self.before.currentLayer() is not None else "Map water")

    def _raster_combo(self) -> QgsMapLayerComboBox:
        combo = QgsMapLayerComboBox(self)
        combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        combo.setAllowEmptyLayer(True)
        return shrinkable(combo)

    def _pick_defaults(self) -> None:
        """SAR-like rasters (one band, or two such as VV + VH), the older-sounding first (file names
        usually hold the date); a single one becomes 'After', for a one-date water map."""
        candidates = sorted(
            (layer for layer in QgsProject.instance().mapLayers().values()
             if layer.type() == layer.RasterLayer and 1 <= layer.bandCount() <= 2),
            key=lambda layer: layer.name())
        if len(candidates) >= 2:
            self.before.setLayer(candidates[0])
            self.after.setLayer(candidates[1])
        elif candidates:
            self.before.setLayer(None)
            self.after.setLayer(candidates[0])
        self._name_button()

    def parameters(self) -> Dict[str, Any]:
        """The ``sgcad:floodmap`` parameters of the current choices.

        Raises:
            ValueError: one sentence naming what is missing.
        """
        before, after = self.before.currentLayer(), self.after.currentLayer()
        if after is None:
            raise ValueError("Choose the SAR layer after the event in the Flood tab (and the one before it for a "
                             "flood map).")
        if before is not None and before.id() == after.id():
            raise ValueError("The before and after layers are the same layer; choose two dates.")
        method = self.method.currentData()
        teacher = self.dock.teacher.filePath().strip()
        if method == "teacher" and not teacher:
            raise ValueError("The water expert method needs a water expert model (under 'Imagery and model'); "
                             "or choose the threshold method.")
        folder = Path(self.dock.output.filePath() or ".")
        if not str(folder).strip() or str(folder) == ".":
            raise ValueError("Choose a folder to save runs in ('Save runs in').")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        if before is None:
            if method != "teacher":
                raise ValueError("Without a before layer only the water expert maps the after image's water; "
                                 "choose 'Water expert', or a before layer for a flood map.")
            return {"SAR": after.source(), "TEACHER": teacher, "DEVICE": self.dock.device.index(),
                    "OUTPUT_FOLDER": str(folder / f"water-{stamp}")}
        params = {
            "BEFORE": before.source(),
            "AFTER": after.source(),
            "METHOD": method,
            "TEACHER": teacher,
            "DEVICE": self.dock.device.index(),
            "VECTORIZE": self.polygons.isChecked(),
            "OUTPUT_FOLDER": str(folder / f"flood-{stamp}"),
        }
        areas = self.areas.currentLayer()
        if areas is not None:
            params["AOI_LAYER"] = areas.source() if areas.providerType() == "ogr" else areas.id()
            if self.name_field.currentField():
                params["AOI_NAME_FIELD"] = self.name_field.currentField()
        return params

    def start(self) -> bool:
        """Start ``sgcad:floodmap``; returns False (with a message) when the choices do not work."""
        if _busy(self.dock):
            return False
        try:
            params = self.parameters()
        except ValueError as exc:
            self.dock.notify(str(exc), 2)
            return False
        alg = WATERMAP if "SAR" in params else FLOODMAP
        name = f"{'Water' if alg == WATERMAP else 'Flood'} map {time.strftime('%H:%M:%S')}"
        self.pending = {"name": name, "started": time.monotonic(), "method": params.get("METHOD", "teacher"),
                        "alg": alg}
        self.dock.log.appendPlainText(f"--- {alg} {name}")
        self.dock.progress.setValue(0)
        uses_project = not str(params.get("AOI_LAYER", "")).endswith((".gpkg", ".shp", ".geojson"))
        self.runner.start(f"SGCAD {name}", alg, params, use_project=uses_project and "AOI_LAYER" in params)
        self._set_busy(True)
        self.dock.notify(f"{name}: running in the background…", 0)
        return True

    def _set_busy(self, busy: bool) -> None:
        self.run_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)

    def _finished(self, alg_id: str, ok: bool, results: dict, error: str, canceled: bool) -> None:
        pending, self.pending = self.pending, {}
        self._set_busy(False)
        name = pending.get("name", alg_id)
        if canceled or not ok:
            self.dock.notify(f"{name}: canceled; no layer was changed." if canceled else f"{name} failed: {error}",
                             1 if canceled else 2)
            return
        self.dock.progress.setValue(100)
        try:
            if pending.get("alg") == WATERMAP:
                self.show_water(results, time.monotonic() - pending.get("started", 0))
                return
            self.show_results(results, pending.get("method", ""), time.monotonic() - pending.get("started", 0))
        except ValueError as exc:
            self.dock.notify(f"{name}: {exc}", 2)

    def show_results(self, results: dict, method: str = "", seconds: float = 0.0) -> None:
        """Styled layers of a finished run in a new group; the totals in the tab."""
        paths = {
            "flood": results.get("FLOOD_EXTENT", ""),
            "exclusion": results.get("EXCLUSION", ""),
            "likelihood": results.get("FLOOD_LIKELIHOOD", ""),
            "water_after": results.get("WATER_AFTER", ""),
            "water_before": results.get("WATER_BEFORE", ""),
        }
        project = QgsProject.instance()
        group, shown = styles.publish_results(project, styles.run_group_name("Flood map", method),
                                              styles.flood_results(paths, method))
        self.layer_ids = shown
        if results.get("POLYGONS"):
            flood = [c for c in styles.FLOOD_EXTENT_CLASSES if c[0] == 1]
            styles.add_polygon_layer(project, results["POLYGONS"], "flood", "Flood polygons", flood, group.name(),
                                     role="flood_polygons")
        self.last = dict(results)
        self.report_button.setEnabled(bool(results.get("REPORT")))
        text = (f"Observed flood {float(results.get('FLOOD_KM2') or 0):.3f} km², permanent water "
                f"{float(results.get('PERMANENT_WATER_KM2') or 0):.3f} km², excluded "
                f"{float(results.get('EXCLUDED_KM2') or 0):.3f} km².")
        self.summary.setText(text)
        self.dock.notify(f"Flood map: {text} Layers in group '{group.name()}' ({seconds:.0f} s).", 3)
        for warning in filter(None, str(results.get("WARNINGS") or "").splitlines()):
            self.dock.notify(f"Flood map: {warning}", 1)

    def show_water(self, results: dict, seconds: float = 0.0) -> None:
        """The layers of a one-date water map in a new group; its area and model in the tab."""
        items = styles.water_date_results(results.get("WATER", ""), results.get("WATER_PROBABILITY", ""))
        model = str(results.get("MODEL_USED") or "")
        group, self.layer_ids = styles.publish_results(QgsProject.instance(),
                                                       styles.run_group_name("Water map", model), items)
        self.last = dict(results)
        self.report_button.setEnabled(False)
        text = (f"Water {float(results.get('WATER_KM2') or 0):.3f} km² "
                f"({100 * float(results.get('WATER_SHARE') or 0):.1f} % of the SAR footprint), mapped by {model}.")
        self.summary.setText(text)
        self.dock.notify(f"Water map: {text} Layers in group '{group.name()}' ({seconds:.0f} s).", 3)
        for warning in filter(None, str(results.get("WARNINGS") or "").splitlines()):
            self.dock.notify(f"Water map: {warning}", 1)

    def open_report(self) -> None:
        report = self.last.get("REPORT")
        if report and Path(report).is_file():
            QDesktopServices.openUrl(QUrl.fromLocalFile(report))

    def shutdown(self) -> None:
        if self.runner.busy():
            self.runner.cancel()


class VectorizeOption(QCheckBox):
    """The Segment tab's "vectorise the class map" switch: after each segmentation, ``sgcad:vectorize``
    turns its class map into polygons (with the mean confidence) added to the run's group."""

    def __init__(self, dock, parent=None) -> None:
        super().__init__("Also vectorise the class map", parent or dock)
        self.dock = dock
        self.setToolTip("After segmenting, write polygons.gpkg beside the class map: one polygon per "
                        "connected area of a class, with its area, perimeter and mean confidence.")
        self.runner = TaskRunner(self)
        self.group: Optional[str] = None
        self.runner.line.connect(lambda text: self.dock.log.appendPlainText(text))
        self.runner.finished.connect(self._finished)

    def segmentation_done(self, outputs: dict, group_name: str) -> bool:
        """Start ``sgcad:vectorize`` on a segmentation's class map when the option is on."""
        classes = outputs.get("CLASSES")
        if not self.isChecked() or not classes or self.runner.busy():
            return False
        self.group = group_name
        params = {
            "CLASSES": classes,
            "CONFIDENCE": outputs.get("CONFIDENCE") or None,
            "OUTPUT": str(Path(classes).with_name("polygons.gpkg")),
            "OVERWRITE": True,
        }
        self.dock.log.appendPlainText(f"--- {VECTORIZE} {Path(classes).parent.name}")
        self.runner.start("SGCAD vectorise the class map", VECTORIZE, params)
        self.dock.notify("Vectorising the class map in the background…", 0)
        return True

    def _finished(self, alg_id: str, ok: bool, results: dict, error: str, canceled: bool) -> None:
        if canceled or not ok:
            self.dock.notify("Vectorising: canceled." if canceled else f"Vectorising failed: {error}",
                             1 if canceled else 2)
            return
        path = results.get("OUTPUT", "")
        try:
            from ..engine.vector.polygonize import class_colors_of, class_names_of

            classes = Path(path).with_name("classes.tif")
            colors, names = class_colors_of(classes), class_names_of(classes)
            legend = [(v, colors.get(v, "#999999"), f"{v} {n}") for v, n in sorted(names.items())]
            styles.add_polygon_layer(QgsProject.instance(), path, "polygons", "Class polygons", legend, self.group,
                                     role="class_polygons")
        except ValueError as exc:
            self.dock.notify(f"Vectorising: {exc}", 2)
            return
        self.dock.notify(f"{int(results.get('POLYGONS') or 0)} polygons written to {path}.", 3)

    def shutdown(self) -> None:
        if self.runner.busy():
            self.runner.cancel()
