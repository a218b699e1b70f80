"""A manifest saved by Excel in a comma-decimal locale: dots group thousands, and a bare ``1.250`` is refused.

German Excel's "CSV UTF-8" writes a byte-order mark, semicolons, CRLF line ends, decimal commas
and, for cells formatted with a thousands separator, dots between the groups of three digits.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from osteomet.cli.main import app
from osteomet.data.manifest import ManifestError, read_manifest

runner = CliRunner()
HEADER = ["patient_id", "label", "age", "psa", "gleason", "isup", "t2", "dwi", "adc"]


def _excel_de(folder: Path, rows: list[list[str]]) -> Path:
    """The CSV as German Excel saves it, with the image files it names."""
    for row in rows:
        for name in row[-3:]:
            (folder / name).write_bytes(b"")
    lines = [";".join(HEADER)] + [";".join(row) for row in rows]
    path = folder / "kohorte.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    return path


def _row(pid: str, age: str, psa: str) -> list[str]:
    return [pid, "1", age, psa, "7", "2", f"{pid}_t2.nii.gz", f"{pid}_dwi.nii.gz", f"{pid}_adc.nii.gz"]


def test_grouped_thousands_with_a_decimal_comma_are_read_as_thousands(tmp_path: Path):
    path = _excel_de(tmp_path, [_row("P1", "71", "1.250,5"), _row("P2", "65,5", "12,4"), _row("P3", "80", "2.000,0")])
    manifest = read_manifest(path)
    frame = manifest.to_frame().set_index("patient_id")
    assert frame["psa"].to_dict() == {"P1": 1250.5, "P2": 12.4, "P3": 2000.0}
    assert frame.loc["P2", "age"] == 65.5
    assert any("thousands separators" in w for w in manifest.warnings)


def test_an_ambiguous_grouped_value_is_refused_naming_file_column_line_and_value(tmp_path: Path):
    path = _excel_de(tmp_path, [_row("P1", "71", "12,5"), _row("P2", "66", "1.250"), _row("P3", "70", "3.400")])
    with pytest.raises(ManifestError) as raised:
        read_manifest(path)
    message = str(raised.value)
    assert str(path) in message and len(raised.value.problems) == 2
    assert "line 3 (patient 'P2'): psa: '1.250' is ambiguous" in message
    assert "write 1250 if it means 1250, or 1,250 if it means 1.25" in message
    assert "line 4 (patient 'P3'): psa: '3.400'" in message
    result = runner.invoke(app, ["manifest", "check", str(path)])
    assert result.exit_code == 2 and "'1.250' is ambiguous" in result.output and "Traceback" not in result.output


def test_a_comma_separated_file_keeps_its_decimal_points(tmp_path: Path):
    """Only semicolon files use the dot for thousands; ``1.250`` in a comma file is 1.25, as ever."""
    for pid in ("P1",):
        for kind in ("t2", "dwi", "adc"):
            (tmp_path / f"{pid}_{kind}.nii.gz").write_bytes(b"")
    path = tmp_path / "cohort.csv"
    path.write_text(",".join(HEADER) + "\nP1,1,71,1.250,7,2,P1_t2.nii.gz,P1_dwi.nii.gz,P1_adc.nii.gz\n")
    assert read_manifest(path).to_frame()["psa"].tolist() == [1.25]
