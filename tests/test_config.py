from pathlib import Path

import pytest

from osteomet.config import ConfigError, dump_config, load_config
from osteomet.data.synth.mri import MRISynthConfig


def test_round_trip(tmp_path: Path):
    config = MRISynthConfig(scale=0.5, image_format="mha")
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(config))
    assert load_config(path, MRISynthConfig) == config


def test_errors_name_the_file_and_field(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("scale: 3\nimage_format: png\n")
    with pytest.raises(ConfigError, match=r"c.yaml: invalid MRISynthConfig: scale: .*; image_format"):
        load_config(path, MRISynthConfig)
    path.write_text("scale: [1, 2\n")
    with pytest.raises(ConfigError, match=r"c.yaml: not valid YAML at line"):
        load_config(path, MRISynthConfig)
    path.write_text("!!python/object:os.system {}\n")
    with pytest.raises(ConfigError, match="not valid YAML"):  # safe_load refuses object tags
        load_config(path, MRISynthConfig)
    path.write_text("unknown_knob: 1\n")
    with pytest.raises(ConfigError, match="unknown_knob"):
        load_config(path, MRISynthConfig)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "none.yaml", MRISynthConfig)


@pytest.mark.parametrize("text", ["", "   \n\n", "# settings to come\n# scale: 0.5\n", "null\n"])
def test_an_empty_or_comments_only_file_is_refused(tmp_path: Path, text: str):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"c\.yaml: is empty: "):
        load_config(path, MRISynthConfig)
    path.write_text("{}\n")  # an explicit empty mapping is a choice: every default
    assert load_config(path, MRISynthConfig) == MRISynthConfig()


def test_a_wrong_value_is_shown_with_the_key(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("image_format: png\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: invalid MRISynthConfig: image_format: .* \(got 'png'\)$"):
        load_config(path, MRISynthConfig)
