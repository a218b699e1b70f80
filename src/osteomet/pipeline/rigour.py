"""Study rigour stages of ``run mri``: radiomics feature stability, and the feature tables the models see.

``stability/`` re-extracts the training patients' radiomics with perturbed tumour masks and
writes the ICC(2,1) of every feature (``icc.csv``), its summary by feature class and a box plot.
Only training patients: the stability filter is part of feature selection and must not see
the other cohorts.

``model_features/`` is what the radiomics and fusion models read: the radiomics table without
the unstable features (ICC below the threshold) and, with harmonization on, mapped across
centres by reference-batch ComBat (:mod:`osteomet.radiomics.harmonize`). The reference is the
centre of the training patients, whose features stay exactly as extracted; every other centre's
batch effect is estimated from all of its own patients' features (no labels; the usual
transductive use of ComBat). The fitted parameters (``combat.json``) let ``predict mri`` map a
new patient of a known centre the same way. Each switch is a setting of this stage, so turning
one on or off reruns this stage and the models, not the extraction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from osteomet.data.manifest import read_manifest
from osteomet.errors import InputError
from osteomet.layout import (
    COMBAT,
    COMBAT_DEEP,
    DEEP_FEATURES,
    FEATURES,
    HARMONIZATION,
    HARMONIZATION_SUMMARY,
    ICC,
    ICC_BY_CLASS,
    STABILITY_FILTER,
    RunLayout,
)
from osteomet.pipeline.inputs import manifest_inputs
from osteomet.stage import Stage, StageOutcome

STABILITY_STAGE = "radiomics-stability"
MODEL_FEATURES_STAGE = "model-features"
ICC_FIGURE = "icc_by_class.png"


def feature_stability(manifest: str | Path, features: str | Path, out: str | Path, *, params: str | None,
                      perturbations: Sequence[str] = ("erode", "dilate"), reviewed_vs_auto: bool = True,
                      segdir: str | Path | None = None, train_split: str = "train", jobs: int = 1,
                      scheduler: str | None = None) -> StageOutcome:
    """ICC(2,1) of each radiomics feature between the study's masks and each perturbation, on training patients."""
    from osteomet.radiomics.params import load_params

    cohort = read_manifest(manifest)
    parameters = load_params(params, modality=cohort.kind)
    out = Path(out)
    settings = {"params": parameters, "perturbations": list(perturbations), "reviewed_vs_auto": reviewed_vs_auto,
                "mask_source": str(segdir or "manifest"), "train_split": train_split}
    stage = Stage(STABILITY_STAGE, out, settings=settings,
                  inputs={**manifest_inputs(cohort, manifest), "features": features, "segdir": segdir},
                  outputs=(ICC, ICC_BY_CLASS, ICC_FIGURE))

    def work() -> dict[str, Any]:
        from osteomet.data.manifest import Manifest
        from osteomet.evaluation.icc import summarize_by_class
        from osteomet.radiomics.features import read_feature_table
        from osteomet.radiomics.reproducibility import CLASSES, plot_icc_by_class
        from osteomet.radiomics.runner import extract_cohort
        from osteomet.radiomics.stability import perturbed_manifest, stability_table
        from osteomet.utils.files import write_text_atomic

        # training patients whose study extraction succeeded: a UNETR mask that came out empty (or too small)
        # failed there, is reported there, and has nothing to perturb
        original = _extracted(read_feature_table(features))
        train_ids = set(cohort.to_frame().loc[lambda f: f["split"] == train_split, "patient_id"]) & set(original.index)
        original = original.loc[original.index.isin(train_ids)]
        train = Manifest(kind=cohort.kind, records=[r for r in cohort if r.patient_id in train_ids], path=cohort.path,
                         extra_columns=list(cohort.extra_columns))
        if len(train) < 3:
            raise InputError(f"{manifest}: feature stability needs at least 3 training patients with extracted "
                             f"features, found {len(train)}")
        sources = None
        if segdir is not None:
            from osteomet.data.masks import apply_masks, mask_sources

            sources = mask_sources(train, segdir)
            train = apply_masks(train, segdir)
        tables: dict[str, pd.DataFrame] = {}
        for kind in perturbations:
            perturbed = perturbed_manifest(train, kind, out / "masks" / kind)
            tables[kind] = _extracted(extract_cohort(perturbed, parameters, cache_dir=out / "cache", jobs=jobs,
                                                     scheduler=scheduler).table)
        reviewed = _auto_for_reviewed(train, sources, segdir) if reviewed_vs_auto and sources is not None else None
        if reviewed is not None:
            tables["auto_vs_reviewed"] = _extracted(extract_cohort(reviewed, parameters, cache_dir=out / "cache",
                                                                   jobs=jobs, scheduler=scheduler).table)
        per_feature = stability_table(original, tables)
        write_text_atomic(out / ICC, per_feature.to_csv(index=False))
        by_class = summarize_by_class(per_feature, class_column="class", order=CLASSES)
        write_text_atomic(out / ICC_BY_CLASS, by_class.to_csv(index=False))
        plot_icc_by_class(per_feature.dropna(subset=["icc"]), out / ICC_FIGURE,
                          title=f"Feature stability: lowest ICC(2,1) over {', '.join(tables)} "
                                f"({len(original)} training patients)")
        return {"patients": len(original), "perturbations": list(tables), "features": len(per_feature),
                "patients_per_perturbation": {k: int(len(t)) for k, t in tables.items()}}

    return stage.run(work)


def _extracted(table: pd.DataFrame) -> pd.DataFrame:
    """An extraction's table indexed by patient, failed patients (e.g. a mask too small) left out."""
    ok = table["error"].isna() if "error" in table else pd.Series(True, index=table.index)
    return table[ok].set_index("patient_id")


def _auto_for_reviewed(train: Any, sources: pd.DataFrame, segdir: str | Path) -> Any:
    """Training patients with a reviewed mask, their mask replaced by the UNETR proposal (None if < 3)."""
    from osteomet.data.manifest import Manifest
    from osteomet.data.masks import auto_mask_path, redirect_masks

    ids = [p for p, s in zip(sources["patient_id"], sources["source"])
           if s == "reviewed" and auto_mask_path(segdir, p).is_file()]
    if len(ids) < 3:
        return None
    subset = Manifest(kind=train.kind, records=[r for r in train if r.patient_id in set(ids)], path=train.path,
                      extra_columns=list(train.extra_columns))
    return redirect_masks(subset, {p: auto_mask_path(segdir, p) for p in ids}, "masks: UNETR proposals")


def model_features(manifest: str | Path, radiomics: str | Path, out: str | Path, *,
                   stability: str | Path | None = None, icc_threshold: float = 0.75, harmonize: bool = True,
                   deep: str | Path | None = None, train_split: str = "train") -> StageOutcome:
    """The radiomics (and, with ``deep``, deep) feature tables the models read: stable and harmonized."""
    out = Path(out)
    settings = {"stability": None if stability is None else {"icc_threshold": icc_threshold},
                "harmonization": {"radiomics": harmonize, "deep": deep is not None}, "train_split": train_split}
    outputs = (FEATURES, COMBAT, COMBAT_DEEP, DEEP_FEATURES, HARMONIZATION, HARMONIZATION_SUMMARY, STABILITY_FILTER)
    stage = Stage(MODEL_FEATURES_STAGE, out, settings=settings,
                  inputs={"manifest": manifest, "radiomics": radiomics, "stability": stability, "deep": deep},
                  outputs=outputs)

    def work() -> dict[str, Any]:
        from osteomet.radiomics.features import read_feature_table
        from osteomet.radiomics.harmonize import effect_summary
        from osteomet.radiomics.stability import drop_unstable, feature_columns, stable_features
        from osteomet.utils.files import atomic_path, write_text_atomic

        for stale in outputs:  # a switch turned off must not leave the previous run's file behind
            (out / stale).unlink(missing_ok=True)
        frame = read_manifest(manifest, check_files=False).to_frame()
        table = read_feature_table(radiomics)
        columns = feature_columns(table)
        summary: dict[str, Any] = {"features_extracted": len(columns)}
        if stability is not None:
            per_feature = pd.read_csv(stability)
            keep = set(stable_features(per_feature, icc_threshold))
            decision = per_feature[["feature", "class", "icc"]].assign(kept=per_feature["feature"].isin(keep))
            write_text_atomic(out / STABILITY_FILTER, decision.to_csv(index=False))
            table = drop_unstable(table, keep, features=columns)
            columns = [c for c in columns if c in keep]
            summary.update(features_stable=len(columns), icc_threshold=icc_threshold)
            if not columns:
                raise InputError(f"{stability}: no radiomics feature reaches ICC {icc_threshold}; lower "
                                 f"stability.icc_threshold or turn stability off")
        if harmonize:
            table, fitted = _harmonized(table, columns, frame, train_split)
            if fitted is not None:
                fitted.save(out / COMBAT)
                before = read_feature_table(radiomics)
                effect = _effect(before, table, frame, fitted)
                write_text_atomic(out / HARMONIZATION, effect.to_csv(index=False))
                write_text_atomic(out / HARMONIZATION_SUMMARY,
                                  effect_summary(effect, fitted.reference).to_csv(index=False))
                summary["radiomics_harmonization"] = {"reference": fitted.reference, "patients": fitted.patients,
                                                      "harmonized": len(fitted.features),
                                                      "left_as_is": len(fitted.skipped)}
            else:
                summary["radiomics_harmonization"] = "single centre: nothing to harmonize"
        with atomic_path(out / FEATURES) as tmp:
            table.to_parquet(tmp, index=False)
        if deep is not None:
            deep_table = pd.read_parquet(deep)
            deep_table["patient_id"] = deep_table["patient_id"].astype(str)
            deep_table, fitted = _harmonized(deep_table, feature_columns(deep_table), frame, train_split)
            if fitted is not None:
                fitted.save(out / COMBAT_DEEP)
            with atomic_path(out / DEEP_FEATURES) as tmp:
                deep_table.to_parquet(tmp, index=False)
            summary["deep_harmonization"] = fitted.reference if fitted else "single centre"
        return summary

    return stage.run(work)


def _harmonized(table: pd.DataFrame, columns: list[str], frame: pd.DataFrame, train_split: str) -> tuple[pd.DataFrame, Any]:
    """``table`` mapped onto the training centre; the fit (None when only one centre has patients)."""
    from osteomet.radiomics.harmonize import fit_combat

    meta = frame.set_index("patient_id")
    if "centre" not in meta or meta["centre"].isna().all():
        return table, None
    ids = table["patient_id"].astype(str)
    centre = ids.map(meta["centre"]).astype(object)
    split = ids.map(meta["split"])
    if centre.isna().any():
        missing = ", ".join(ids[centre.isna()].head(5))
        raise InputError(f"harmonization needs every patient's centre; the manifest has none for {missing}")
    train_centres = centre[split == train_split].value_counts()
    if train_centres.empty:
        raise InputError(f"harmonization: no patient has split == {train_split!r}")
    reference = str(train_centres.index[0])
    others = centre != reference
    if not others.any():
        return table, None
    fit_rows = ((centre == reference) & (split == train_split)) | others
    fitted = fit_combat(table.loc[fit_rows, columns], centre[fit_rows], reference)
    return fitted.apply(table, list(centre)), fitted


def _effect(before: pd.DataFrame, after: pd.DataFrame, frame: pd.DataFrame, fitted: Any) -> pd.DataFrame:
    """Per centre and feature, mean and SD before and after harmonization (the report's table)."""
    from osteomet.radiomics.harmonize import centre_means

    centres = frame.set_index("patient_id")["centre"]
    parts = []
    for name, table in (("before", before), ("after", after)):
        ok = table["error"].isna() if "error" in table else pd.Series(True, index=table.index)
        rows = table[ok]
        parts.append(centre_means(rows, rows["patient_id"].map(centres), fitted.features).assign(stage=name))
    return pd.concat(parts, ignore_index=True)


def rigour_stages(layout: RunLayout, manifest: Path, config: Any, *, segdir: Path | None,
                  timer: Callable[[str, Callable[[], Any]], Any]) -> tuple[Path, Path]:
    """Run the stability and model-feature stages a ``StudyConfig`` asks for; the radiomics and deep
    feature tables the models should read (the raw extraction's when both switches are off)."""
    radiomics, deep = layout.radiomics / FEATURES, layout.deep_features / FEATURES
    stability = None
    if config.stability.enabled:
        timer("feature stability", lambda: feature_stability(
            manifest, radiomics, layout.stability, params=config.radiomics.params,
            perturbations=config.stability.perturbations, reviewed_vs_auto=config.stability.reviewed_vs_auto,
            segdir=segdir, jobs=config.jobs, scheduler=config.scheduler))
        stability = layout.stability / ICC
    harmonize = config.harmonization.enabled
    if stability is None and not harmonize:
        return radiomics, deep
    deep_too = harmonize and config.harmonization.deep_features
    timer("model features", lambda: model_features(
        manifest, radiomics, layout.model_features, stability=stability,
        icc_threshold=config.stability.icc_threshold, harmonize=harmonize, deep=deep if deep_too else None))
    return layout.model_features / FEATURES, layout.model_features / DEEP_FEATURES if deep_too else deep


def predict_harmonizers(layout: RunLayout, centre: str | None) -> tuple[Any, Any, str]:
    """The study's ComBat fits for a new patient of ``centre`` (None, None when nothing applies) and a note.

    Without a centre, or for the reference centre, features stay as extracted; a centre the
    study never saw raises :class:`osteomet.radiomics.harmonize.UnknownCentreError` naming it.
    """
    from osteomet.radiomics.harmonize import ComBat, UnknownCentreError

    path = layout.model_features / COMBAT
    if not path.is_file():
        return None, None, "off: the study did not harmonize its features"
    fitted = ComBat.load(path)
    deep_path = layout.model_features / COMBAT_DEEP
    deep = ComBat.load(deep_path) if deep_path.is_file() else None
    if centre is None:
        return None, None, (f"not applied: no --centre given, features used as extracted (as for the reference "
                            f"centre {fitted.reference}; the study knows {', '.join(fitted.centres)})")
    if centre not in fitted.centres:
        raise UnknownCentreError(f"--centre {centre}: the study harmonized centres {', '.join(fitted.centres)} "
                                 f"(reference {fitted.reference}) and has no ComBat parameters for {centre!r}; give "
                                 f"one of these, or leave --centre out to use the features as extracted")
    if centre == fitted.reference:
        return None, None, f"reference centre {centre}: features unchanged"
    return fitted, deep, f"ComBat: {centre} mapped onto the reference centre {fitted.reference}"
