"""Attention heat maps with matplotlib (the optional ``viz`` extra): darker = more attention."""

from __future__ import annotations

from pathlib import Path


def heatmap(view, layer: int = -1, head: int | None = None, kind: str | None = None, path=None,
            cmap: str = "Blues", cell: float = 0.28, dpi: int = 100, annotate: bool | None = None, title: str | None = None):
    """Draw ``view``'s (T, S) matrix of one layer/head (``head=None``: mean over heads).

    Args:
        cell: inches per token (the figure grows with the number of tokens, within 4..40 inches).
        annotate: write the values in the cells (default: when both sides have <= 20 tokens).
        path: save to .png / .svg / .pdf as well.
    Returns the matplotlib Figure.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as e:  # pragma: no cover
        raise ImportError("heat maps need matplotlib: pip install 'peluk[viz]'") from e

    kind = kind or view.kinds[0]
    n_layers = view.attentions[kind].shape[0]
    layer = layer % n_layers
    m = view.matrix(layer, head, kind)
    rows, cols = view.tokens_of(kind)
    T, S = m.shape
    width = min(40.0, max(4.0, 1.6 + cell * S))
    height = min(40.0, max(3.0, 1.4 + cell * T))
    fig = Figure(figsize=(width, height), dpi=dpi)  # no pyplot state: safe in servers and threads
    ax = fig.add_subplot()
    im = ax.imshow(m, cmap=cmap, vmin=0.0, vmax=float(max(m.max(), 1e-9)), aspect="auto", interpolation="nearest")
    fontsize = max(4, min(10, int(220 / max(T, S, 1)) + 3))
    if max(T, S) <= 160:  # beyond that, labels would overlap: the axes show positions
        ax.set_xticks(range(S), [_label(t) for t in cols], rotation=90, fontsize=fontsize)
        ax.set_yticks(range(T), [_label(t) for t in rows], fontsize=fontsize)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query")
    what = "mean over heads" if head is None else f"head {head}"
    ax.set_title(title or f"{kind} attention, layer {layer}, {what}")
    if annotate or (annotate is None and T <= 20 and S <= 20):
        for t in range(T):
            for s in range(S):
                v = m[t, s]
                ax.text(s, t, f"{v:.2f}".removeprefix("0"), ha="center", va="center", fontsize=max(4, fontsize - 2),
                        color="white" if v > 0.5 * m.max() else "black")
    if view.prompt_length and kind == "decoder":  # generated tokens start here
        ax.axhline(view.prompt_length - 0.5, color="#c33", linewidth=1)
        ax.axvline(view.prompt_length - 0.5, color="#c33", linewidth=1)
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    if path is not None:
        fig.savefig(Path(path), dpi=dpi)
    return fig


def _label(token) -> str:
    """Token text for an axis label: "$" would start matplotlib's math mode."""
    return str(token).replace("$", r"\$")
