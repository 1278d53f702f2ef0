"""The demo page at `/` of `mixllm serve` (serve/page.py, serve/static/) and what it relies on.

1. A chat completion may answer a decision `/v1/route` made (`"mixllm": {"decision_id": ...}`):
   forwarded to that decision's LLM without routing again, recorded on that decision, refused
   when it is unknown (404), for another query (400) or answered already (409), and falling back
   as usual when that LLM fails. Real app and fake provider over loopback.
2. The page's files: served without a key, with strict headers, small, nothing from elsewhere.
3. The page in a real headless Chromium (Debian's chromium + chromedriver via selenium) against a
   real `mixllm serve` process with keys on, its LLMs behind a fake OpenAI-compatible provider:
   the key prompt, a sample query's decision table (one row per LLM, the API's choice
   highlighted), your own query's streamed answer, thumbs down landing in the store, screenshots
   at 1280 and 360 px (kept under $MIXLLM_TEST_ARTIFACTS, default tests/artifacts/), and the
   network log: nothing but 127.0.0.1, the page's files under 100 KB.

No test depends on timing: every wait is for a DOM condition (generous timeouts).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import httpx
import pytest
import yaml
from conftest import CHAT, CODE

pytest.importorskip("fastapi")

STATIC = Path(__file__).resolve().parent.parent / "mixllm_cli" / "serve" / "static"
ARTIFACTS = Path(os.environ.get("MIXLLM_TEST_ARTIFACTS") or Path(__file__).parent / "artifacts")
MAX_PAGE_BYTES = 100 * 1024


# ------------------------------------------------------------------ 1. answering a routed decision


@pytest.fixture
def upstream():
    from serving import fake_upstream, serving

    app, seen = fake_upstream()
    with serving(app) as url:
        yield url, seen


def _point_at(home, url, models=None):
    """Every LLM of the home's catalogue behind `url`, as upstream model `<id>-2025` (or `models[id]`)."""
    cat = yaml.safe_load((home / "models.yaml").read_text())
    for entry in cat["llms"]:
        name = (models or {}).get(entry["id"], entry["id"].replace("/", "-") + "-2025")
        if name is None:
            entry.pop("base_url", None)
            continue
        entry.update(base_url=url + "/v1", upstream_model=name)
    (home / "models.yaml").write_text(yaml.safe_dump(cat, sort_keys=False))


@pytest.fixture
def served(trained_home, upstream):
    from serving import serving

    from mixllm_cli.serve.app import Service, create_app

    _point_at(trained_home, upstream[0])
    with serving(create_app(Service(trained_home))) as url:
        yield url


def _store(home):
    from mixllm_cli.state.sqlite import StateStore

    return StateStore.for_home(home)


def _route(url, query, budget):
    r = httpx.post(url + "/v1/route", json={"query": query, "budget": budget}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def _chat(url, query, decision_id, *, stream=False, model="mixllm:high"):
    body = {"model": model, "messages": [{"role": "user", "content": query}], "stream": stream,
            "mixllm": {"decision_id": decision_id}}
    r = httpx.post(url + "/v1/chat/completions", json=body, timeout=60)
    return r


def _wait_for(fn, what, timeout=30.0):
    """Poll `fn` until it returns something truthy (the server records usage after the answer ends)."""
    deadline = time.monotonic() + timeout
    while True:
        out = fn()
        if out:
            return out
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.parametrize("stream", [False, True])
def test_a_chat_answers_the_routed_decision_without_routing_again(served, upstream, trained_home, stream):
    d = _route(served, CHAT[0], "very-low")
    decisions_before = _store(trained_home).stats()["decisions"]
    r = _chat(served, CHAT[0], d["decision_id"], stream=stream)  # model says high: the decision's budget wins
    assert r.status_code == 200, r.text
    assert r.headers["x-mixllm-llm"] == d["choice"]
    assert r.headers["x-mixllm-decision-id"] == d["decision_id"]
    assert r.headers["x-mixllm-fallback-from"] == ""
    sent = upstream[1][-1]["body"]
    assert "mixllm" not in sent  # ours: never forwarded
    assert sent["model"] == d["choice"].replace("/", "-") + "-2025"
    if stream:
        chunks = [json.loads(line[5:]) for line in r.text.splitlines()
                  if line.startswith("data:") and line.strip() != "data: [DONE]"]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        info = chunks[0]["mixllm"]
    else:
        text, info = r.json()["choices"][0]["message"]["content"], r.json()["mixllm"]
    assert text == "answer from " + sent["model"]
    assert info["decision_id"] == d["decision_id"] and info["budget"] == "very-low"
    conn = _store(trained_home).conn
    row = _wait_for(lambda: conn.execute("SELECT response_tokens, latency_ms FROM latency_observations "
                                         "WHERE decision_id = ?", (d["decision_id"],)).fetchone(), "the usage")
    assert row[0] == 3 and row[1] > 0  # the real usage, on the routed decision itself
    assert conn.execute("SELECT done_s FROM jobs WHERE decision_id = ?", (d["decision_id"],)).fetchone()[0]
    assert _store(trained_home).stats()["decisions"] == decisions_before  # not routed again


def test_a_routed_decision_is_answered_once_and_for_its_own_query(served, trained_home):
    d = _route(served, CODE[0], "high")
    r = _chat(served, CODE[1], d["decision_id"])
    assert r.status_code == 400 and "another query" in r.json()["error"]["message"]
    assert r.json()["error"]["param"] == "mixllm.decision_id"
    assert _chat(served, CODE[0], d["decision_id"]).status_code == 200
    conn = _store(trained_home).conn
    _wait_for(lambda: conn.execute("SELECT 1 FROM latency_observations WHERE decision_id = ?",
                                   (d["decision_id"],)).fetchone(), "the usage")
    again = _chat(served, CODE[0], d["decision_id"])
    assert again.status_code == 409 and "already answered" in again.json()["error"]["message"]
    unknown = _chat(served, CODE[0], "d0123456789abcde")
    assert unknown.status_code == 404 and "unknown decision id" in unknown.json()["error"]["message"]
    bad = httpx.post(served + "/v1/chat/completions", timeout=30, json={
        "model": "mixllm", "messages": [{"role": "user", "content": CODE[0]}], "mixllm": {"decision": "x"}})
    assert bad.status_code == 422


def test_a_second_request_for_a_decision_being_answered_is_refused(trained_home, upstream):
    """Two clicks on one answer: the second is refused at once, before the first has ended (the
    store does not know yet; the replica does)."""
    from serving import serving

    from mixllm_cli.serve.app import Service, create_app

    _point_at(trained_home, upstream[0])
    service = Service(trained_home)
    with serving(create_app(service)) as url:
        d = _route(url, CODE[2], "high")
        assert service.claim(d["decision_id"])  # as the first request does
        r = _chat(url, CODE[2], d["decision_id"])
        assert r.status_code == 409


@pytest.mark.parametrize("trouble", ["fails", "has no endpoint"])
def test_when_the_routed_llm_fails_the_query_falls_back(trained_home, upstream, trouble):
    from serving import serving

    from mixllm_cli.serve.app import Service, create_app

    with serving(create_app(Service(trained_home))) as probe:  # which LLM a very-low chat query goes to
        first = _route(probe, CHAT[1], "very-low")["choice"]
    _point_at(trained_home, upstream[0], {first: "broken" if trouble == "fails" else None})
    with serving(create_app(Service(trained_home))) as url:
        d = _route(url, CHAT[1], "very-low")
        assert d["choice"] == first
        r = _chat(url, CHAT[1], d["decision_id"])
        assert r.status_code == 200, r.text
        assert r.headers["x-mixllm-fallback-from"] == first
        assert r.headers["x-mixllm-llm"] != first
        other = r.headers["x-mixllm-decision-id"]
        assert other != d["decision_id"] and r.json()["mixllm"]["budget"] == "very-low"  # the decision's budget
    row = _store(trained_home).routed_decision(d["decision_id"])
    assert row["ended"]  # the failed call freed its slot: it cannot be answered again
    assert _store(trained_home).routed_decision(other)["llm"] == r.headers["x-mixllm-llm"]


# ------------------------------------------------------------------ 2. the page's files


@pytest.fixture
def keyed_app(trained_home):
    from fastapi.testclient import TestClient

    from mixllm_cli.serve.app import Service, create_app
    from mixllm_cli.serve.auth import Auth

    with TestClient(create_app(Service(trained_home), auth=Auth(trained_home)),
                    raise_server_exceptions=False) as c:
        yield c


def test_the_page_is_served_without_a_key_with_strict_headers(keyed_app):
    from mixllm_cli.serve.page import FILES

    c = keyed_app
    r = c.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["referrer-policy"] == "no-referrer"
    for name in FILES:
        f = c.get("/static/" + name)
        assert f.status_code == 200, name
        assert f.content == (STATIC / name).read_bytes() and f.headers["x-content-type-options"] == "nosniff"
    assert c.head("/").status_code == 200
    assert c.get("/static/nope.js").status_code == 404
    assert c.get("/static/../v1/llms").status_code in (401, 404)  # never the API without a key
    assert c.get("/static/..%2Fv1%2Fllms").status_code == 404
    assert c.get("/v1/llms").status_code == 401  # the data still needs the key


def test_the_page_files_are_small_self_contained_and_build_no_html_from_data():
    from mixllm_cli.serve.page import FILES

    assert {p.name for p in STATIC.iterdir()} == set(FILES)  # nothing shipped that is not served
    assert sum((STATIC / n).stat().st_size for n in FILES) < MAX_PAGE_BYTES
    html = (STATIC / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html) and "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+=", html)  # no inline handlers (the CSP would block them anyway)
    js = (STATIC / "app.js").read_text()
    assert "innerHTML" not in js and "outerHTML" not in js and "insertAdjacentHTML" not in js and "eval(" not in js
    for name in FILES:
        text = (STATIC / name).read_text()
        urls = re.findall(r"https?://[^\s\"'<>)]+", text)
        assert all(u.startswith("http://www.w3.org/2000/svg") for u in urls), (name, urls)  # nothing fetched
    samples = json.loads((STATIC / "samples.json").read_text())["samples"]
    assert {s["task"] for s in samples} == {"arc-challenge", "winogrande", "mbpp"}


def test_the_package_data_lists_the_page():
    """A wheel carries the page (pyproject's package-data), not only the editable source tree."""
    import tomllib

    conf = tomllib.loads((STATIC.parents[2] / "pyproject.toml").read_text())
    assert conf["tool"]["setuptools"]["package-data"]["mixllm_cli.serve"] == ["static/*"]


# ------------------------------------------------------------------ 3. the page in a real browser


def _browser_or_skip():
    from browser import missing

    why = missing()
    if why is not None:
        if os.environ.get("CI") == "1":
            pytest.fail(f"CI=1 and the browser tests cannot run: {why}")
        pytest.skip(why)


FAKES = {"big": "fake-strong", "vendor/small": "fake-cheap", "mid": "fake-mid"}


@pytest.fixture(scope="module")
def demo(tiny_world, tiny_trained, tmp_path_factory, encoder_cache):
    """A real `mixllm serve` (keys on) over a copy of the trained tiny home whose three LLMs call the
    fake provider; yields its URL, the home and a key. Slots are many, so one call does not change
    the next decision."""
    _browser_or_skip()
    from browser import free_port, start_serve, stop
    from fake_openai import serve_fake

    from mixllm_cli.state import open_store
    from mixllm_cli.state.keys import create_key

    root = tmp_path_factory.mktemp("demo")
    home = root / "home"
    shutil.copytree(tiny_trained, home, ignore=shutil.ignore_patterns("state.sqlite3*"))
    shutil.copy(tiny_world / "models.yaml", home / "models.yaml")
    env = {**os.environ, "MIXLLM_HOME": str(home), "MIXLLM_DEFAULT_ARTIFACTS": str(tiny_world / "shipped"),
           "MIXLLM_ENCODER_CACHE": str(encoder_cache), "MIXLLM_PROGRESS": "off"}
    with serve_fake() as (fake_url, fake):
        cat = yaml.safe_load((home / "models.yaml").read_text())
        for entry in cat["llms"]:
            entry.update(base_url=fake_url, upstream_model=FAKES[entry["id"]], slots=64)
        (home / "models.yaml").write_text(yaml.safe_dump(cat, sort_keys=False))
        store = open_store(home)
        try:
            key = create_key(store, "demo-page")[1]
        finally:
            store.close()
        port = free_port()
        proc = start_serve(home, port, env, root / "serve.log")
        try:
            yield {"url": f"http://127.0.0.1:{port}", "home": home, "key": key, "fake": fake}
        finally:
            stop(proc)


@pytest.fixture(scope="module")
def driver(demo):
    from browser import chrome

    d = chrome()
    try:
        yield d
    finally:
        d.quit()


def _wait(driver, condition, timeout=90):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def _text(driver, element_id):
    return driver.find_element("id", element_id).text


def _open(driver, demo, key=None):
    """Load the page in a fresh tab state; enter the key when it asks for one."""
    driver.get(demo["url"] + "/static/favicon.svg")  # this origin, no script running: forget the last key
    driver.execute_script("sessionStorage.clear()")
    driver.get_log("performance")  # the network log starts with the load below
    driver.get_log("browser")
    driver.get(demo["url"] + "/")
    _wait(driver, lambda d: d.find_element("id", "key-section").is_displayed())  # keys are on: it asks
    field = driver.find_element("id", "key")
    assert field.get_attribute("type") == "password"
    field.send_keys(key or demo["key"])
    driver.find_element("css selector", "#key-form button[type=submit]").click()


def _ready(driver):
    _wait(driver, lambda d: d.execute_script("return document.documentElement.dataset.ready === 'true'"))


def _api_route(demo, query, budget):
    r = httpx.post(demo["url"] + "/v1/route", json={"query": query, "budget": budget}, timeout=60,
                   headers={"authorization": "Bearer " + demo["key"]})
    assert r.status_code == 200, r.text
    return r.json()


def _decision_rows(driver):
    return driver.find_elements("css selector", "#decision-rows tr")


def test_a_wrong_key_gets_a_clear_message_and_the_key_stays_out_of_the_url(driver, demo):
    _open(driver, demo, key="mxk_not-a-key")
    _wait(driver, lambda d: "401" in _text(d, "error"))
    assert "API key" in _text(driver, "error")
    assert driver.find_element("id", "key-section").is_displayed()
    assert "mxk_" not in driver.current_url


def test_a_sample_query_shows_every_llm_and_the_apis_choice(driver, demo):
    from selenium.webdriver.support.ui import Select

    _open(driver, demo)
    _ready(driver)
    assert driver.execute_script("return sessionStorage.getItem('mixllm.key')") == demo["key"]
    sample = Select(driver.find_element("id", "sample"))
    _wait(driver, lambda d: len(sample.options) > 1)
    sample.select_by_index(3)  # a winogrande one
    query = driver.find_element("id", "query").get_attribute("value")
    assert query and "_" in query
    budget = Select(driver.find_element("id", "budget"))
    assert [o.get_attribute("value") for o in budget.options] == ["very-low", "low", "medium", "high"]
    budget.select_by_value("high")
    expected = _api_route(demo, query, "high")  # the API's decision for the same query and budget, first
    driver.find_element("id", "run").click()
    _wait(driver, lambda d: d.find_element("id", "decision").get_attribute("data-decision-id"))
    rows = _decision_rows(driver)
    assert sorted(r.get_attribute("data-llm") for r in rows) == sorted(FAKES)  # one row per LLM of the pool
    chosen = [r for r in rows if r.get_attribute("aria-selected") == "true"]
    assert len(chosen) == 1 and chosen[0].get_attribute("data-llm") == expected["choice"]
    assert "→ chosen" in chosen[0].text
    assert all("→ chosen" not in r.text for r in rows if r is not chosen[0])
    assert f"Chosen: {expected['choice']}" in _text(driver, "decision-summary")
    cells = chosen[0].find_elements("tag name", "td")
    want = next(c for c in expected["candidates"] if c["llm"] == expected["choice"])
    assert float(cells[0].text) == pytest.approx(want["predicted_quality"], abs=1e-3)
    assert float(cells[1].text) == pytest.approx(want["predicted_cost_usd"] * 100, rel=0.06)  # cents
    # the live panel lists the pool with its load
    _wait(driver, lambda d: len(d.find_elements("css selector", "#live-rows tr")) == len(FAKES))


def test_your_own_query_streams_the_answer_and_thumbs_down_lands_in_the_store(driver, demo):
    from selenium.webdriver.common.keys import Keys

    from mixllm_cli.state import open_store

    _open(driver, demo)
    _ready(driver)
    box = driver.find_element("id", "query")
    box.clear()
    box.send_keys(CHAT[0])
    box.send_keys(Keys.ENTER)  # Enter runs
    _wait(driver, lambda d: d.find_element("id", "answer").get_attribute("data-done") == "true")
    table_decision = driver.find_element("id", "decision").get_attribute("data-decision-id")
    answer = driver.find_element("id", "answer")
    llm = answer.get_attribute("data-llm")
    assert answer.get_attribute("data-decision-id") == table_decision  # the table's decision answered
    assert llm == driver.find_element("id", "decision").get_attribute("data-choice")
    said = f"I am {FAKES[llm]}, a fake model; I only do arithmetic. The answer is 42."
    assert answer.text == said  # streamed from the chosen LLM's fake
    assert demo["fake"].calls[(FAKES[llm], CHAT[0])] == 1
    driver.find_element("id", "bad").click()
    _wait(driver, lambda d: "Recorded" in _text(d, "feedback-status"))
    assert driver.find_element("id", "bad").get_attribute("aria-pressed") == "true"
    store = open_store(demo["home"])
    try:
        rows = store.conn.execute("SELECT llm, good FROM feedback WHERE decision_id = ? AND kind = 'binary'",
                                  (table_decision,)).fetchall()
        usage = _wait_for(lambda: store.conn.execute(
            "SELECT response_tokens FROM latency_observations WHERE decision_id = ?",
            (table_decision,)).fetchone(), "the usage")
    finally:
        store.close()
    assert [(r[0], r[1]) for r in rows] == [(llm, 0)]  # binary feedback: bad, for the decision that answered
    assert usage[0] == len(said.split())


def test_screenshots_layout_and_network_log(driver, demo):
    from browser import network, set_width

    _open(driver, demo)
    _ready(driver)
    box = driver.find_element("id", "query")
    box.clear()
    box.send_keys("write a python function to sum two numbers")
    driver.find_element("id", "run").click()
    _wait(driver, lambda d: d.find_element("id", "answer").get_attribute("data-done") == "true")
    _wait(driver, lambda d: len(d.find_elements("css selector", "#live-rows tr")) == len(FAKES))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for width in (1280, 360):
        set_width(driver, width)
        _wait(driver, lambda d, w=width: d.execute_script("return window.innerWidth") == w)
        page_w = driver.execute_script("return document.documentElement.scrollWidth")
        assert page_w <= width, f"the page scrolls sideways at {width} px ({page_w} px wide)"
        assert driver.find_element("id", "decision").is_displayed()
        set_width(driver, width, driver.execute_script("return document.documentElement.scrollHeight"))  # whole page
        assert driver.save_screenshot(str(ARTIFACTS / f"demo-page-{width}.png"))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    requests = network(driver)
    assert requests, "the performance log recorded nothing"
    origin = demo["url"]
    outside = [r["url"] for r in requests if not r["url"].startswith(origin + "/")]
    assert not outside, outside  # nothing left 127.0.0.1
    page = [r for r in requests if r["url"] == origin + "/" or r["url"].startswith(origin + "/static/")]
    page_bytes = sum(r["bytes"] for r in page)
    assert 0 < page_bytes < MAX_PAGE_BYTES, page
    assert all(r["status"] in (200, 304) for r in page), [(r["url"], r["status"]) for r in page]
    # keep the numbers with the screenshots
    (ARTIFACTS / "demo-page-network.json").write_text(json.dumps(
        {"page_bytes": page_bytes, "page_requests": len(page), "requests": requests}, indent=1))
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"
              and not (e["source"] == "network" and "/v1/models" in e["message"] and "401" in e["message"])]
    assert not errors, errors  # no CSP violation, no script error (the 401 before the key is the key prompt)
