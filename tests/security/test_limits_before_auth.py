"""Item 6: request sizes, header sizes, header deadlines and the number of connections are
limited before anything is authenticated, parsed or buffered."""

from __future__ import annotations

import time

import httpx

from tests.security.conftest import (
    AUTH,
    HEADER_TIMEOUT_S,
    MAX_CONCURRENCY,
    raw_connection,
    read_until_closed,
)


def test_a_large_report_without_a_token_is_refused_from_its_content_length(server):
    with raw_connection(server) as sock:
        # The head announces 57 MB; not one byte of the body is sent.
        sock.sendall(
            b"POST /api/v1/trials/x/reports HTTP/1.1\r\nHost: ktsweep\r\n"
            b"Content-Type: application/json\r\nContent-Length: 57000000\r\n\r\n"
        )
        answer = read_until_closed(sock, timeout_s=15)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"KTSWEEP_MAX_REPORT_BYTES" in answer


def test_a_large_heartbeat_is_refused_from_its_content_length(server):
    response = httpx.post(
        f"{server.url}/api/v1/trials/x/heartbeat", content=b"{" + b" " * 200_000 + b"}", timeout=30
    )
    assert response.status_code == 413, response.text[:300]


def test_a_spec_over_the_limit_is_refused_from_its_content_length(server):
    with raw_connection(server) as sock:
        sock.sendall(
            b"POST /api/v1/sweeps HTTP/1.1\r\nHost: ktsweep\r\nAuthorization: "
            + AUTH["Authorization"].encode()
            + b"\r\nContent-Type: application/yaml\r\nContent-Length: 200000000\r\n\r\n"
        )
        answer = read_until_closed(sock, timeout_s=15)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"KTSWEEP_MAX_SPEC_BYTES" in answer


def test_a_chunked_spec_over_the_limit_is_refused_while_it_is_read(server):
    def chunks():  # no Content-Length: sent chunked
        for _ in range(64):
            yield b"# " + b"x" * 65_000 + b"\n"

    response = httpx.post(
        f"{server.url}/api/v1/sweeps",
        content=chunks(),
        headers={**AUTH, "Content-Type": "application/yaml"},
        timeout=60,
    )
    assert response.status_code == 413, response.text[:300]


def test_a_header_over_the_limit_is_refused_before_it_ends(server):
    refused = False
    with raw_connection(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: ktsweep\r\nX-Padding: ")
        try:
            for _ in range(64):  # 4 MB of one header value, never ended
                sock.sendall(b"a" * 65_536)
        except (BrokenPipeError, ConnectionResetError):
            refused = True  # closed by the server while the header was still coming
        if not refused:
            answer = read_until_closed(sock, timeout_s=15)
            assert answer == b"" or answer.startswith(b"HTTP/1.1 431"), answer[:300]


def test_a_connection_that_sends_nothing_is_closed(server):
    with raw_connection(server) as sock:
        answer = read_until_closed(sock, timeout_s=HEADER_TIMEOUT_S + 15)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer[:300]


def test_a_connection_that_trickles_its_headers_is_closed(server):
    head = b"GET /healthz HTTP/1.1\r\nHost: ktsweep\r\nX-Slow: " + b"a" * 500
    with raw_connection(server) as sock:
        deadline = time.monotonic() + HEADER_TIMEOUT_S + 15
        for byte in head:  # a byte every 0.2 s: each arrives well within any idle timeout
            assert time.monotonic() < deadline, "the server still reads the trickled headers"
            try:
                sock.sendall(bytes([byte]))
                sock.settimeout(0.2)
                answer = sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                return  # closed by the server
            assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer[:300]
            return
    raise AssertionError("the server read every trickled byte of the headers")


def test_connections_beyond_the_concurrency_limit_get_503(server):
    idle = [raw_connection(server) for _ in range(MAX_CONCURRENCY)]
    try:
        time.sleep(0.5)  # let the server accept them
        response = httpx.get(f"{server.url}/healthz", timeout=15)
        assert response.status_code == 503, response.text[:300]
    finally:
        for sock in idle:
            sock.close()
    # Once they are gone, the server answers again.
    for _ in range(50):
        if httpx.get(f"{server.url}/healthz", timeout=15).status_code == 200:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the server kept refusing after the idle connections closed")
