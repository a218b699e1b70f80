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
