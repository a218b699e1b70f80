"""study.yaml mistakes are refused when the file is read, naming the file, the key and the allowed values.

Built the way a user makes them: a study.yaml written to disk, and the ``run mri`` command that reads it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from osteomet.cli.main import app
from osteomet.config import ConfigError
from osteomet.evaluation.predictions import THRESHOLD_SPLITS
from osteomet.pipeline.study import load_study_config

runner = CliRunner()


def _study(folder: Path, text: str) -> Path:
    path = folder / "study.yaml"
    path.write_text(text)
    return path


def _run_mri(tmp_path: Path, study: Path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", "mri", "-m", str(tmp_path / "manifest.csv"), "-o", str(out),
                                 "--config", str(study)])
    return result, out


def test_a_misspelt_threshold_split_names_the_file_the_key_and_the_allowed_values(tmp_path: Path):
    study = _study(tmp_path, "evaluation:\n  threshold_split: trian+val\n")
    with pytest.raises(ConfigError) as caught:
        load_study_config(study)
    message = str(caught.value)
    assert message.startswith(f"{study}: invalid StudyConfig")
    assert "evaluation.threshold_split" in message and "'trian+val'" in message
    for allowed in ("'train'", "'val'", "'train+val'", "'val+train'"):
        assert allowed in message


def test_run_mri_refuses_the_typo_before_any_work(tmp_path: Path):
    result, out = _run_mri(tmp_path, _study(tmp_path, "evaluation:\n  threshold_split: trian+val\n"))
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "study.yaml" in text and "evaluation.threshold_split" in text and "'val+train'" in text
    assert not out.exists()


@pytest.mark.parametrize("value", ["train", "val", "train+val", "val+train"])
def test_every_threshold_split_a_threshold_may_be_tuned_on_is_accepted(tmp_path: Path, value: str):
    study = _study(tmp_path, f"evaluation:\n  threshold_split: {value}\n")
    assert load_study_config(study).evaluation.threshold_split == value
    assert value in THRESHOLD_SPLITS


@pytest.mark.parametrize("value", ["trian+val", "test", "train+test", "external", "train + val", "", "all"])
def test_other_threshold_splits_are_refused(tmp_path: Path, value: str):
    study = _study(tmp_path, yaml.safe_dump({"evaluation": {"threshold_split": value}}))
    with pytest.raises(ConfigError, match="evaluation.threshold_split: Input should be 'train', 'val', "
                                          r"'train\+val' or 'val\+train'"):
        load_study_config(study)


@pytest.mark.parametrize("text", ["", "\n\n", "# my study: settings to come\n#seed: 1\n", "~\n"])
def test_an_empty_or_comments_only_study_is_refused_not_run_on_the_defaults(tmp_path: Path, text: str):
    study = _study(tmp_path, text)
    with pytest.raises(ConfigError, match=r"study\.yaml: is empty"):
        load_study_config(study)
    result, out = _run_mri(tmp_path, study)
    assert result.exit_code == 2, result.output
    assert "is empty" in result.output and not out.exists()


def test_an_explicit_empty_mapping_keeps_the_defaults(tmp_path: Path):
    assert load_study_config(_study(tmp_path, "{}\n")) == load_study_config("default")


@pytest.mark.parametrize(("key", "text", "expected"), [
    ("device", "device: cdua\n", "not a device: use cpu, cuda, cuda:<index> or mps"),
    ("scheduler", "scheduler: tpc://10.0.0.5:8786\n", "not a Dask scheduler address"),
    ("scheduler", "scheduler: 'tcp://host :8786'\n", "not a Dask scheduler address"),
    ("segmentation.masks", "segmentation:\n  masks: unter\n", "Input should be 'unetr' or 'manifest'"),
    ("fusion.mode", "fusion:\n  mode: feature\n", "Input should be 'features' or 'probabilities'"),
    ("explanations.cohort", "explanations:\n  cohort: training\n", "Input should be 'train', 'val'"),
    ("stability.perturbations.1", "stability:\n  perturbations: [erode, dilute]\n", "'erode' or 'dilate'"),
])
def test_other_fixed_choice_settings_are_checked_the_same_way(tmp_path: Path, key: str, text: str, expected: str):
    study = _study(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_study_config(study)
    message = str(caught.value)
    assert message.startswith(f"{study}: invalid StudyConfig") and f"{key}: " in message and expected in message


@pytest.mark.parametrize("text", ["device: cpu\n", "device: cuda\n", "device: cuda:1\n", "device: mps\n",
                                  "scheduler: tcp://10.0.0.5:8786\n", "scheduler: localhost:8786\n",
                                  "scheduler: tls://scheduler.example.org:8786\n"])
def test_valid_devices_and_scheduler_addresses_are_accepted(tmp_path: Path, text: str):
    key, value = text.strip().split(": ")
    assert getattr(load_study_config(_study(tmp_path, text)), key) == value


@pytest.mark.parametrize(("section", "key"), [("segmentation", "config"), ("radiomics", "params"),
                                              ("deep", "config")])
def test_a_stage_file_that_is_neither_a_preset_nor_a_file_is_refused(tmp_path: Path, section: str, key: str):
    study = _study(tmp_path, f"{section}:\n  {key}: tinny\n")
    with pytest.raises(ConfigError, match=rf"study\.yaml: {section}\.{key}: 'tinny' is neither a preset \(.*tiny.*\) "
                                          "nor an existing YAML file"):
        load_study_config(study)


def test_stage_presets_stay_names_and_stage_files_resolve_against_the_study(tmp_path: Path):
    (tmp_path / "grid.yaml").write_text("max_epochs: 1\n")
    config = load_study_config(_study(tmp_path, "segmentation:\n  config: tiny\nradiomics:\n  params: ct\n"
                                                "deep:\n  config: grid.yaml\n"))
    assert (config.segmentation.config, config.radiomics.params) == ("tiny", "ct")
    assert config.deep.config == str(tmp_path / "grid.yaml")


@pytest.mark.parametrize("preset", ["default", "tiny"])
def test_the_shipped_studies_are_valid(preset: str):
    assert load_study_config(preset).evaluation.threshold_split in THRESHOLD_SPLITS
