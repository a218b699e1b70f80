"""nnU-Net trainer classes shipped with osteomet, found by nnU-Net through ``nnUNet_extTrainer``.

This folder is put on ``nnUNet_extTrainer`` by :mod:`osteomet.ct.nnunet.run`; nnU-Net then
imports each module here as a top-level module (so the module names carry an osteomet prefix).
"""
