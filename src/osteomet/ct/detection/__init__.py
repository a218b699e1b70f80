"""CT slice detection: MONAI 2D classifiers (EfficientNet-B0, ResNet34, DenseNet121) on bone tiles of each slice."""
