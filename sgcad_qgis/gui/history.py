"""Model history of a dock session: every fine-tuned model is kept and one can step back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional


@dataclass
class ModelEntry:
    path: str
    label: str


class ModelHistory:
    """An undo stack of model files; nothing is deleted when stepping back."""

    def __init__(self) -> None:
        self.entries: List[ModelEntry] = []

    def push(self, path: str, label: str) -> None:
        if self.entries and self.entries[-1].path == path:
            return
        self.entries.append(ModelEntry(str(path), label))

    def current(self) -> Optional[ModelEntry]:
        return self.entries[-1] if self.entries else None

    def can_go_back(self) -> bool:
        return len(self.entries) > 1

    def back(self) -> ModelEntry:
        """Drop the newest entry (its file stays on disk) and return the one before it.

        Raises:
            ValueError: there is no earlier model.
        """
        if not self.can_go_back():
            raise ValueError("There is no earlier model to go back to.")
        self.entries.pop()
        return self.entries[-1]
