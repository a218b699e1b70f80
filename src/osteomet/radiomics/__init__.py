"""Radiomics with pyradiomics: cached, parallel extraction and the XGBoost radiomics model."""
