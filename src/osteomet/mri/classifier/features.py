"""Deep features for the fusion model: the chosen network's penultimate-layer activations.

One row per patient with a ROI crop, keyed by ``patient_id``, columns ``deep_000`` ... (the
input of the final fully connected layer). An optional PCA is fitted on the training
patients only and applied to everyone, so held-out patients never shape the components.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from osteomet.errors import InputError
from osteomet.layout import DEEP_FEATURES_META, FEATURES
from osteomet.mri.classifier.data import RoiDataset
from osteomet.mri.classifier.model import logits_and_features
from osteomet.mri.classifier.predict import load_model, resolve_run
from osteomet.utils.files import atomic_path, write_json_atomic


def penultimate_features(network: torch.nn.Module, dataset: RoiDataset, device: torch.device,
                         batch_size: int) -> np.ndarray:
    """N x F activations feeding the last layer (eval mode, no augmentation)."""
    network.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            x = torch.stack([dataset[i][0] for i in range(start, min(start + batch_size, len(dataset)))])
            out.append(logits_and_features(network, x.to(device))[1].float().cpu().numpy())
    return np.concatenate(out).astype(np.float64)


def deep_features(model: str | Path, preprocessed: str | Path, patients: pd.DataFrame, *,
                  pca_components: int | None = None, device: str | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Feature table (patient_id, deep_000...) and a description of how it was made."""
    network, spec, config, dev = load_model(model, device)
    ids = patients.loc[patients["has_roi"], "patient_id"].tolist()
    values = penultimate_features(network, RoiDataset(preprocessed, ids, None, config, augment=False), dev,
                                  config.batch_size)
    meta: dict[str, Any] = {"model": str(resolve_run(model)), "name": spec.name, "n_patients": len(ids),
                            "n_activations": int(values.shape[1]), "pca": None}
    if pca_components:
        from sklearn.decomposition import PCA

        train = patients.set_index("patient_id").loc[ids, "split"].to_numpy() == "train"
        if pca_components > min(int(train.sum()), values.shape[1]):
            raise InputError(f"--pca {pca_components}: at most min(training patients, activations) = "
                             f"{min(int(train.sum()), values.shape[1])} components can be fitted")
        pca = PCA(n_components=pca_components, svd_solver="full").fit(values[train])
        values = pca.transform(values)
        meta["pca"] = {"components": pca_components, "fitted_on": "train", "n_fit": int(train.sum()),
                       "explained_variance_ratio": [float(v) for v in pca.explained_variance_ratio_]}
    prefix = "deep_pc" if pca_components else "deep_"
    table = pd.DataFrame(values, columns=[f"{prefix}{i:03d}" for i in range(values.shape[1])])
    table.insert(0, "patient_id", ids)
    return table, meta


def write_features(table: pd.DataFrame, meta: dict[str, Any], out: str | Path) -> Path:
    """``features.parquet`` and ``features.json`` (what made them), atomically."""
    out = Path(out)
    with atomic_path(out / FEATURES) as tmp:
        table.to_parquet(tmp, index=False)
    write_json_atomic(out / DEEP_FEATURES_META, meta)
    return out / FEATURES
