"""A bounded schemathesis run over /openapi.json: valid and invalid requests to every
operation, against real (tiny) models, never get a 5xx."""

from __future__ import annotations

import os

import pytest

from tests.serve.api.conftest import MINILM

EXAMPLES = int(os.environ.get("PELUK_SCHEMATHESIS_EXAMPLES", "6"))


def _model_for(path: str) -> dict:
    """Path parameters that reach a real model of the route's kind."""
    owner_name = lambda model_id: dict(zip(("owner", "name"), model_id.split("/")))  # noqa: E731
    if any(k in path for k in ("generate", "completions", "/info", "/health", "/v1/models")):
        return owner_name("tiny/llama")
    if any(k in path for k in ("embed", "similarity", "rerank")):
        return owner_name(MINILM)
    if "predict" in path:
        return owner_name("tiny/sentiment")
    return {}


@pytest.mark.slow
def test_no_server_errors(make_server, zoo, tmp_path):
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from hypothesis.configuration import set_hypothesis_home_dir
    from hypothesis.errors import Unsatisfiable

    set_hypothesis_home_dir(tmp_path / "hypothesis")  # its caches, not in the repository

    # the tiny Llama is the default LLM (fast), MiniLM the default embedding model
    server = make_server(models=[f"tiny/llama={zoo['tiny/llama']}", MINILM, *(f"{k}={v}" for k, v in zoo.items())],
                         max_new_tokens=4, default_max_new_tokens=4, max_inputs=8, max_input_chars=2000)
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    failures, statuses = [], {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20
    for operation in operations:
        fixed = _model_for(operation.path) if "{owner}" in operation.path else {}
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            strategies = [operation.as_strategy(generation_mode=mode)]
            if fixed:
                strategies.append(operation.as_strategy(generation_mode=mode, path_parameters=fixed))
            for strategy in strategies:
                @given(case=strategy)
                @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                          suppress_health_check=list(HealthCheck))
                def check(case):
                    response = case.call(base_url=server.url, timeout=60)
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                    if response.status_code >= 500:
                        failures.append((case.method, case.formatted_path, case.body, response.status_code,
                                         response.text[:300]))
                try:
                    check()
                except Unsatisfiable:  # nothing to make invalid (e.g. GET /health in negative mode)
                    pass
    print("schemathesis: statuses", dict(sorted(statuses.items())))
    assert failures == [], failures[:5]
    assert server.recorder.failures == []
    assert len(server.recorder.requests) > 10 * len(operations)  # the run really ran
