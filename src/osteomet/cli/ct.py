"""``osteomet ct``: CT osseous lesions (detection, segmentation, nnU-Net v2, per-lesion analysis, ICC)."""

from __future__ import annotations

import typer

from osteomet.cli import ct_detect, ct_lesions, ct_nnunet, ct_segment

app = typer.Typer(help="CT osseous lesions: slice detection, lesion segmentation, nnU-Net v2, per-lesion analysis.",
                  no_args_is_help=True)
app.add_typer(ct_detect.app, name="detect")
app.add_typer(ct_segment.app, name="segment")
app.add_typer(ct_nnunet.app, name="nnunet")
ct_lesions.register(app)
