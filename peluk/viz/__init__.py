"""Look inside a model: attention capture, head/model views, heat maps.

>>> view = peluk.viz.attention(model, tokenizer, "Saya suka kucing")   # doctest: +SKIP
>>> view                      # in a notebook: the interactive head view / model view (offline)
>>> view.save("view.html")    # standalone file; .json for the data
>>> view.heatmap(layer=2, head=None, path="map.png")   # mean over heads, darker = more attention
"""

from peluk.viz.capture import SIDES, AttentionView, attention

__all__ = ["AttentionView", "SIDES", "attention", "attributions"]


def __getattr__(name):
    if name in ("attributions", "Attributions"):
        from peluk.viz import attribution

        return getattr(attribution, name)
    raise AttributeError(name)
