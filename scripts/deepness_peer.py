"""Run the Deepness QGIS plugin (from its source) on one raster with one ONNX model, headless.

``python -m engine bench --deepness-path SRC`` starts this script once per repetition (it needs
QGIS, which the engine never imports) and reads the JSON line it prints: the seconds of
Deepness's own work (model session, tiling, network, post-processing and its result layers),
QGIS start-up excluded. ONNX Runtime is given the same thread count as our side (Deepness's
own session options never reach ONNX Runtime, so it would run a worker per core).

Usage: deepness_peer.py SRC RASTER MODEL --tile 512 --overlap 64 --batch 4 --threads 1
(SRC: the plugin repository or its ``src`` folder; Deepness needs ``cv2``: opencv-python-headless.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from unittest.mock import MagicMock


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("raster")
    parser.add_argument("model")
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--resolution-cm", type=float, required=True)
    args = parser.parse_args()
    src = Path(args.source)
    sys.path.insert(0, str(src / "src" if (src / "src" / "deepness").is_dir() else src))

    import onnxruntime

    original = onnxruntime.InferenceSession

    def session(path, sess_options=None, providers=None, **kwargs):  # the same thread budget as ours
        # Deepness passes its options as ``options=``, which InferenceSession ignores: left alone,
        # its session would run a worker per core whatever the budget
        options = sess_options or kwargs.pop("options", None) or onnxruntime.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        return original(path, sess_options=options, providers=providers, **kwargs)

    onnxruntime.InferenceSession = session

    from qgis.core import QgsApplication, QgsProject, QgsRasterLayer

    app = QgsApplication([b""], False)
    app.initQgis()
    from deepness.common.channels_mapping import ChannelsMapping, ImageChannelStandaloneBand
    from deepness.common.processing_overlap import ProcessingOverlap, ProcessingOverlapOptions
    from deepness.common.processing_parameters.map_processing_parameters import ProcessedAreaType
    from deepness.common.processing_parameters.segmentation_parameters import SegmentationParameters
    from deepness.processing.map_processor.map_processor_segmentation import MapProcessorSegmentation
    from deepness.processing.models.segmentor import Segmentor

    layer = QgsRasterLayer(args.raster, "input")
    if not layer.isValid():
        raise SystemExit(f"{args.raster}: QGIS cannot open it")
    QgsProject.instance().addMapLayer(layer)
    channels = ChannelsMapping()
    channels.set_image_channels([ImageChannelStandaloneBand(band_number=b, name=str(b)) for b in (1, 2, 3)])
    channels.set_number_of_model_inputs_same_as_image_channels()
    t0 = time.perf_counter()
    model = Segmentor(args.model)
    params = SegmentationParameters(
        resolution_cm_per_px=args.resolution_cm,
        tile_size_px=args.tile,
        batch_size=args.batch,
        local_cache=False,
        processed_area_type=ProcessedAreaType.ENTIRE_LAYER,
        mask_layer_id=None,
        input_layer_id=layer.id(),
        input_channels_mapping=channels,
        postprocessing_dilate_erode_size=0,
        processing_overlap=ProcessingOverlap(ProcessingOverlapOptions.OVERLAP_IN_PIXELS, overlap_px=args.overlap),
        pixel_classification__probability_threshold=0.0,
        model=model,
    )
    processor = MapProcessorSegmentation(rlayer=layer, vlayer_mask=None, map_canvas=MagicMock(), params=params)
    processor.run()
    seconds = time.perf_counter() - t0
    result = getattr(processor, "_processing_result", None)
    if result is None or type(result).__name__ == "MapProcessingResultFailed":
        raise SystemExit(f"Deepness failed: {getattr(result, 'message', 'no result')}")
    shape = list(processor.get_result_img().shape)
    print(json.dumps({"seconds": seconds, "result_shape": shape}))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
