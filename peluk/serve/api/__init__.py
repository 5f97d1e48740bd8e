"""The inference API of ``peluk serve``: HF Inference API, OpenAI, TGI and TEI wire shapes over
peluk's pipelines and generation (../shared/specs/inference-protocol.md).

    protocol.py   request bodies (pydantic: validation + the OpenAPI document), response and error shapes
    tasks.py      the HF Inference API's tasks: inputs, parameters, answer shapes per task
    handlers.py   ``Api``: auth, model resolution, caching, each route's work (calls the library)
    registry.py   model ids → files (local, this hub's repos, built in); loading; LRU in a memory budget
    batcher.py    dynamic batching of pipeline requests per model (max batch, max wait, length buckets)
    engine.py     continuous batching of generation per decoder LM (join/leave the running decode loop)
    limits.py     Prometheus metrics, per-token rate limits, the result cache
    settings.py   ``Settings``: what ``peluk serve``'s flags set
    app.py        ``create_api(hub, settings)``: the routes, error mapping, request guard middleware
    docs.py       the offline /docs page

``peluk.serve.app.create_app`` mounts this API and the hub in one ASGI app.
"""
