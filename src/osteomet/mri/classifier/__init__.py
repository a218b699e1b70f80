"""3D-ResNet bone-metastasis classifiers on the tumour ROI crops (DWI, T2, ADC).

One module per job: ``config`` (YAML presets), ``labels`` (the leakage guard), ``data``
(ROI crops, augmentation, mask sources), ``model`` (MONAI ResNets, penultimate features),
``train`` (one configuration, resumable), ``grid`` (depth x learning rate x optimiser,
selected on validation only), ``predict`` (the prediction table), ``features`` (deep
features, optional PCA) and ``gradcam`` (maps in ROI and T2 geometry, PNG overlays).
"""
