"""The pytest plugin: registered by installing pilothouse (the ``pytest11`` entry point),
so a test suite needs no import or ``conftest.py`` line to use it.

This module owns the ``--ph-registry`` option, the ``ph_model`` marker (one or more version
URIs, each a run of the test, and a ``baseline``), the fixtures (``ph_registry``,
``ph_server``, ``ph_model``, ``ph_candidate``, ``ph_baseline``, ``ph_reference``) and the
reporting of :mod:`pilothouse.testing`'s checks: each test's results become JUnit
properties (``pilothouse.<check>``: passed, or failed with its summary, or caught: a failure
its test expected) and a "pilothouse checks" section closes the run.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from pilothouse import testing
from pilothouse.drift import Profile
from pilothouse.model import Model
from pilothouse.registry import Registry, default_registry
from pilothouse.serving import Server, serve

# each check of the run: the test, its verdict (passed, failed, caught) and its result
_RESULTS = pytest.StashKey[list[tuple[str, str, "testing.CheckResult"]]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pilothouse", "pilothouse model tests")
    group.addoption(
        "--ph-registry",
        default=None,
        help="registry URI that ph_model's versions are read from (default: pilothouse's "
        "default registry, $PILOTHOUSE_URI or ~/.pilothouse; keep passwords in $PGPASSWORD "
        "or ~/.pgpass rather than on the command line)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "ph_model(uri, ..., baseline=None): the version(s) under test (the test runs once "
        "per URI, as ph_model / ph_candidate) and the version to compare with (ph_baseline)",
    )
    config.stash[_RESULTS] = []


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("ph_model")
    if marker is None or "ph_model_uri" not in metafunc.fixturenames:
        return
    uris = [str(u) for u in marker.args]
    if not uris:
        raise pytest.UsageError(
            f"{metafunc.definition.nodeid}: @pytest.mark.ph_model needs at least one "
            "version URI, e.g. ph_model('models:/churn@challenger')"
        )
    metafunc.parametrize("ph_model_uri", uris, ids=uris)


def _verdict(result: testing.CheckResult, test_raised: bool) -> str:
    """passed, failed, or caught: a failure the test expected (its pytest.raises held it)."""
    if result.passed:
        return "passed"
    return "failed" if test_raised else "caught"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, None]:
    results: list[testing.CheckResult] = []
    token = testing._collector.set(results)
    raised = True
    try:
        outcome = yield
        raised = outcome.excinfo is not None
    finally:
        testing._collector.reset(token)
        for r in results:
            verdict = _verdict(r, raised)
            value = verdict if r.passed else f"{verdict}: {r.summary}"
            item.user_properties.append((f"pilothouse.{r.check}", value))
        item.config.stash[_RESULTS].extend((item.nodeid, _verdict(r, raised), r) for r in results)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    results = terminalreporter.config.stash.get(_RESULTS, [])
    if not results:
        return
    terminalreporter.section("pilothouse checks")
    counts = {"passed": 0, "failed": 0, "caught": 0}
    for nodeid, verdict, r in results:
        counts[verdict] += 1
        terminalreporter.write_line(f"{verdict.upper()} {nodeid} {r.check}: {r.summary}")
    line = f"{counts['passed']} passed, {counts['failed']} failed"
    if counts["caught"]:
        line += f", {counts['caught']} failed as their tests expected"
    terminalreporter.write_line(line)


def _registry(request: pytest.FixtureRequest) -> Registry:
    """The registry of this test: its ph_registry when it asks for one, else the one named
    by --ph-registry, else pilothouse's default ($PILOTHOUSE_URI or ~/.pilothouse)."""
    if "ph_registry" in request.fixturenames:
        registry: Registry = request.getfixturevalue("ph_registry")
        return registry
    uri = request.config.getoption("--ph-registry")
    return Registry(uri) if uri else default_registry()


@pytest.fixture
def ph_registry(tmp_path: Path) -> Iterator[Registry]:
    """A fresh embedded registry (SQLite in the test's temporary directory)."""
    registry = Registry(f"sqlite://{tmp_path / 'registry.db'}", actor="pytest")
    yield registry


@pytest.fixture
def ph_server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """A real model server on 127.0.0.1 and a free port, serving the test's registry's
    deployments; stopped after the test. ``ph_server.url`` is its address."""
    server = serve(port=0, host="127.0.0.1", registry=_registry(request))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ph_model_uri(request: pytest.FixtureRequest) -> str:
    """The version URI of this run of a ``ph_model``-marked test."""
    raise pytest.UsageError(
        f"{request.node.nodeid}: ph_model, ph_candidate and ph_reference need the test "
        "marked with @pytest.mark.ph_model('models:/name@alias')"
    )


@pytest.fixture
def ph_model(request: pytest.FixtureRequest, ph_model_uri: str) -> Model:
    """The version under test, loaded for inference."""
    return _registry(request).load_model(ph_model_uri)


@pytest.fixture
def ph_candidate(ph_model: Model) -> Model:
    """The version under test (the same as ph_model), named for diff tests."""
    return ph_model


@pytest.fixture
def ph_baseline(request: pytest.FixtureRequest) -> Model:
    """The marker's ``baseline`` version, loaded for inference."""
    marker = request.node.get_closest_marker("ph_model")
    baseline = None if marker is None else marker.kwargs.get("baseline")
    if baseline is None:
        raise pytest.UsageError(
            f"{request.node.nodeid}: ph_baseline needs a baseline in the marker, e.g. "
            "@pytest.mark.ph_model('models:/churn@challenger', baseline='models:/churn@champion')"
        )
    return _registry(request).load_model(str(baseline))


@pytest.fixture
def ph_reference(request: pytest.FixtureRequest, ph_model_uri: str) -> Profile:
    """The stored reference profile of the version under test."""
    from pilothouse.monitoring import get_reference

    reference = get_reference(ph_model_uri, registry=_registry(request))
    if reference is None:
        pytest.fail(
            f"{ph_model_uri} has no stored reference: log it with training_data= or call "
            "ph.set_reference",
            pytrace=False,
        )
    return reference
