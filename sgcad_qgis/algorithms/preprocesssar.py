"""sgcad:preprocesssar — the SAR chain (calibration, incidence, Lee, dB, 2-98 % scaling) as a raster."""

from __future__ import annotations

from qgis.core import QgsProcessingParameterFileDestination, QgsProcessingParameterRasterDestination

from .. import layers
from . import _checks
from ._common import EngineAlgorithm, verdict


class PreprocessSar(EngineAlgorithm):
    ALG_ID = "preprocesssar"
    DISPLAY = "Preprocess SAR"
    GROUP = "preparation"
    INPUT, LABEL = "SAR", "SAR raster"
    BANDS_LABEL = "Bands (default: band 1)"
    HELP = (
        "Runs the SAR preprocessing chain on the chosen bands and writes the result: optional "
        "calibration to sigma0 (DN squared over a calibration constant), optional incidence-angle "
        "normalisation (a constant angle or an angle band), the Lee speckle filter (NaN-aware; the "
        "output equals filtering the whole raster at once), conversion to dB, and robust scaling to "
        "[0, 1] between the 2nd and 98th percentiles of a bounded sample of the whole raster. The "
        "percentiles are saved as a normalisation record (JSON) for reuse. Switch off the steps an "
        "input has already been through (e.g. dB products)."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_raster(self.INPUT, self.LABEL)
        self.add_bands(f"{self.INPUT}_BANDS", self.INPUT, self.BANDS_LABEL)
        self.add_chain()
        self.add_number("LOW_PERCENTILE", "Lower percentile of the scaling", 2.0, 0.0, 100.0, integer=False)
        self.add_number("HIGH_PERCENTILE", "Upper percentile of the scaling", 98.0, 0.0, 100.0, integer=False)
        self.add_number("BLOCK", "Window size (pixels)", 1024, 64, 65536)
        self.add_flag("OVERWRITE", "Overwrite existing output files", False)
        self.addParameter(
            QgsProcessingParameterRasterDestination("OUTPUT", self.tr(f"Preprocessed {self.LABEL}"))
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                "OUTPUT_RECORD",
                self.tr("Normalisation record"),
                self.tr("JSON files (*.json)"),
                optional=True,
                createByDefault=False,
            )
        )

    def add_chain(self) -> None:
        self.add_units(optical=False, advanced=False)
        self.add_number(
            "INCIDENCE_ANGLE",
            "Incidence-angle normalisation: constant angle in degrees (0 = off)",
            0.0,
            0.0,
            89.9,
            integer=False,
        )
        self.add_number("INCIDENCE_BAND", "…or the band holding the angle in degrees (0 = none)", 0, 0, 10000)
        self.add_flag("LEE", "Lee speckle filter", True, advanced=False)
        self.add_number("LEE_WINDOW", "Lee window (pixels, odd)", 7, 3, 51)
        self.add_number("LEE_LOOKS", "Equivalent number of looks", 1.0, 0.01, 1000.0, integer=False)
        self.add_flag("TO_DB", "Convert to dB", True)
        self.add_flag("NORMALIZE", "Scale to [0, 1] between the percentiles", True, advanced=False)

    def config(self, parameters, context):
        from sgcad_qgis.engine.config import SarPreprocessConfig

        angle = self.parameterAsDouble(parameters, "INCIDENCE_ANGLE", context)
        band = self.parameterAsInt(parameters, "INCIDENCE_BAND", context)
        units = self.units_values(parameters, context)
        return SarPreprocessConfig(
            units=units["sar_units"],
            calibration_constant=units["sar_calibration"],
            backscatter=units["sar_backscatter"],
            incidence_normalize=bool(angle or band),
            incidence_angle_deg=angle or None,
            incidence_band=band or None,
            lee_filter=self.parameterAsBoolean(parameters, "LEE", context),
            lee_window=self.parameterAsInt(parameters, "LEE_WINDOW", context),
            lee_looks=self.parameterAsDouble(parameters, "LEE_LOOKS", context),
            to_db=self.parameterAsBoolean(parameters, "TO_DB", context),
            normalization="scene",
            **self.scaling(parameters, context),
        )

    def scaling(self, parameters, context) -> dict:
        return {
            "robust_normalize": self.parameterAsBoolean(parameters, "NORMALIZE", context),
            "low_percentile": self.parameterAsDouble(parameters, "LOW_PERCENTILE", context),
            "high_percentile": self.parameterAsDouble(parameters, "HIGH_PERCENTILE", context),
        }

    def default_bands(self, layer) -> tuple:
        return (1,)

    def chain_problems(self, parameters, context, layer) -> list:
        messages = []
        if self.parameterAsInt(parameters, "LEE_WINDOW", context) % 2 == 0:
            messages.append("The Lee window must be an odd number of pixels (3, 5, 7, …).")
        band = self.parameterAsInt(parameters, "INCIDENCE_BAND", context)
        if band and layer is not None and band > layer.bandCount():
            messages.append(
                f"The {self.LABEL} '{layer.name()}' has {layer.bandCount()} band(s); there is no "
                f"incidence-angle band {band}."
            )
        return messages

    def checkParameterValues(self, parameters, context):  # noqa: N802
        ok, message = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, message
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        overwrite = self.overwrite(parameters, context)
        low = self.parameterAsDouble(parameters, "LOW_PERCENTILE", context)
        high = self.parameterAsDouble(parameters, "HIGH_PERCENTILE", context)
        output = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        record = self.parameterAsFileOutput(parameters, "OUTPUT_RECORD", context)
        messages = [
            _checks.georeferenced(layer),
            _checks.outputs_not_inputs([output, record], {"raster": layer}),
            _checks.distinct_outputs({"output": output, "normalisation record": record}),
            _checks.band_choice(
                layer, self.bands(parameters, f"{self.INPUT}_BANDS", context), None, self.LABEL
            ),
            None if low < high else f"The lower percentile ({low}) must be below the upper one ({high}).",
            _checks.output_free(
                self.parameterAsOutputLayer(parameters, "OUTPUT", context), overwrite, "output"
            ),
            _checks.output_free(
                self.parameterAsFileOutput(parameters, "OUTPUT_RECORD", context),
                overwrite,
                "normalisation record",
            ),
        ]
        return verdict(messages + self.chain_problems(parameters, context, layer))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from sgcad_qgis.engine.data.raster_ops import preprocess_raster

        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        bands = self.bands(parameters, f"{self.INPUT}_BANDS", context) or self.default_bands(layer)
        cfg = self.config(parameters, context)
        out = self.output_path(parameters, "OUTPUT", context)
        record = self.parameterAsFileOutput(parameters, "OUTPUT_RECORD", context) or None
        path = self.raster_path(parameters, self.INPUT, context, feedback, self.LABEL)
        with self.stage(feedback, f"Preprocessing the {self.LABEL}") as progress:
            result = preprocess_raster(
                path,
                out,
                list(bands),
                cfg,
                record_path=record,
                block=self.parameterAsInt(parameters, "BLOCK", context),
                overwrite=self.overwrite(parameters, context),
                progress=progress,
            )
        for b in result["bands"]:
            feedback.pushInfo(
                f"band {b['band']}: {' → '.join(b['steps'])}; p_low {b['p_low']:.4g}, "
                f"p_high {b['p_high']:.4g}"
            )
        steps = ", ".join(result["bands"][0]["steps"]) if result["bands"] else "features only"
        layers.publish_output(
            context,
            out,
            f"{self.LABEL[0].upper()}{self.LABEL[1:]} preprocessed ({steps})",
            layers.KIND_PLAIN,
            "OUTPUT",
        )
        outputs = {"OUTPUT": out}
        if result["record"]:
            outputs["OUTPUT_RECORD"] = result["record"]
        return outputs
