"""Radiomics with pyradiomics: parameter files, cached parallel extraction, feature tables, stability and
harmonization. The XGBoost radiomics model that reads these tables is :mod:`osteomet.models.radiomics`."""
