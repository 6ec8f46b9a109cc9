"""The models shipped in ``resources/models``: the command line's defaults, as the Processing algorithms'."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

BUNDLED_MODELS = Path(__file__).resolve().parents[2] / "resources" / "models"
BUNDLED_STUDENT = BUNDLED_MODELS / "sgcad_student.safetensors"
BUNDLED_TEACHER = BUNDLED_MODELS / "sgcad_teacher.safetensors"


def bundled(path: Path) -> Optional[str]:
    """``path`` as an argparse default where the file is shipped, else None (the option is then needed)."""
    return str(path) if path.is_file() else None


def segment_teacher(model: str, teacher: Optional[str], no_teacher: bool) -> Tuple[Optional[str], Optional[str]]:
    """The water teacher ``segment`` runs with, and a note when the bundled one is left out.

    A teacher given by the user is used as given (a mismatch is an error further on); without one the
    bundled teacher joins a student that reads as many SAR bands, so water probability and gates are
    written as in the plugin; ``--no-teacher`` runs the student alone.
    """
    if no_teacher:
        if teacher:
            raise ValueError("--teacher and --no-teacher contradict each other: give one of them")
        return None, None
    if teacher or not BUNDLED_TEACHER.is_file():
        return teacher, None
    from ..models.checkpoint import read_metadata

    student_sar = read_metadata(model).bands.sar_channels
    teacher_sar = read_metadata(BUNDLED_TEACHER).bands.sar_channels
    if student_sar != teacher_sar:
        return None, (f"the bundled water teacher reads {teacher_sar} SAR band(s) and {Path(model).name} reads "
                      f"{student_sar}: segmenting without a teacher (no water probability or gates); give "
                      "--teacher with a teacher trained on the same SAR bands")
    return str(BUNDLED_TEACHER), None
