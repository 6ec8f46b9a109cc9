"""Large-scene inference: tiling, blending, streaming pipeline, backends."""
