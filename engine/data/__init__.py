"""Data: synthetic scenes, split-first-crop-later patches, datasets and augmentation."""
