"""Parameters and run-time plumbing shared by the algorithms that call the engine.

Every SGCAD algorithm is a thin wrapper: parameters -> file paths + engine configs -> one engine
call -> outputs. This module holds the parts they share: raster layers with band choice, model
files, the area of interest, advanced switches, torch threads, stage timings and the
translation of engine errors into messages Processing shows.
"""

from __future__ import annotations

import functools
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, Tuple

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
    ("reflectance10000", "Reflectance × 10000 (Sentinel-2)"),
    ("reflectance", "Reflectance 0–1"),
    ("dn", "Digital numbers of another scale"),
    ("landsat_c2", "Landsat Collection 2 surface reflectance (× 2.75e-5 − 0.2)"),
)
SAR_BACKSCATTER_CHOICES = (
    ("auto", "Named by the file or its bands (gamma0, RTC, Gamma0_VV, ...), else sigma0"),
    ("sigma0", "Sigma nought (ESA GRD calibration, Google Earth Engine)"),
    ("gamma0", "Terrain-flattened gamma nought (RTC: OPERA, ASF HyP3, SNAP): read as sigma0 × cos 37°"),
)
SAR_NOISE_FLOOR_CHOICES = (
    ("auto", "Each file's VH noise floor (its darkest 1 %) taken off calibrated levels before the VV + VH water "
             "expert reads it, as thermal-noise removal does"),
    ("off", "VH read as it is: a noise-removed product, or a scene whose darkest VH is dry land (desert, frozen "
            "ground)"),
)
SAR_LEVEL_CHOICES = (
    ("auto", "Calibrated, except DN without a calibration constant and co-/cross-polarised bands too close "
             "for calibrated backscatter"),
    ("calibrated", "Calibrated backscatter (sigma0 / gamma0, e.g. Sentinel-1)"),
    ("relative", "Relative levels (airborne or uncalibrated SAR): the water cut comes from the scene"),
)

PSEUDO_LABEL_LAYER_HELP = {
    "head": "only the teacher's water classifier learns (the default: better and 3x faster on real scenes)",
    "all": "every layer of the teacher learns",
}

SAR_UNIT_CHOICES = (
    ("auto", "Detect from the file"),
    ("linear", "Linear power (sigma0 / gamma0)"),
    ("db", "Decibels"),
    ("amplitude", "Amplitude (square root of power)"),
    ("dn", "Uncalibrated amplitude numbers (DN)"),
)


def fault_message(exc: BaseException, feedback=None, label: str = "") -> str:
    """One line for any exception, worded as the command line words it (``engine.validate``).

    The traceback of a bug goes to the log (``pushDebugInfo``), never into the message; an expected error
    (a wrong input, with its remedy) gets none, as on the command line without ``--debug``.
    """
    from sgcad_qgis.engine.validate import describe_error

    message, _, expected = describe_error(exc)
    message = layers.as_user_named(message)  # the user's layer, not the temporary copy the engine read
    if feedback is not None and not expected:
        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        feedback.pushDebugInfo(trace)
        message = message.replace("run again with --debug for the traceback", "the traceback is in the log")
    return f"{label}: {message}" if label else message


def shown_as(value: Any) -> Optional[str]:
    """How messages name a vector parameter's value: the file the user gave, else None (its layer name)."""
    if isinstance(value, str) and Path(value.split("|", 1)[0]).is_file():
        return value
    return None


def _translated(method: Callable) -> Callable:
    """Wrap ``processAlgorithm``: any engine or system error becomes one QgsProcessingException line."""

    @functools.wraps(method)
    def run(self, parameters, context, feedback):
        try:
            with self.run_lock(parameters, context):  # one run at a time per output folder
                return method(self, parameters, context, feedback)
        except QgsProcessingException:
            raise
        except Exception as exc:
            raise QgsProcessingException(fault_message(exc, feedback)) from None

    run.__sgcad_translated__ = True
    return run


def _checked(method: Callable) -> Callable:
    """Wrap ``checkParameterValues``: an exception (an unreadable file…) becomes ``(False, one line)``."""

    @functools.wraps(method)
    def check(self, parameters, context):
        try:
            return method(self, parameters, context)
        except QgsProcessingException as exc:
            return False, str(exc)
        except Exception as exc:
            return False, fault_message(exc)

    check.__sgcad_translated__ = True
    return check


#: How messages name an input parameter: the command line's words (``... replace the optical input``).
INPUT_LABELS = {
    "OPTICAL": "optical",
    "SAR": "SAR",
    "MODEL": "model",
    "STUDENT": "student",
    "TEACHER": "teacher",
    "LABELS": "labels",
    "LABEL_POLYGONS": "labels",
    "CLOUD_MASK": "cloud mask",
    "PATCH_SET": "patch set",
    "PREDICTION": "class map",
    "REFERENCE": "reference raster",
    "REFERENCE_RASTER": "reference",
    "REFERENCE_VECTOR": "reference",
    "INPUT": "label polygons",
}


class EngineAlgorithm(SgcadAlgorithm):
    """An :class:`SgcadAlgorithm` with helpers for the common parameters and the engine call.

    Nothing is stored on the instance between runs (batch mode runs one instance per row, the
    Modeler reuses instances), so every value is read from ``parameters`` when needed.

    Every subclass's ``processAlgorithm`` and ``checkParameterValues`` are wrapped so that an error
    ends as one line worded like the command line's (docs/errors.md), with the traceback in the log.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name, wrap in (("processAlgorithm", _translated), ("checkParameterValues", _checked)):
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "__sgcad_translated__", False):
                setattr(cls, name, wrap(method))

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
        """OPTICAL_UNITS, SAR_UNITS, SAR_BACKSCATTER and SAR_CALIBRATION: the engine detects them unless told."""
        choices = ((("OPTICAL_UNITS", "Units of the optical raster", OPTICAL_UNIT_CHOICES),) if optical else ()) + (
            ("SAR_UNITS", "Units of the SAR raster", SAR_UNIT_CHOICES),
            ("SAR_BACKSCATTER", "Backscatter of the SAR raster", SAR_BACKSCATTER_CHOICES),
        )
        for name, label, options in choices:
            self.add_choice(name, label, options, "auto", advanced)
        self.add_number(
            "SAR_CALIBRATION",
            "SAR calibration constant for DN (sigma0 = DN² / constant; 0 = match the model's level)",
            0.0,
            0.0,
            integer=False,
        )

    def add_choice(self, name: str, label: str, options, default: str, advanced: bool = True) -> None:
        """An enum parameter of ``(key, explanation)`` options, keys as its values, explanations as help."""
        param = QgsProcessingParameterEnum(name, self.tr(label), options=[key for key, _ in options],
                                           defaultValue=default)
        param.setUsesStaticStrings(True)
        param.setHelp(self.tr("; ".join(f"{key}: {text}" for key, text in options)))
        self.add_advanced(param) if advanced else self.addParameter(param)

    def add_sar_levels(self) -> None:
        """SAR_LEVELS: calibrated or relative SAR levels (the water teacher's cut)."""
        self.add_choice("SAR_LEVELS", "Levels of the SAR raster", SAR_LEVEL_CHOICES, "auto")

    def sar_levels_value(self, parameters, context) -> str:
        return self.parameterAsEnumString(parameters, "SAR_LEVELS", context) or "auto"

    def add_sar_noise_floor(self) -> None:
        """SAR_NOISE_FLOOR: whether the VV + VH water expert reads VH with the file's noise floor taken off."""
        self.add_choice("SAR_NOISE_FLOOR", "Noise floor of the SAR's VH band", SAR_NOISE_FLOOR_CHOICES, "auto")

    def sar_noise_floor_value(self, parameters, context) -> str:
        return self.parameterAsEnumString(parameters, "SAR_NOISE_FLOOR", context) or "auto"

    def add_flip_average(self) -> None:
        """FLIP_AVERAGE: the networks' logits averaged over 4 flips of each tile (engine.inference.flips)."""
        self.add_flag("FLIP_AVERAGE", "Average over 4 flips of each tile (slightly better water maps, 4x slower)",
                      False)

    def flip_average_value(self, parameters, context) -> bool:
        return bool(parameters.get("FLIP_AVERAGE")) and self.parameterAsBoolean(parameters, "FLIP_AVERAGE", context)

    def add_pseudo_label_layers(self) -> None:
        """PSEUDO_LABEL_LAYERS: the teacher's layers that learn from automatic water pseudo-labels."""
        from sgcad_qgis.engine.config import PSEUDO_LABEL_LAYERS, FinetuneConfig

        self.add_choice("PSEUDO_LABEL_LAYERS", "Teacher layers that learn from automatic pseudo-labels",
                        [(key, PSEUDO_LABEL_LAYER_HELP[key]) for key in PSEUDO_LABEL_LAYERS],
                        FinetuneConfig.pseudo_label_layers)

    def pseudo_label_layers_value(self, parameters, context) -> str:
        from sgcad_qgis.engine.config import FinetuneConfig

        return (self.parameterAsEnumString(parameters, "PSEUDO_LABEL_LAYERS", context)
                or FinetuneConfig.pseudo_label_layers)

    def units_values(self, parameters, context) -> dict:
        """The engine's ``optical_units``, ``sar_units``, ``sar_backscatter`` and ``sar_calibration``."""
        out = {}
        for name, key in (("OPTICAL_UNITS", "optical_units"), ("SAR_UNITS", "sar_units"),
                          ("SAR_BACKSCATTER", "sar_backscatter")):
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
        """Selected 1-based bands, in the order chosen; () when none were chosen.

        Accepts a list, QGIS's ``1;2;3`` and the command line's ``1,2,3`` (``qgis_process ...
        OPTICAL_BANDS=1,2,3``, as docs/processing.md writes it).
        """
        value = parameters.get(name)
        if value in (None, "", []):
            return ()
        if isinstance(value, str) and "," in value:
            parts = [p.strip() for p in value.replace(";", ",").split(",") if p.strip()]
            try:
                return tuple(int(p) for p in parts)
            except ValueError:
                raise QgsProcessingException(
                    f"{name}: expected band numbers such as 1,2,3, got {value!r}"
                ) from None
        return tuple(int(b) for b in self.parameterAsInts(parameters, name, context))

    def vector_path(self, parameters, name: str, context, feedback) -> Tuple[str, Optional[str]]:
        """(file path, layer name) readable by OGR; memory or database layers are exported."""
        from . import _checks

        problem = _checks.vector_layer_choice(parameters.get(name))
        if problem:
            raise QgsProcessingException(problem)
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
            return layers.features_to_file(source, "area of interest", context, feedback,
                                           shown=shown_as(parameters.get("AOI_LAYER")))
        if parameters.get("AOI_EXTENT") in (None, ""):
            return None
        crs = self.parameterAsExtentCrs(parameters, "AOI_EXTENT", context)
        if crs.isValid() and crs.authid() and not crs.authid().startswith("USER:"):
            rect = self.parameterAsExtent(parameters, "AOI_EXTENT", context)
            suffix = f",{crs.authid()}"
        else:
            rect = self.parameterAsExtent(parameters, "AOI_EXTENT", context, grid_crs)
            suffix = ""
        # a flat extent goes on too: the engine refuses it by name rather than mapping the whole scene
        return f"{rect.xMinimum()!r},{rect.yMinimum()!r},{rect.xMaximum()!r},{rect.yMaximum()!r}{suffix}"

    def output_path(self, parameters, name: str, context) -> str:
        path = self.parameterAsOutputLayer(parameters, name, context)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return path

    def output_folder(self, parameters, name: str, context) -> str:
        from sgcad_qgis.engine.validate import check_output_folder

        folder = self.parameterAsString(parameters, name, context)
        if not folder or folder == QgsProcessing.TEMPORARY_OUTPUT:
            folder = QgsProcessingUtils.generateTempFilename(name.lower())
        check_output_folder(folder)
        Path(folder).mkdir(parents=True, exist_ok=True)
        return folder

    def output_folders(self, parameters, context) -> list:
        """The output folders of this run given as real paths (temporary outputs excluded)."""
        folders = []
        for definition in self.destinationParameterDefinitions():
            if definition.type() != "folderDestination":
                continue
            value = self.parameterAsString(parameters, definition.name(), context)
            if value and value != QgsProcessing.TEMPORARY_OUTPUT and not value.startswith(("TEMPORARY", "memory:")):
                folders.append(value)
        return folders

    def run_lock(self, parameters, context):
        """The run lock of this run's output folder (the engine's ``RunLock``), or a no-op."""
        from contextlib import ExitStack

        from sgcad_qgis.engine.validate import RunLock

        stack = ExitStack()
        for folder in self.output_folders(parameters, context):
            stack.enter_context(RunLock(folder, f"sgcad:{self.name()}"))
        return stack

    def input_files(self, parameters, context) -> dict:
        """Every input given as a file: parameter description -> path (layers by their source)."""
        files = {}
        for definition in self.parameterDefinitions():
            name, value = definition.name(), parameters.get(definition.name())
            if definition.isDestination() or value in (None, ""):
                continue
            kind = definition.type()
            if kind == "raster":
                layer = self.parameterAsRasterLayer(parameters, name, context)
                path = layer.source() if layer is not None else None
            elif kind == "file":
                path = self.parameterAsFile(parameters, name, context)
            elif kind in ("source", "vector") and isinstance(value, str):
                path = value
            else:
                path = None
            if path:
                files[INPUT_LABELS.get(name, (definition.description() or name).lower())] = path
        return files

    def folder_lock(self, folder: str, command: str):
        """The engine's run lock on an output folder (``with self.folder_lock(folder, "patches"):``): a
        second run into the folder is refused, naming this one, from any interface."""
        from sgcad_qgis.engine.validate import RunLock

        return RunLock(folder, command)

    def overwrite(self, parameters, context) -> bool:
        return bool(parameters.get("OVERWRITE")) and self.parameterAsBoolean(parameters, "OVERWRITE", context)

    # ------------------------------------------------------------------ checks
    def checkParameterValues(self, parameters, context):  # noqa: N802
        """QGIS's per-parameter checks, saying what is wrong where QGIS says only "Incorrect parameter value".

        Model files are checked by the engine whatever their name (a model saved as ``.pt`` is fine,
        a file that is not a model says so); numbers out of range give the range; files QGIS cannot
        open get the engine's sentence (corrupt, truncated, not found).
        """
        for definition in self.parameterDefinitions():
            name = definition.name()
            value = parameters.get(name)
            if self._is_model(definition) and value not in (None, ""):
                problem = _model_problem(definition, value)
                if problem:
                    return False, problem
                continue
            if definition.checkValueIsAcceptable(value, context):
                continue
            return False, self._parameter_message(definition, value, parameters)
        problem = self._extension_problem(parameters, context)
        if problem:
            return False, problem
        return self._folder_problems(parameters, context)

    def _extension_problem(self, parameters, context) -> Optional[str]:
        """An output file named with an extension other than what it is written as (a GeoTIFF named
        ``.png``, an HTML report named ``.tif``): refused, since other programs open files by their names.
        An output named as one of the inputs is left to the check that says so (it would replace it)."""
        import re

        from qgis.core import QgsProcessingOutputLayerDefinition

        inputs = None  # read only for a name that does not fit, which is rare
        for definition in self.destinationParameterDefinitions():
            kind = definition.type()
            if kind not in ("rasterDestination", "fileDestination"):
                continue
            value = parameters.get(definition.name())
            if isinstance(value, QgsProcessingOutputLayerDefinition):
                value = value.sink.staticValue()
            if not isinstance(value, str):  # an expression (Modeler) is only known when the model runs
                continue
            path = value
            suffix = Path(path).suffix.lower().lstrip(".")
            if not suffix or path.startswith(("TEMPORARY_OUTPUT", "memory:")):
                continue  # QGIS adds the default extension to a name without one
            written = ("tif", "tiff") if kind == "rasterDestination" else tuple(
                dict.fromkeys(e.lower() for e in re.findall(r"\*\.(\w+)", definition.fileFilter() or "")))
            if written and suffix not in written:
                if inputs is None:
                    inputs = {str(Path(p).resolve()) for p in self.input_files(parameters, context).values()}
                if str(Path(path).resolve()) in inputs:
                    continue
                return (f"{definition.description()} ({definition.name()}): {Path(path).name} ends in .{suffix}, but "
                        f"this output is written as .{written[0]}; name it {Path(path).stem}.{written[0]}")
        return None

    def _folder_problems(self, parameters, context) -> Tuple[bool, str]:
        """Output folders: not a file, not held by another run, and no input named like a file they receive
        (``engine.validate.FOLDER_OUTPUTS`` lists what each algorithm writes there)."""
        from sgcad_qgis.engine.validate import FOLDER_OUTPUTS

        from . import _checks

        folders = self.output_folders(parameters, context)
        if not folders:
            return True, ""
        names = FOLDER_OUTPUTS.get(self.name(), ())
        inputs = self.input_files(parameters, context) if names else {}
        for folder in folders:
            written = [str(Path(folder) / name) for name in names]
            problem = _checks.folder_free(folder) or _checks.outputs_not_inputs(written, inputs)
            if problem:
                return False, problem
        return True, ""

    @staticmethod
    def _is_model(definition) -> bool:
        return definition.type() == "file" and MODEL_FILTER in (definition.fileFilter() or "")

    def _parameter_message(self, definition, value, parameters) -> str:
        from . import _checks

        name, label = definition.name(), definition.description()
        if value in (None, "") or (isinstance(value, (list, tuple)) and not value):
            return f"{label} ({name}) is required."
        kind = definition.type()
        if kind == "number":
            try:
                number = float(value)
            except (TypeError, ValueError):
                return f"{label} ({name}) must be a number, got {value!r}."
            if name in ("TILE_SIZE", "OVERLAP") and "TILE_SIZE" in [d.name() for d in self.parameterDefinitions()]:
                problem = _checks.tiling_of(dict(parameters, **{name: number}))
                if problem:
                    return problem
            low, high = definition.minimum(), definition.maximum()
            return f"{label} ({name}) must be between {low:g} and {high:g}, got {number:g}."
        if kind in ("raster", "source", "vector") and isinstance(value, str):
            problem = _checks.unreadable_file(value, raster=kind == "raster")
            if problem:
                return problem
            return f"{label} ({name}): {value!r} is not a layer or file QGIS can open; check the path or the layer."
        if kind == "band":
            return f"{label} ({name}): expected band numbers such as 1,2,3, got {value!r}."
        if kind == "enum":
            options = definition.options()
            if definition.usesStaticStrings():  # these take the option's name; QGIS's help speaks of numbers
                names = ", ".join(options)
                return f"{label} ({name}): {value!r} is not one of {names}; give the name, e.g. {options[0]}."
            return f"{label} ({name}): {value!r} is not one of {list(range(len(options)))} ({', '.join(options)})."
        return f"{label} ({name}): {value!r} is not a valid value."

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
        from qgis.core import QgsApplication

        from sgcad_qgis.engine.cores import available_cores

        n = self.parameterAsInt(parameters, "THREADS", context) if "THREADS" in parameters else 0
        if not n:  # the cores this process may use, capped by QGIS's own setting (-1: no cap)
            cap = QgsApplication.maxThreads()
            n = min(available_cores(), cap) if cap and cap > 0 else available_cores()
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
        except QgsProcessingException:
            raise
        except Exception as exc:  # one line worded as on the command line; the traceback in the log
            raise QgsProcessingException(fault_message(exc, feedback, label)) from None
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


def _model_problem(definition, value) -> Optional[str]:
    """The engine's sentence when a model-file parameter does not hold an SGCAD model (any name)."""
    from . import _checks

    _, problem = _checks.model_file(str(value), None, definition.description() or "model")
    return problem


def verdict(messages: Sequence[Optional[str]]) -> Tuple[bool, str]:
    """``checkParameterValues`` result from check messages: the first problem, if any."""
    problems = [m for m in messages if m]
    return (not problems, problems[0] if problems else "")
