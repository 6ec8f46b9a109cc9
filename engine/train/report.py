"""Epoch logs (CSV + JSON), PNG plots and one self-contained HTML report per run.

Plots use matplotlib's Agg canvas directly, never ``pyplot``, so nothing global changes
inside the QGIS process and no display is needed.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..files import atomic_write_bytes


def _flatten(record: Dict[str, Any], class_names: Sequence[str]) -> Dict[str, Any]:
    flat: Dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, (list, tuple)) and len(value) == len(class_names):
            for name, v in zip(class_names, value):
                flat[f"{key}_{name}"] = v
        elif not isinstance(value, (list, tuple, dict)):
            flat[key] = value
    return flat


class EpochLog:
    """The per-epoch history of a run, rewritten atomically as ``history.csv``/``.json``.

    Args:
        out_dir: run folder.
        class_names: names used for the per-class CSV columns (``val_iou_water`` ...).
        records: history restored from a resumed run.
    """

    def __init__(
        self, out_dir: Path, class_names: Sequence[str], records: Optional[List[Dict[str, Any]]] = None
    ) -> None:
        self.out_dir = Path(out_dir)
        self.class_names = list(class_names)
        self.records: List[Dict[str, Any]] = list(records or [])

    def append(self, record: Dict[str, Any]) -> None:
        self.records.append(record)
        self.write()

    def write(self) -> None:
        rows = [_flatten(r, self.class_names) for r in self.records]
        columns: List[str] = []
        for row in rows:
            columns += [c for c in row if c not in columns]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: _fmt(row.get(c)) for c in columns})
        atomic_write_bytes(self.out_dir / "history.csv", buffer.getvalue().encode("utf-8"))
        text = json.dumps({"classes": self.class_names, "epochs": self.records}, indent=1)
        atomic_write_bytes(self.out_dir / "history.json", text.encode("utf-8"))


def _fmt(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def save_figure(fig: Figure, path: Path) -> Path:
    """Render ``fig`` as PNG and replace ``path`` atomically."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return atomic_write_bytes(path, buffer.getvalue())


def _series(records: List[Dict[str, Any]], key: str) -> List[float]:
    return [np.nan if r.get(key) is None else float(r[key]) for r in records]


def plot_learning_curves(records: List[Dict[str, Any]], path: Path) -> Path:
    """Training losses and validation OA / Kappa / mIoU / water IoU per epoch."""
    fig = Figure(figsize=(10, 4))
    epochs = [r["epoch"] for r in records]
    ax_loss, ax_metric = fig.subplots(1, 2)
    for key in ("train_loss", "train_seg_loss", "train_kd_loss", "val_loss"):
        values = _series(records, key)
        if not all(np.isnan(values)):
            ax_loss.plot(epochs, values, marker=".", label=key)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    for key in ("val_oa", "val_kappa", "val_miou", "val_water_iou"):
        values = _series(records, key)
        if not all(np.isnan(values)):
            ax_metric.plot(epochs, values, marker=".", label=key)
    ax_metric.set_xlabel("epoch")
    ax_metric.set_ylabel("validation metric")
    ax_metric.set_ylim(0, 1)
    ax_metric.legend()
    ax_metric.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_kd_ratio(records: List[Dict[str, Any]], path: Path) -> Path:
    """The KD-region ratio per epoch with its water / non-water split (stage 2)."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    epochs = [r["epoch"] for r in records]
    for key, label in (
        ("kd_ratio", "all gated pixels"),
        ("kd_ratio_water", "water gate"),
        ("kd_ratio_non_water", "non-water gate"),
    ):
        ax.plot(epochs, [100 * v for v in _series(records, key)], marker=".", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("KD region ratio (% of batch pixels)")
    ax.legend()
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_confusion(
    matrix: Sequence[Sequence[int]], names: Sequence[str], path: Path, title: str = ""
) -> Path:
    """Row-normalised confusion matrix (rows: reference, columns: prediction) with counts."""
    m = np.asarray(matrix, dtype=np.float64)
    rows = m.sum(axis=1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    size = 1.2 + 0.8 * len(names)
    fig = Figure(figsize=(size + 1.5, size))
    ax = fig.subplots()
    image = ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
    fig.colorbar(image, ax=ax, label="fraction of reference row")
    ax.set_xticks(range(len(names)), labels=names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), labels=names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    for i in range(len(names)):
        for j in range(len(names)):
            color = "white" if norm[i, j] > 0.6 else "black"
            ax.text(
                j, i, f"{norm[i, j]:.2f}\n{int(m[i, j])}", ha="center", va="center", fontsize=7, color=color
            )
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{100 * float(v):.2f}"


def metrics_table(metrics: Dict[str, Any], names: Sequence[str]) -> str:
    """HTML table of per-class IoU, UA (precision), PA (recall), F1 and boundary F-score."""
    boundary = metrics.get("boundary_f") or [None] * len(names)
    rows = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{_pct(metrics['iou'][i])}</td><td>{_pct(metrics['precision'][i])}</td>"
        f"<td>{_pct(metrics['recall'][i])}</td><td>{_pct(metrics['f1'][i])}</td><td>{_pct(boundary[i])}</td>"
        f"<td>{metrics['support'][i]}</td></tr>"
        for i, n in enumerate(names)
    )
    tol = metrics.get("boundary_tolerance")
    head = (
        "<tr><th>class</th><th>IoU %</th><th>UA %</th><th>PA %</th><th>F1 %</th>"
        f"<th>boundary F % ({'n/a' if tol is None else tol} px)</th><th>pixels</th></tr>"
    )
    summary = (
        f"<p>OA {_pct(metrics['oa'])} % &middot; Kappa {_pct(metrics['kappa'])} % &middot; "
        f"mIoU {_pct(metrics['miou'])} %</p>"
    )
    return summary + f"<table>{head}{rows}</table>"


def write_html_report(
    path: Path,
    title: str,
    sections: List[Dict[str, str]],
    images: Dict[str, Path],
    facts: Dict[str, Any],
) -> Path:
    """One HTML file with every PNG embedded (base64): it can be mailed or archived alone.

    Args:
        path: the report file.
        title: page title.
        sections: ``{"title": ..., "html": ...}`` blocks (already-escaped HTML).
        images: caption -> PNG path.
        facts: key/value pairs shown at the top (stage, device, epochs, paths ...).
    """
    fact_rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts.items()
    )
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>",
        "body{font-family:sans-serif;margin:2em;max-width:1100px}",
        "table{border-collapse:collapse;margin:1em 0}",
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}",
        "img{max-width:100%;border:1px solid #ddd}",
        f"</style></head><body><h1>{html.escape(title)}</h1><table>{fact_rows}</table>",
    ]
    for section in sections:
        parts.append(f"<h2>{html.escape(section['title'])}</h2>{section['html']}")
    for caption, image in images.items():
        data = base64.b64encode(Path(image).read_bytes()).decode("ascii")
        parts.append(
            f"<h2>{html.escape(caption)}</h2>"
            f"<img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
        )
    parts.append("</body></html>")
    return atomic_write_bytes(path, "\n".join(parts).encode("utf-8"))
