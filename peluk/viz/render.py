"""HTML for an ``AttentionView``: the one JS renderer (``static/attention.js``) inlined with the
data, so the result works offline (notebooks, standalone files, the web UI).

The JS and the JSON are embedded in the page itself: no CDN, no ``http(s)://`` reference.
"""

from __future__ import annotations

import html
import itertools
from functools import lru_cache
from pathlib import Path

STATIC = Path(__file__).with_name("static")
_ids = itertools.count()


@lru_cache(maxsize=None)
def renderer_js() -> str:
    """The shared renderer (also served as a static file by the web UI)."""
    return (STATIC / "attention.js").read_text(encoding="utf-8")


def _script_safe(text: str) -> str:
    """Make text safe inside <script>: no '</script>' or '<!--' can end or confuse it."""
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def fragment(view, element_id: str | None = None, precision: str = "auto") -> str:
    """A self-contained <div> + <script> block rendering ``view`` (for notebooks and pages).
    ``precision="auto"``: float16 for small views, deflated uint8 for long inputs (see ``to_dict``)."""
    element_id = element_id or f"peluk-attention-{next(_ids)}"
    data = _script_safe(view.to_json(precision))
    js = renderer_js().replace("</script", "<\\/script")
    return (f'<div id="{element_id}" class="peluk-attention"></div>\n'
            f'<script type="application/json" id="{element_id}-data">{data}</script>\n'
            f"<script>\n{js}\n"
            f'PelukAttention.render("{element_id}", JSON.parse('
            f'document.getElementById("{element_id}-data").textContent));\n</script>')


def notebook_html(view) -> str:
    return fragment(view)


def standalone_html(view, title: str | None = None, precision: str = "auto") -> str:
    """A complete HTML document: open it in any browser, no network needed."""
    title = title or f"peluk attention: {view.name or view.model_type or 'model'}"
    return ("<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n</head>\n<body>\n{fragment(view, 'peluk-attention', precision)}\n"
            "</body>\n</html>\n")
