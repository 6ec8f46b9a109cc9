"""Average the weights of several epochs of one training run into one model file.

    .venv/bin/python scripts/average_checkpoints.py OUT.safetensors EPOCH.safetensors [...]

Used for the bundled teacher: the mean of the last kept epochs (``--keep-epochs``) was chosen
before any real-scene evaluation, because single epochs transferred to real SAR very unevenly.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from engine.models.checkpoint import average_models  # noqa: E402


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out = average_models(sys.argv[2:], sys.argv[1], overwrite=True)
    print(f"{out}: mean of {len(sys.argv) - 2} checkpoints")


if __name__ == "__main__":
    main()
