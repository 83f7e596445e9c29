"""verbose=True shows the steps without any logging set-up, once; Step C runs in chunks of
query cells with a progress line, and chunking changes no result."""

import io
import logging

import numpy as np
import pytest

import cmot.step_c as step_c
from cmot import CMOT
from cmot.datasets import make_multimodal
from cmot.infer import infer_x

pytestmark = pytest.mark.filterwarnings("ignore::cmot.PoorlyMappedWarning")
P = dict(n_neighbors=10, n_pcs=5, random_state=0)
STEP = "cmot: kNN inference (k=10) ..."


@pytest.fixture(scope="module")
def d():
    return make_multimodal(n_source=150, n_target=60, random_state=2)


@pytest.fixture
def cmot_logger():
    log = logging.getLogger("cmot")
    saved = (log.level, log.propagate, list(log.handlers))
    yield log
    assert (log.level, log.propagate, list(log.handlers)) == saved  # the call restored them


def test_verbose_prints_to_stderr_without_logging_setup(d, capsys, cmot_logger):
    # pytest gives the root logger handlers at level WARNING: INFO records of "cmot" reach none of them
    assert not cmot_logger.isEnabledFor(logging.INFO)
    CMOT(**P, verbose=True).fit(d.source_x, d.source_y).predict(d.target_y)
    err = capsys.readouterr().err
    assert err.count(STEP) == 1 and err.count("cmot: inferring chunk 1/1") == 1
    assert "cmot: feature scores (leave-one-out on the source) ..." in err
    CMOT(**P).fit(d.source_x, d.source_y).predict(d.target_y)  # quiet
    assert capsys.readouterr().err == ""


def test_configured_logging_gets_the_messages_once_and_nothing_is_printed(d, cmot_logger, capsys, caplog):
    caplog.set_level(logging.INFO, logger="cmot")
    CMOT(**P, verbose=True).fit(d.source_x, d.source_y).predict(d.target_y)
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count(STEP) == 1 and messages.count("cmot: inferring chunk 1/1") == 1
    assert STEP not in capsys.readouterr().err


def test_a_root_handler_of_the_user_prints_each_message_once(d, capsys, monkeypatch, cmot_logger):
    root = logging.getLogger()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    monkeypatch.setattr(root, "handlers", [handler])
    old_level = root.level
    root.setLevel(logging.INFO)  # as logging.basicConfig(level=logging.INFO, stream=...)
    try:
        CMOT(**P, verbose=True).fit(d.source_x, d.source_y).predict(d.target_y)
    finally:
        root.setLevel(old_level)  # (setLevel, not an attribute: it clears the loggers' caches)
    assert stream.getvalue().count(STEP) == 1
    assert STEP not in capsys.readouterr().err


def test_chunked_step_c_equals_unchunked():
    rng = np.random.default_rng(0)
    target, mapped = rng.normal(size=(53, 4)), rng.normal(size=(80, 4))
    x = rng.normal(size=(80, 6))
    whole = infer_x(target, mapped, x, 7, weight_scale=0.8, shrinkage=0.3, x_mean=x.mean(axis=0))
    for size in (1, 10, 53, 1000):
        got, votes = step_c.infer_chunked(target, mapped, x, 7, weight_scale=0.8, shrinkage=0.3,
                                          x_mean=x.mean(axis=0), chunk_size=size)
        np.testing.assert_allclose(got, whole, rtol=0, atol=1e-13)  # BLAS blocks differ: rounding only
        assert votes == []


def test_predict_in_chunks_gives_the_same_results_and_shows_progress(d, capsys, monkeypatch, cmot_logger):
    model = CMOT(**P, verbose=True).fit(d.source_x, d.source_y, labels=d.source_labels)
    whole = model.predict(d.target_y)
    scores = model.predicted_label_scores_["labels"]
    capsys.readouterr()
    monkeypatch.setattr(step_c, "CHUNK_SIZE", 7)
    np.testing.assert_allclose(model.predict(d.target_y), whole, rtol=0, atol=1e-12)
    np.testing.assert_allclose(model.predicted_label_scores_["labels"].to_numpy(), scores.to_numpy(), atol=1e-12)
    err = capsys.readouterr().err
    assert [f"cmot: inferring chunk {i}/9" in err for i in range(1, 10)] == [True] * 9


def test_handlers_of_the_cmot_logger_keep_their_level(d, capsys, cmot_logger):
    # an application (the command line's --quiet, the R package) set up the "cmot" logger itself
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    cmot_logger.addHandler(handler)
    cmot_logger.setLevel(logging.WARNING)
    cmot_logger.propagate = False
    try:
        CMOT(**P, verbose=True).fit(d.source_x, d.source_y).predict(d.target_y)
    finally:
        cmot_logger.removeHandler(handler)
        cmot_logger.setLevel(logging.NOTSET)
        cmot_logger.propagate = True
    assert STEP not in stream.getvalue() and STEP not in capsys.readouterr().err
