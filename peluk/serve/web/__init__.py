"""The web UI: server-rendered pages and a few static files; no CDN, everything works offline.

``pages`` registers the hub's HTML pages on its dispatcher (``peluk hub serve`` and ``peluk
serve`` both have them; see its docstring for the URLs); ``inference.enable`` adds what needs the
inference API under ``peluk serve``: a widget per task on model pages, ``/playground``, the
Explore tab and its JSON route. ``common`` holds what pages share (the request's ``View``,
Jinja, Markdown), ``i18n`` the interface text in English and Bahasa Indonesia.

Templates live in ``templates/``, the stylesheet and scripts in ``static/`` (served at
``/-/static/``, a prefix no repository or API route can take); the attention views reuse
``peluk/viz/static/attention.js``, the renderer of notebooks and ``peluk attention``.
"""

from peluk.serve.web import pages  # noqa: F401  (registers the pages on the hub's dispatcher)
