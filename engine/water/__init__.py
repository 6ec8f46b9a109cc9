"""Label-free SAR open-water mapping: split-based bimodal thresholding, region growing, pseudo-labels.

- :mod:`.histogram`: fixed-bin dB histograms, Otsu, Kittler-Illingworth, two-Gaussian fit, Ashman's D.
- :mod:`.source`: a SAR band as a window reader (array or GeoTIFF), optional speckle smoothing.
- :mod:`.components`: connected components of a streamed mask, exact across window borders.
- :mod:`.threshold`: scene threshold from bimodal tiles and the hysteresis water mask.
- :mod:`.pseudo_labels`: confidence-weighted water / non-water / ignore labels written as GeoTIFFs.
"""
