"""pilothouse's pytest plugin and assertions, run through pytest's own pytester: every
assertion passing and failing with its message, the fixtures (a real server started and
stopped, versions from a registry, their stored reference), the marker, the summary and
the JUnit properties."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

# a registry with two versions of a classifier (v2 trained on less data, so worse), the
# second with its reference, written by each test file's conftest
CONFTEST = """
import numpy as np, pandas as pd, pytest
import pilothouse as ph
from sklearn.linear_model import LogisticRegression

rng = np.random.default_rng(0)
X = pd.DataFrame({"age": rng.normal(40, 10, 3000), "income": rng.normal(50, 15, 3000),
                  "city": rng.choice(["paris", "rome", "oslo"], 3000)})
codes = X.city.map({"paris": 0.0, "rome": 1.0, "oslo": 2.0})
y = ((X.age - 40) / 10 + (X.income - 50) / 15 + rng.normal(0, 1, 3000) > 0).astype(int)
NUM = X[["age", "income"]].astype("float32")

def build(uri):
    reg = ph.Registry(uri, actor="test")
    good = LogisticRegression().fit(NUM, y)
    weak = LogisticRegression().fit(NUM[["age"]].assign(income=0.0), y)
    reg.log_model(good, "churn", input_example=NUM[:2], training_data=NUM)
    reg.log_model(weak, "churn", input_example=NUM[:2], training_data=NUM)
    reg.log_model(weak, "churn", input_example=NUM[:2])
    reg.set_alias("churn", "champion", 1)
    reg.set_alias("churn", "challenger", 2)
    return uri

@pytest.fixture(scope="session")
def registry_uri(tmp_path_factory):
    return build(f"sqlite://{tmp_path_factory.mktemp('reg') / 'registry.db'}")

@pytest.fixture
def X_test():
    return NUM

@pytest.fixture
def y_test():
    return y
"""


def run(pytester: pytest.Pytester, tests: str, *args: str) -> pytest.RunResult:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_model=tests)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


def test_data_assertions_pass_and_fail_with_what_failed(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
import numpy as np
import pilothouse as ph
import pilothouse.testing as pht
from conftest import X

def test_valid():
    pht.assert_valid(X.iloc[:500], ph.profile(X))

def test_invalid():
    bad = X.iloc[:100].copy()
    bad.loc[:4, "age"] = 500.0
    bad.loc[7, "city"] = "lima"
    bad["extra"] = 1.0
    pht.assert_valid(bad, X)

def test_tolerated():
    bad = X.iloc[:100].copy()
    bad.loc[:0, "age"] = 500.0
    pht.assert_valid(bad, X, max_failure_rate=0.05)

def test_no_drift():
    pht.assert_no_drift(X.iloc[:1500], X.iloc[1500:], max_drift_share=0.34)

def test_drift():
    pht.assert_no_drift(X, X.assign(age=X.age + 20))

def test_expected_failure():
    import pytest
    with pytest.raises(pht.CheckFailed):
        pht.assert_no_drift(X, X.assign(age=X.age + 20))
""",
    )
    result.assert_outcomes(passed=4, failed=2)
    out = result.stdout.str()
    # which columns, which checks, how many rows, against what
    result.stdout.fnmatch_lines(
        [
            "*assert_valid: 3 check(s) failed on 3 column(s) over 100 rows*age, city, extra*",
            "*extra*extra_column*100*absent from the reference*",
            "*age*out_of_range*5*0.05*range [*",
            "*city*unseen_category*1*categories*",
            "*assert_no_drift: 1 of 3 column(s) drifted*age*",
            "*age*wasserstein*",
        ]
    )
    assert "test_valid" in out and "pilothouse checks" in out
    result.stdout.fnmatch_lines(
        [
            "*pilothouse checks*",
            "CAUGHT test_model.py::test_expected_failure assert_no_drift: 1 of 3*",
            "3 passed, 2 failed, 1 failed as their tests expected",
        ]
    )


def test_model_marker_fixtures_and_diff_tests(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    # the versions are read from the registry --ph-registry names
    helpers: dict[str, object] = {}
    exec(CONFTEST, helpers)
    uri = helpers["build"](f"sqlite://{pytester.path / 'registry.db'}")  # type: ignore[operator]
    pytester.makepyfile(
        test_model="""
import pytest
import pilothouse.testing as pht

@pytest.mark.ph_model("models:/churn@champion", baseline="models:/churn@champion")
def test_same_model_is_close(ph_candidate, ph_baseline, X_test):
    pht.assert_predictions_close(ph_candidate, ph_baseline, X_test, atol=0.0)

@pytest.mark.ph_model("models:/churn@challenger", baseline="models:/churn@champion")
def test_weaker_model_flips(ph_candidate, ph_baseline, X_test):
    pht.assert_predictions_close(
        ph_candidate, ph_baseline, X_test, max_flip_rate=0.02, outputs=["label"]
    )

@pytest.mark.ph_model("models:/churn@champion", baseline="models:/churn@champion")
def test_same_model_is_not_better(ph_candidate, ph_baseline, X_test, y_test):
    pht.assert_better(ph_candidate, ph_baseline, X_test, y_test, metric="accuracy", resamples=200)

@pytest.mark.ph_model("models:/churn/3")
def test_version_without_reference(ph_reference):
    pass

@pytest.mark.ph_model("models:/churn@champion", baseline="models:/churn@challenger")
def test_champion_is_better(ph_candidate, ph_baseline, X_test, y_test):
    pht.assert_better(ph_candidate, ph_baseline, X_test, y_test, metric="roc_auc", resamples=300)

@pytest.mark.ph_model("models:/churn@challenger", baseline="models:/churn@champion")
def test_challenger_is_better(ph_candidate, ph_baseline, X_test, y_test):
    pht.assert_better(ph_candidate, ph_baseline, X_test, y_test, metric="roc_auc", resamples=300)

@pytest.mark.ph_model("models:/churn/1", "models:/churn/2")
def test_each_version_valid(ph_model, ph_reference, X_test):
    assert ph_model.inputs
    pht.assert_valid(X_test, ph_reference)

def test_unmarked(ph_model):
    pass
""",
    )
    junit = pytester.path / "report.xml"
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", f"--junitxml={junit}", "--ph-registry", uri
    )
    result.assert_outcomes(passed=4, failed=3, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*models:/churn/3 has no stored reference*",
            "*test_unmarked*marked with @pytest.mark.ph_model*",
            "*assert_predictions_close: outputs label differ beyond tolerance*",
            "*label*flip rate <= 0.02*",
            "*accuracy: candidate*difference +0.0000*does not clear*",
            "*roc_auc: candidate*baseline*interval*does not clear*",
        ]
    )
    # the marker ran the version test once per URI
    names = [c.get("name") for c in ET.parse(junit).getroot().iter("testcase")]
    assert "test_each_version_valid[models:/churn/1]" in names
    assert "test_each_version_valid[models:/churn/2]" in names
    # JUnit properties: each check of a test, passed or failed with its summary
    props = {
        (c.get("name"), p.get("name")): p.get("value")
        for c in ET.parse(junit).getroot().iter("testcase")
        for p in c.iter("property")
    }
    champion = "test_champion_is_better[models:/churn@champion]"
    assert props[(champion, "pilothouse.assert_better")] == "passed"
    failed = props[
        ("test_challenger_is_better[models:/churn@challenger]", "pilothouse.assert_better")
    ]
    assert failed.startswith("failed: roc_auc: candidate"), failed


def test_server_fixture_serves_the_registry_and_stops(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        test_model="""
import requests
import pilothouse as ph

URL = []

def test_served(ph_registry, ph_server, X_test):
    from conftest import NUM, y
    from sklearn.linear_model import LogisticRegression
    ph_registry.log_model(LogisticRegression().fit(NUM, y), "churn", input_example=NUM[:2])
    ph.deploy("churn", version=1, registry=ph_registry)
    assert ph_server.url.startswith("http://127.0.0.1:")
    URL.append(ph_server.url)
    body = {"inputs": [{"name": "X", "shape": [1, 2], "datatype": "FP32", "data": [40.0, 50.0]}]}
    for _ in range(100):
        r = requests.post(f"{ph_server.url}/v2/models/churn/infer", json=body, timeout=5)
        if r.status_code == 200:
            break
        import time; time.sleep(0.1)
    assert r.status_code == 200, r.text
    assert {o["name"] for o in r.json()["outputs"]} >= {"label"}

def test_stopped_after():
    with __import__("pytest").raises(requests.ConnectionError):
        requests.get(f"{URL[0]}/v2/health/ready", timeout=2)
""",
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=2)


def test_reproducibility_is_checked_by_training_twice(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
import numpy as np
import pilothouse.testing as pht
from sklearn.ensemble import RandomForestClassifier
from conftest import NUM, y

def test_seeded():
    pht.assert_reproducible(lambda d: RandomForestClassifier(5, random_state=1).fit(d, y), data=NUM)

def test_unseeded():
    seeds = iter(range(100))
    pht.assert_reproducible(
        lambda d: RandomForestClassifier(5, random_state=next(seeds)).fit(d, y), data=NUM, runs=3
    )
""",
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*assert_reproducible: training is not reproducible*",
            "*run*output*rows_differing*",
            "*2*probabilities*",
            "*3*probabilities*",
        ]
    )


def test_bad_arguments_are_refused_with_a_reason() -> None:
    import numpy as np
    import pandas as pd

    import pilothouse.testing as pht
    from pilothouse.errors import ValidationError

    # no rows: the columns are still checked
    ref = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]})
    pht.assert_valid(ref.iloc[:0], ref)
    with pytest.raises(pht.CheckFailed, match="a, zzz") as failed:
        pht.assert_valid(pd.DataFrame({"b": pd.Series([], dtype=str), "zzz": []}), ref)
    assert {(r["column"], r["check"]) for r in failed.value.result.rows} == {
        ("a", "missing_column"),
        ("zzz", "extra_column"),
    }

    # NaN against a number differs; NaN against NaN and equal infinities do not
    class Fixed:
        def __init__(self, values: list[float]) -> None:
            self.values = np.array(values)

        def predict(self, X: object) -> np.ndarray:
            return self.values

    same = [np.nan, np.inf, 1.0]
    pht.assert_predictions_close(Fixed(same), Fixed(same), None)
    with pytest.raises(pht.CheckFailed) as failed:
        pht.assert_predictions_close(Fixed([np.nan, 1.0]), Fixed([2.0, 1.0]), None)
    assert failed.value.result.rows[0]["rows_differing"] == 1
    assert failed.value.result.rows[0]["max_abs_diff"] == np.inf
    models = iter([Fixed([np.nan]), Fixed([0.3])])
    with pytest.raises(pht.CheckFailed, match="not reproducible"):
        pht.assert_reproducible(lambda d: next(models), data=None)

    with pytest.raises(ValidationError, match="max_failure_rate"):
        pht.assert_valid({"a": [1.0]}, {"a": [1.0]}, max_failure_rate=2.0)
    with pytest.raises(ValidationError, match="runs must be at least 2"):
        pht.assert_reproducible(lambda d: None, data=None, runs=1)
    with pytest.raises(ValidationError, match="confidence"):
        pht.assert_better(None, None, None, [0, 1], confidence=1.5)


def test_the_plugin_is_registered_by_installing(tmp_path: Path) -> None:
    from importlib.metadata import entry_points

    assert any(e.value == "pilothouse.testing.plugin" for e in entry_points(group="pytest11"))
