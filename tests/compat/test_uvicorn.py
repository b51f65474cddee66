"""The contract `ktsweep.service.compat.uvicorn` relies on: what uvicorn's httptools protocol
must keep for the limits on request heads to work. A failure names what moved."""

from __future__ import annotations

import inspect
import re

import pytest

httptools_impl = pytest.importorskip("uvicorn.protocols.http.httptools_impl")
HttpToolsProtocol = httptools_impl.HttpToolsProtocol

MOVED = (
    "uvicorn moved what ktsweep.service.compat.uvicorn relies on ({what}); update that module "
    "(the limits on request heads: KTSWEEP_MAX_HEADER_BYTES, KTSWEEP_HEADER_TIMEOUT_S, "
    "KTSWEEP_MAX_CONCURRENCY) for this uvicorn version, then this test."
)


@pytest.mark.parametrize(
    "hook",
    [
        "connection_made",
        "connection_lost",
        "data_received",
        "on_message_begin",
        "on_headers_complete",
    ],
)
def test_the_protocol_still_has_the_hooks_overridden(hook):
    assert callable(getattr(HttpToolsProtocol, hook, None)), MOVED.format(
        what=f"HttpToolsProtocol.{hook}"
    )


def test_the_protocol_still_takes_the_config_first():
    parameters = list(inspect.signature(HttpToolsProtocol.__init__).parameters)
    assert parameters[:2] == ["self", "config"], MOVED.format(
        what=f"HttpToolsProtocol.__init__{parameters}"
    )


@pytest.mark.parametrize("attribute", ["config", "loop", "transport", "cycle", "limit_concurrency"])
def test_the_protocol_still_sets_the_attributes_read(attribute):
    source = inspect.getsource(HttpToolsProtocol.__init__)
    assert re.search(rf"self\.{attribute}\b[^=\n]*= ", source), MOVED.format(
        what=f"HttpToolsProtocol.{attribute}"
    )


def test_limit_concurrency_is_still_read_where_the_head_is_complete():
    source = inspect.getsource(HttpToolsProtocol.on_headers_complete)
    assert "self.limit_concurrency" in source, MOVED.format(
        what="the concurrency check in HttpToolsProtocol.on_headers_complete"
    )


def test_a_response_cycle_still_says_when_it_is_complete():
    source = inspect.getsource(httptools_impl.RequestResponseCycle.__init__)
    assert "self.response_complete =" in source, MOVED.format(
        what="RequestResponseCycle.response_complete"
    )


def test_the_limited_protocol_builds_on_uvicorns():
    from ktsweep.service.compat.uvicorn import LimitedHttpToolsProtocol

    assert issubclass(LimitedHttpToolsProtocol, HttpToolsProtocol)
