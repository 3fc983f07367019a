"""Small plots saved as PNG files for the speedrun's report (drawn without pyplot)."""

from __future__ import annotations

from pathlib import Path


def save_plot(out_dir: Path, name: str, draw) -> str:
    """Call ``draw(ax)`` on a fresh small figure, save it as ``out_dir/name`` and return ``name``.

    A bare ``Figure`` (no pyplot) leaves matplotlib's global backend alone,
    so calling the speedrun from a notebook does not disturb its plots.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 3))
    ax = figure.subplots()
    draw(ax)
    ax.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(Path(out_dir) / name, dpi=100)
    return name
