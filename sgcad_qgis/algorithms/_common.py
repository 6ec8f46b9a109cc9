"""Parameters and run-time plumbing shared by the algorithms that call the engine.

Every SGCAD algorithm is a thin wrapper: parameters -> file paths + engine configs -> one engine
call -> outputs. This module holds the parts they share: raster layers with band choice, model
files, the area of interest, advanced switches, torch threads, stage timings and the
translation of engine errors into messages Processing shows.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Tuple

from qgis.core import (
    QgsCoordinateTransform,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterBand,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingUtils,
    QgsRectangle,
)

from .. import layers
from ._base import SgcadAlgorithm, make_progress

MODEL_FILTER = "SGCAD model (*.safetensors)"

# Units choices, keyed by the engine's names (static strings: `qgis_process ... SAR_UNITS=db`
# and the CLI's --sar-units db take the same words). The engine decides what "auto" means.
OPTICAL_UNIT_CHOICES = (
    ("auto", "Detect from the file"),
    ("uint8", "8-bit values (0–255)"),
    ("reflectance10000", "Reflectance × 10000 (Sentinel-2, Landsat surface reflectance)"),
    ("reflectance", "Reflectance 0–1"),
    ("dn", "Digital numbers of another scale"),
)
SAR_UNIT_CHOICES = (
    ("auto", "Detect from the file"),
    ("linear", "Linear power (sigma0 / gamma0)"),
    ("db", "Decibels"),
    ("amplitude", "Amplitude (square root of power)"),
    ("dn", "Uncalibrated amplitude numbers (DN)"),
)


class EngineAlgorithm(SgcadAlgorithm):
    """An :class:`SgcadAlgorithm` with helpers for the common parameters and the engine call.

    Nothing is stored on the instance between runs (batch mode runs one instance per row, the
    Modeler reuses instances), so every value is read from ``parameters`` when needed.
    """

    # ------------------------------------------------------------------ parameters
    def add_raster(self, name: str, label: str, optional: bool = False) -> None:
        self.addParameter(QgsProcessingParameterRasterLayer(name, self.tr(label), optional=optional))

    def add_bands(self, name: str, parent: str, label: str, advanced: bool = False) -> None:
        """Multiple band choice of raster parameter ``parent``; empty means the default bands."""
        param = QgsProcessingParameterBand(
            name, self.tr(label), None, parent, optional=True, allowMultiple=True
        )
        self.add_advanced(param) if advanced else self.addParameter(param)

    def add_model(self, name: str, label: str, optional: bool = False) -> None:
        self.addParameter(
            QgsProcessingParameterFile(
                name,
                self.tr(label),
                QgsProcessingParameterFile.File,
                fileFilter=MODEL_FILTER,
                optional=optional,
            )
        )

    def add_aoi(self) -> None:
        """Area of interest: an extent, or polygons (their bounding box), both optional."""
        self.addParameter(
            QgsProcessingParameterExtent("AOI_EXTENT", self.tr("Area of interest (extent)"), optional=True)
        )
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                "AOI_LAYER",
                self.tr("Area of interest (polygon layer)"),
                [QgsProcessing.TypeVectorPolygon],
                optional=True,
            )
        )

    def add_number(
        self,
        name: str,
        label: str,
        default: float,
        minimum: float,
        maximum: Optional[float] = None,
        integer: bool = True,
        advanced: bool = True,
    ) -> None:
        kind = QgsProcessingParameterNumber.Integer if integer else QgsProcessingParameterNumber.Double
        param = QgsProcessingParameterNumber(
            name, self.tr(label), kind, default, False, minimum, maximum if maximum is not None else 1e12
        )
        self.add_advanced(param) if advanced else self.addParameter(param)

    def add_flag(self, name: str, label: str, default: bool, advanced: bool = True) -> None:
        param = QgsProcessingParameterBoolean(name, self.tr(label), default)
        self.add_advanced(param) if advanced else self.addParameter(param)

    def add_units(self, optical: bool = True, advanced: bool = True) -> None:
        """OPTICAL_UNITS, SAR_UNITS and SAR_CALIBRATION: the engine detects units unless told."""
        choices = ((("OPTICAL_UNITS", "Units of the optical raster", OPTICAL_UNIT_CHOICES),) if optical else ()) + (
            ("SAR_UNITS", "Units of the SAR raster", SAR_UNIT_CHOICES),
        )
        for name, label, options in choices:
            param = QgsProcessingParameterEnum(
                name, self.tr(label), options=[key for key, _ in options], defaultValue="auto"
            )
            param.setUsesStaticStrings(True)
            param.setHelp(self.tr("; ".join(f"{key}: {text}" for key, text in options)))
            self.add_advanced(param) if advanced else self.addParameter(param)
        self.add_number(
            "SAR_CALIBRATION",
            "SAR calibration constant for DN (sigma0 = DN² / constant; 0 = match the model's level)",
            0.0,
            0.0,
            integer=False,
        )

    def units_values(self, parameters, context) -> dict:
        """The engine's ``optical_units``, ``sar_units`` and ``sar_calibration`` from the parameters."""
        out = {}
        for name, key in (("OPTICAL_UNITS", "optical_units"), ("SAR_UNITS", "sar_units")):
            if name in parameters or self.parameterDefinition(name) is not None:
                out[key] = self.parameterAsEnumString(parameters, name, context) or "auto"
        if self.parameterDefinition("SAR_CALIBRATION") is not None:
            out["sar_calibration"] = self.parameterAsDouble(parameters, "SAR_CALIBRATION", context)
        return out

    def add_threads_and_overwrite(self) -> None:
        self.add_number("THREADS", "CPU threads for torch (0 = all cores)", 0, 0, 256)
        self.add_flag("OVERWRITE", "Overwrite existing output files", False)

    # ------------------------------------------------------------------ values
    def raster_path(
        self,
        parameters,
        name: str,
        context,
        feedback,
        label: str,
        extent: Optional[QgsRectangle] = None,
        extent_crs=None,
    ) -> str:
        layer = self.parameterAsRasterLayer(parameters, name, context)
        return layers.raster_source(layer, label, feedback, extent, extent_crs)

    def aoi_window(self, parameters, context, crs, margin: float = 0.0) -> Optional[QgsRectangle]:
        """The area of interest's bounding box in ``crs``, grown by ``margin`` (``crs`` units).

        Layers that must be exported (not plain files) are exported over this window only.
        """
        if parameters.get("AOI_LAYER") not in (None, ""):
            source = self.parameterAsSource(parameters, "AOI_LAYER", context)
            rect = QgsRectangle(source.sourceExtent())
            if source.sourceCrs().isValid() and source.sourceCrs() != crs:
                transform = QgsCoordinateTransform(source.sourceCrs(), crs, context.transformContext())
                rect = transform.transformBoundingBox(rect)
        elif parameters.get("AOI_EXTENT") not in (None, ""):
            rect = self.parameterAsExtent(parameters, "AOI_EXTENT", context, crs)
        else:
            return None
        rect.grow(margin)
        return rect

    def bands(self, parameters, name: str, context) -> Tuple[int, ...]:
        """Selected 1-based bands, in the order chosen; () when none were chosen."""
        if parameters.get(name) in (None, "", []):
            return ()
        return tuple(int(b) for b in self.parameterAsInts(parameters, name, context))

    def vector_path(self, parameters, name: str, context, feedback) -> Tuple[str, Optional[str]]:
        """(file path, layer name) readable by OGR; memory or database layers are exported."""
        path, layer_name = self.parameterAsCompatibleSourceLayerPathAndLayerName(
            parameters, name, context, ["gpkg", "shp", "geojson"], "gpkg", feedback
        )
        if not path:
            raise QgsProcessingException(f"Cannot read the vector layer given for {name}.")
        return path, (layer_name or None)

    def aoi_value(self, parameters, context, feedback, grid_crs=None) -> Optional[str]:
        """The area of interest as the engine takes it: a polygon file, a box, or None.

        Polygons are copied to a small GeoPackage (the engine masks pixels outside them); an
        extent becomes ``"minx,miny,maxx,maxy,EPSG:n"``, or is brought into ``grid_crs`` when
        its CRS has no authority id.
        """
        if parameters.get("AOI_LAYER") not in (None, ""):
            source = self.parameterAsSource(parameters, "AOI_LAYER", context)
            return layers.features_to_file(source, "area of interest", context, feedback)
        if parameters.get("AOI_EXTENT") in (None, ""):
            return None
        crs = self.parameterAsExtentCrs(parameters, "AOI_EXTENT", context)
        if crs.isValid() and crs.authid() and not crs.authid().startswith("USER:"):
            rect = self.parameterAsExtent(parameters, "AOI_EXTENT", context)
            suffix = f",{crs.authid()}"
        else:
            rect = self.parameterAsExtent(parameters, "AOI_EXTENT", context, grid_crs)
            suffix = ""
        if rect.isEmpty():
            return None
        return f"{rect.xMinimum()!r},{rect.yMinimum()!r},{rect.xMaximum()!r},{rect.yMaximum()!r}{suffix}"

    def output_path(self, parameters, name: str, context) -> str:
        path = self.parameterAsOutputLayer(parameters, name, context)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return path

    def output_folder(self, parameters, name: str, context) -> str:
        folder = self.parameterAsString(parameters, name, context)
        if not folder or folder == QgsProcessing.TEMPORARY_OUTPUT:
            folder = QgsProcessingUtils.generateTempFilename(name.lower())
        Path(folder).mkdir(parents=True, exist_ok=True)
        return folder

    def overwrite(self, parameters, context) -> bool:
        return bool(parameters.get("OVERWRITE")) and self.parameterAsBoolean(parameters, "OVERWRITE", context)

    # ------------------------------------------------------------------ running
    def prepareAlgorithm(self, parameters, context, feedback):  # noqa: N802
        """Run the early checks again: batch mode and ``alg.run()`` skip ``checkParameterValues``."""
        ok, message = self.checkParameterValues(parameters, context)
        if not ok:
            raise QgsProcessingException(message)
        return True

    def set_threads(self, parameters, context, feedback) -> int:
        """Set torch's threads for this (worker) thread; torch's setting is per thread."""
        import torch

        n = self.parameterAsInt(parameters, "THREADS", context) if "THREADS" in parameters else 0
        n = n or os.cpu_count() or 1
        torch.set_num_threads(n)
        feedback.pushInfo(f"torch threads: {n}")
        return n

    @contextmanager
    def stage(self, feedback, label: str) -> Iterator[Any]:
        """Run one engine stage: engine errors become Processing errors; the time is logged.

        Yields:
            an engine ``Progress`` wired to the feedback's progress bar and cancel button.
        """
        from sgcad_qgis.engine.progress import Canceled

        feedback.pushInfo(f"{label}…")
        start = time.monotonic()
        try:
            yield make_progress(feedback)
        except Canceled:
            raise QgsProcessingException(f"{label}: canceled; no output was written.") from None
        except (ValueError, FileNotFoundError) as exc:
            raise QgsProcessingException(f"{label}: {exc}") from None
        self.timed(feedback, label, start)

    def log_device(self, feedback, device: str) -> str:
        """Say which device runs, by name (a GPU's model, or CPU with its thread count)."""
        import torch

        if device == "auto":
            device = "cuda:0" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda"):
            index = int(device.split(":")[1]) if ":" in device else 0
            feedback.pushInfo(f"Device: {device} ({torch.cuda.get_device_name(index)})")
        else:
            feedback.pushInfo(f"Device: CPU ({torch.get_num_threads()} threads)")
        return device


def verdict(messages: Sequence[Optional[str]]) -> Tuple[bool, str]:
    """``checkParameterValues`` result from check messages: the first problem, if any."""
    problems = [m for m in messages if m]
    return (not problems, problems[0] if problems else "")
