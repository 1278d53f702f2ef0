"""Bounded work per request (issue 16, item 5): a cap on a route batch's characters, a big batch
routed in slices while /healthz and small requests are answered, deadlines on reading a request's
body and headers, and a cap on header size. Real app on a real uvicorn (tests/serving.py), raw
sockets for the slow clients. No timing assertions: each test only bounds how long it waits."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import pytest
from conftest import CHAT, CODE

pytest.importorskip("fastapi")

WAIT_S = 60.0  # how long a test waits for what must happen; a hang fails the test instead of the suite


@pytest.fixture
def service(trained_home):
    from mixllm_cli.serve.app import Service

    svc = Service(trained_home)
    yield svc
    svc.close()


@pytest.fixture
def url(service, monkeypatch):
    """The app on a loopback port, with a 1 s body deadline (the default is 10 s: same code, shorter wait)."""
    from serving import serving

    from mixllm_cli.serve import limits
    from mixllm_cli.serve.app import create_app

    monkeypatch.setattr(limits, "BODY_TIMEOUT_S", 1.0)
    with serving(create_app(service)) as base:
        yield base


def port_of(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


def post(base: str, path: str, body: object, timeout: float = WAIT_S) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port_of(base), timeout=timeout)
    try:
        conn.request("POST", path, json.dumps(body), {"content-type": "application/json"})
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"null")
    finally:
        conn.close()


def get(base: str, path: str) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port_of(base), timeout=WAIT_S)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


def decisions(base: str) -> int:
    status, health = get(base, "/healthz")
    assert status == 200
    return health["decisions"]


def read_until_closed(sock: socket.socket, trickle: bytes = b"") -> bytes:
    """Everything the server sends until it closes the connection, sending one byte of `trickle`
    every 0.1 s meanwhile (a slow client). Fails if the server neither answers nor closes in WAIT_S."""
    sock.settimeout(0.1)
    got = b""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if trickle:
            try:
                sock.sendall(trickle[:1])
                trickle = trickle[1:]
            except OSError:
                trickle = b""  # the server closed its side
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            return got  # reset: closed
        if not chunk:
            return got
        got += chunk
    raise AssertionError(f"the server neither answered nor closed the connection in {WAIT_S:.0f} s (got {got!r})")


# ---------------------------------------------------------------- a cap on a batch's characters


def test_a_batch_over_the_character_cap_is_a_413_and_routes_nothing(url):
    from mixllm_cli.routing.request import MAX_QUERY_CHARS
    from mixllm_cli.serve.limits import MAX_BODY_BYTES, MAX_ROUTE_CHARS

    n = MAX_ROUTE_CHARS // MAX_QUERY_CHARS + 1  # each query allowed on its own, the body under its byte limit
    queries = [{"query": (CODE[0] + " ") * (MAX_QUERY_CHARS // (len(CODE[0]) + 1))} for _ in range(n)]
    total = sum(len(q["query"]) for q in queries)
    assert total > MAX_ROUTE_CHARS and len(json.dumps({"queries": queries})) < MAX_BODY_BYTES
    status, body = post(url, "/v1/route", {"queries": queries})
    assert status == 413
    assert body["error"]["type"] == "request_too_large" and body["error"]["param"] == "queries"
    assert f"{total:,} characters" in body["error"]["message"] and f"{MAX_ROUTE_CHARS:,}" in body["error"]["message"]
    assert decisions(url) == 0
    # the same queries, fewer at a time, are routed
    status, body = post(url, "/v1/route", {"queries": queries[: n - 1]})
    assert status == 200 and len(body["decisions"]) == n - 1


# ---------------------------------------------------------------- a big batch does not starve the others


def test_healthz_and_a_small_route_are_answered_while_a_big_batch_is_routed(url, service):
    """The first slice of a big batch is held (in whatever thread routes it) until /healthz has answered
    and a small request has been sent: with the batch routed on the event loop, as before, /healthz could
    not answer until the hold ran out. The small request is answered before the big batch, which has
    further slices to go."""
    from mixllm_cli.serve.service import ON_LOOP_CHARS, SLICE_CHARS

    real = service.router.route_batch
    held, release = threading.Event(), threading.Event()

    def slow_first_slice(requests, **kw):
        if not held.is_set():
            held.set()
            release.wait(WAIT_S)  # the test sets it; WAIT_S only if it never does
        return real(requests, **kw)

    service.router.route_batch = slow_first_slice
    long_query = " ".join((CODE + CHAT) * 40)[:2000]
    big = {"queries": [{"query": f"{long_query} {i}", "id": str(i)} for i in range(64)]}
    assert sum(len(q["query"]) for q in big["queries"]) > 2 * SLICE_CHARS > ON_LOOP_CHARS
    done: list[tuple[str, int]] = []

    def send(name: str, body: object) -> None:
        done.append((name, post(url, "/v1/route", body)[0]))

    big_thread = threading.Thread(target=send, args=("big", big))
    big_thread.start()
    assert held.wait(WAIT_S)
    small_thread = threading.Thread(target=send, args=("small", {"query": CHAT[1], "id": "small"}))
    try:
        status, health = get(url, "/healthz")  # while the first slice is held
        assert status == 200 and health["status"] == "ok"
        assert not done  # the big batch is still in flight
        small_thread.start()
        deadline = time.monotonic() + WAIT_S
        while len(service._pending) < 2:  # the small request waits behind the held slice
            assert time.monotonic() < deadline, "the small request never reached the queue"
            time.sleep(0.01)
    finally:
        release.set()
        big_thread.join(WAIT_S)
        if small_thread.is_alive() or small_thread.ident is not None:
            small_thread.join(WAIT_S)
    assert sorted(done) == [("big", 200), ("small", 200)]
    assert [name for name, _ in done] == ["small", "big"]  # it went between the big batch's slices
    assert decisions(url) == 65


def test_a_request_routed_in_slices_keeps_its_order_and_ids(service, url):
    """Slices are an implementation detail: a batch bigger than one gets the decisions it would get whole,
    in order, and the queue sees each slice's load."""
    long_query = " ".join((CODE + CHAT) * 40)[:3000]
    queries = [{"query": f"{long_query} {i}", "id": f"q{i}"} for i in range(40)]
    status, body = post(url, "/v1/route", {"queries": queries, "lambda": 1000, "max_wait_s": 1000})
    assert status == 200
    assert [d["id"] for d in body["decisions"]] == [q["id"] for q in queries]
    assert len({d["decision_id"] for d in body["decisions"]}) == 40
    waits = [next(c["expected_wait_ms"] for c in d["candidates"] if c["llm"] == d["choice"]) for d in body["decisions"]]
    assert waits[-1] > waits[0]  # later queries queue behind earlier ones, across slices too


# ---------------------------------------------------------------- slow bodies


def raw_request(base: str, headers: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port_of(base)), timeout=WAIT_S)
    sock.sendall(headers)
    return sock


def test_a_body_sent_a_byte_at_a_time_gets_a_408_and_is_not_waited_out(url):
    body = json.dumps({"query": CODE[0]}).encode() + b" " * 200
    sock = raw_request(url, b"POST /v1/route HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                            b"content-length: %d\r\n\r\n" % len(body))
    try:
        got = read_until_closed(sock, trickle=body)  # one byte per 0.1 s: 20 s for the whole body
    finally:
        sock.close()
    assert got.startswith(b"HTTP/1.1 408 ")
    assert json.loads(got.split(b"\r\n\r\n", 1)[1])["error"]["type"] == "request_timeout"
    assert decisions(url) == 0


def test_a_declared_length_larger_than_the_body_gets_a_408(url):
    body = json.dumps({"query": CODE[0]}).encode()
    sock = raw_request(url, b"POST /v1/route HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                            b"content-length: %d\r\n\r\n%s" % (len(body) + 100, body))
    try:
        got = read_until_closed(sock)
    finally:
        sock.close()
    assert got.startswith(b"HTTP/1.1 408 ")
    assert decisions(url) == 0


def test_bodies_held_at_once_are_capped_and_released(service, monkeypatch):
    """Many slow bodies cannot take the memory: past the bytes all requests in progress may hold, a 503;
    once the slow one is answered (408), its bytes are free again."""
    from serving import serving

    from mixllm_cli.serve import limits
    from mixllm_cli.serve.app import create_app

    monkeypatch.setattr(limits, "BODY_TIMEOUT_S", 3.0)
    monkeypatch.setattr(limits, "MAX_BUFFERED_BYTES", 1000)
    app = create_app(service)
    with serving(app) as base:
        assert get(base, "/healthz")[0] == 200  # builds the middleware stack
        guard = app.middleware_stack
        while not isinstance(guard, limits.BodyLimit):
            guard = guard.app
        slow = raw_request(base, b"POST /v1/route HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                                 b"content-length: 900\r\n\r\n" + b" " * 800)  # 100 bytes never come
        try:
            deadline = time.monotonic() + WAIT_S
            while guard._held < 800:  # the server holds what was sent
                assert time.monotonic() < deadline
                time.sleep(0.01)
            status, body = post(base, "/v1/route", {"query": CODE[0], "pad": " " * 400})
            assert status == 503 and body["error"]["type"] == "unavailable"
            assert read_until_closed(slow).startswith(b"HTTP/1.1 408 ")
        finally:
            slow.close()
        status, body = post(base, "/v1/route", {"query": CODE[0], "id": "after"})
        assert status == 200 and body["id"] == "after"


def test_a_body_that_arrives_in_time_is_served_as_before(url):
    status, body = post(url, "/v1/route", {"query": CODE[0], "id": "a"})
    assert status == 200 and body["id"] == "a"


# ---------------------------------------------------------------- headers and connections (uvicorn's settings)


@pytest.fixture
def guarded(service):
    """The app on uvicorn with `limits.uvicorn_limits` (what `serve` passes): a 1 s header timeout, 4
    connections. Yields its URL and the uvicorn server."""
    import uvicorn

    from mixllm_cli.serve.app import create_app
    from mixllm_cli.serve.limits import uvicorn_limits

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(create_app(service), log_level="warning", access_log=False,
                            **uvicorn_limits(limit_concurrency=4, timeout_keep_alive_s=5.0, header_timeout_s=1.0))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the test server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", server
    finally:
        server.should_exit = True
        thread.join(WAIT_S)
        sock.close()


def test_a_connection_that_sends_nothing_is_closed(guarded):
    sock = raw_request(guarded[0], b"")
    try:
        assert read_until_closed(sock) == b""
    finally:
        sock.close()


def test_headers_sent_a_byte_at_a_time_are_cut(guarded):
    sock = raw_request(guarded[0], b"")
    try:
        got = read_until_closed(sock, trickle=b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: " + b"a" * 400 + b"\r\n\r\n")
    finally:
        sock.close()
    assert not got.startswith(b"HTTP/1.1 200")


def test_endless_headers_get_a_431(guarded):
    import select

    sock = raw_request(guarded[0], b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
    try:
        for i in range(200):  # up to 200 KB of headers, over the 64 KiB cap; stop once the server answers
            if select.select([sock], [], [], 0)[0]:
                break
            try:
                sock.sendall(b"x-h%d: %s\r\n" % (i, b"a" * 1000))
            except OSError:
                break
        got = read_until_closed(sock)
    finally:
        sock.close()
    assert got.startswith(b"HTTP/1.1 431 ")


def test_kept_alive_and_long_requests_are_not_cut(guarded, service):
    """Requests on one kept-alive connection, and a request that takes longer than the header timeout,
    are served whole."""
    conn = http.client.HTTPConnection("127.0.0.1", port_of(guarded[0]), timeout=WAIT_S)
    real = service.router.route_batch

    def slow(requests, **kw):
        time.sleep(2.5)  # more than two header timeouts
        return real(requests, **kw)

    try:
        for _ in range(3):
            conn.request("GET", "/healthz")
            r = conn.getresponse()
            assert r.status == 200 and json.loads(r.read())["status"] == "ok"
        service.router.route_batch = slow
        conn.request("POST", "/v1/route", json.dumps({"query": CODE[0]}), {"content-type": "application/json"})
        r = conn.getresponse()
        assert r.status == 200 and json.loads(r.read())["choice"]
    finally:
        conn.close()


def test_connections_over_the_limit_get_a_503_until_the_idle_ones_are_closed(guarded):
    url, server = guarded
    idle = [raw_request(url, b"GET /healthz HTTP/1.1\r\nhost: x\r\n") for _ in range(4)]  # headers never end
    try:
        deadline = time.monotonic() + WAIT_S
        while len(server.server_state.connections) < 4:  # the server has taken them
            assert time.monotonic() < deadline
            time.sleep(0.01)
        sock = raw_request(url, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        try:
            got = read_until_closed(sock)
        finally:
            sock.close()
        assert got.startswith(b"HTTP/1.1 503 ")
        for s in idle:
            assert read_until_closed(s) == b""  # the server closes each: no headers within the timeout
    finally:
        for s in idle:
            s.close()
    status, health = get(url, "/healthz")
    assert status == 200 and health["status"] == "ok"


def test_the_limits_refuse_nonsense():
    from mixllm_cli.errors import UsageError
    from mixllm_cli.serve.limits import uvicorn_limits

    for bad in ({"limit_concurrency": 0}, {"header_timeout_s": float("inf")}, {"timeout_keep_alive_s": -1.0}):
        with pytest.raises(UsageError):
            uvicorn_limits(**bad)
