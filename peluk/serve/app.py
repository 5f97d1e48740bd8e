"""The one ASGI app of ``peluk serve``: the inference API with the hub behind it.

The API's routes (``/models/...``, ``/v1/...``, ``/generate``, ``/embed``, ``/metrics``, ``/docs``,
...) are matched first; everything else goes to the hub (its HTTP API and git), mounted at the
root as ``peluk hub serve`` serves it, web pages included. Both share the hub's users and tokens;
``peluk.serve.web.inference.enable`` gives the pages their inference widgets, the playground and
the Explore tab (with its route ``POST /models/{owner}/{name}/attention``).

>>> app = create_app(Path("~/.peluk/hub").expanduser(), Settings(public=True))   # doctest: +SKIP
>>> uvicorn.run(app, port=8000)                                                  # doctest: +SKIP
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from peluk.serve.api.app import create_api
from peluk.serve.api.settings import Settings
from peluk.serve.hub.app import create_app as create_hub_app
from peluk.serve.web import inference as web_inference


def create_app(home: Path, settings: Settings | None = None, **hub_options) -> FastAPI:
    """The hub under ``home`` plus the inference API configured by ``settings``.

    ``hub_options`` go to :func:`peluk.serve.hub.app.create_app` (``db_url``, ``lfs_uploads``, ...).
    ``app.state.hub`` is the hub service, ``app.state.api`` the API service.
    """
    hub_app = create_hub_app(Path(home), **hub_options)
    app = create_api(hub_app.state.hub, settings)
    api_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a):
        async with hub_app.router.lifespan_context(hub_app), api_lifespan(a):
            yield

    app.router.lifespan_context = lifespan
    app.state.hub = hub_app.state.hub
    web_inference.enable(app, hub_app)  # before the mount: the Explore route must come first
    app.mount("/", hub_app)
    return app
