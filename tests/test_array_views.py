"""SimpleITK array views must not outlive their image.

``sitk.GetArrayViewFromImage`` returns a NumPy view of the image's buffer that holds no
reference to the image: a view of a temporary (``GetArrayViewFromImage(f(x))``) reads freed
memory once the call returns, which gave silent garbage on small volumes and SIGSEGV on large
ones (the applicability stage's coverage mask did this).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "osteomet"


def _views_of_temporaries(path: Path) -> list[int]:
    """Line numbers of ``GetArrayViewFromImage(<anything but a name>)``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "GetArrayViewFromImage" and node.args
                and not isinstance(node.args[0], (ast.Name, ast.Attribute, ast.Subscript))):
            found.append(node.lineno)
    return found


def test_no_array_view_is_taken_of_a_temporary_image():
    found = [f"{path.relative_to(PACKAGE)}:{line}" for path in sorted(PACKAGE.rglob("*.py"))
             for line in _views_of_temporaries(path)]
    assert not found, ("GetArrayViewFromImage of a temporary image (keep the image in a variable, or use "
                       "GetArrayFromImage): " + ", ".join(found))


def test_the_check_finds_the_pattern_that_crashed(tmp_path):
    """The rule itself: the construct it forbids really does read freed memory (a child process crashes or
    reads a value that was never written), while a view of a named image does not."""
    bad = tmp_path / "bad.py"
    bad.write_text("import SimpleITK as sitk\nv = sitk.GetArrayViewFromImage(sitk.Image([8, 8, 8], 1) + 1)\n",
                   encoding="utf-8")
    assert _views_of_temporaries(bad) == [2]
    probe = ("import SimpleITK as sitk, numpy as np\n"
             "v = sitk.GetArrayViewFromImage(sitk.Image([512, 512, 64], sitk.sitkUInt8) + 1)\n"
             "filler = [np.full((512, 512, 64), 7, np.uint8) for _ in range(3)]\n"
             "print(int(v.min()), int(v.max()))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode != 0 or done.stdout.split() != ["1", "1"], done.stdout
    kept = probe.replace("v = sitk.GetArrayViewFromImage(sitk.Image([512, 512, 64], sitk.sitkUInt8) + 1)",
                         "image = sitk.Image([512, 512, 64], sitk.sitkUInt8) + 1\nv = sitk.GetArrayViewFromImage(image)")
    done = subprocess.run([sys.executable, "-c", kept], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.split() == ["1", "1"], done.stderr
