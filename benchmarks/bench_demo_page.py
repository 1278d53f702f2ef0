"""The demo page at `/` of `mixllm serve`, timed in a real headless Chromium (the tests' setup:
tests/browser.py, Debian's chromium + chromedriver through selenium).

    python benchmarks/bench_demo_page.py [--runs 20] [--delay-scale 0] [--write out.json]

Set-up: a fresh home on the shipped default (the real encoder and the 11 RouterBench LLMs), every
LLM behind the fake OpenAI-compatible provider (tests/fake_openai.py, loopback; `--delay-scale 0`
answers at once, so what is measured is mixllm and the browser; 1 adds the fakes' own TTFT of
100-400 ms), a real `mixllm serve` process with keys on, the page opened and the key typed in.

Each run: pick a query (the page's six samples, then two short own queries, in turn), press Run,
wait until the answer has ended. The page marks `performance.now()` on `window.mixllmTimings`:
Run pressed → decision table shown (POST /v1/route, rendering) → first answer token (POST
/v1/chat/completions answering that decision, relayed from the fake) → answer complete. Printed:
median and p90 of each over the runs, and the page's own cost from the browser's network log (the
page's files: requests and bytes transferred, headers included; the API calls listed apart).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

OWN = ["What is 12 plus 30?", "Explain in one sentence why the sky is blue."]


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def _setup_home(home: Path, fake_url: str) -> str:
    """Every LLM of the shipped catalogue behind the fake (three fake models in turn); returns a key."""
    from mixllm_cli.catalogue import load_catalogue
    from mixllm_cli.cli import run
    from mixllm_cli.paths import catalogue_path
    from mixllm_cli.state import open_store
    from mixllm_cli.state.keys import create_key

    fakes = ["fake-strong", "fake-mid", "fake-cheap"]
    for k, llm in enumerate(load_catalogue(catalogue_path(home, None))):
        with contextlib.redirect_stdout(io.StringIO()):  # its JSON line per LLM is not ours to print
            code = run(["set-endpoint", llm.id, "--base-url", fake_url, "--upstream-model", fakes[k % 3],
                        "--home", str(home)])
        if code != 0:
            raise SystemExit(f"set-endpoint {llm.id} failed")
    store = open_store(home)
    try:
        return create_key(store, "bench-demo-page")[1]
    finally:
        store.close()


def _wait(driver: object, condition: object, timeout: float = 120.0) -> object:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.02).until(condition)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--delay-scale", type=float, default=0.0, help="the fakes' latency scale (0: answer at once)")
    ap.add_argument("--write", default=None, help="also write the results as JSON here")
    args = ap.parse_args(argv)

    from browser import chrome, free_port, missing, network, start_serve, stop
    from fake_openai import serve_fake
    from selenium.webdriver.support.ui import Select

    why = missing()
    if why:
        raise SystemExit(why)
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp, \
            serve_fake(delay_scale=args.delay_scale) as (fake_url, _fake):
        root = Path(tmp)
        home = root / "home"
        env = {k: v for k, v in os.environ.items() if k not in ("MIXLLM_HOME", "MIXLLM_DEFAULT_ARTIFACTS")}
        env["MIXLLM_PROGRESS"] = "off"
        key = _setup_home(home, fake_url)
        port = free_port()
        proc = start_serve(home, port, env, root / "serve.log")
        driver = chrome()
        try:
            url = f"http://127.0.0.1:{port}/"
            started = time.perf_counter()
            driver.get(url)
            _wait(driver, lambda d: d.find_element("id", "key-section").is_displayed())
            load_s = time.perf_counter() - started
            driver.find_element("id", "key").send_keys(key)
            driver.find_element("css selector", "#key-form button[type=submit]").click()
            _wait(driver, lambda d: d.execute_script("return document.documentElement.dataset.ready === 'true'"))
            requests = network(driver)
            page = [r for r in requests if r["url"] == url or r["url"].startswith(url + "static/")]
            outside = [r["url"] for r in requests if not r["url"].startswith(url)]
            sample = Select(driver.find_element("id", "sample"))
            n_samples = len(sample.options) - 1
            runs: list[dict[str, float]] = []
            for i in range(args.runs):
                box = driver.find_element("id", "query")
                k = i % (n_samples + len(OWN))
                if k < n_samples:
                    sample.select_by_index(1 + k)
                else:
                    box.clear()
                    box.send_keys(OWN[k - n_samples])
                driver.find_element("id", "run").click()
                _wait(driver, lambda d: d.find_element("id", "answer").get_attribute("data-done") == "true")
                t = driver.execute_script("return window.mixllmTimings")
                runs.append({"table_ms": t["table"] - t["run"], "first_token_ms": t["firstToken"] - t["run"],
                             "done_ms": t["done"] - t["run"]})
        finally:
            driver.quit()
            stop(proc)
    out = {
        "runs": len(runs), "delay_scale": args.delay_scale,
        "page_load_to_key_prompt_ms": round(load_s * 1000, 1),
        "page_requests": len(page), "page_bytes": sum(r["bytes"] for r in page),
        "page_files": {r["url"].removeprefix(url) or "/": r["bytes"] for r in page},
        "requests_outside_loopback": outside,
        **{f"{m}_{stat}": round(fn(v), 1) for m in ("table_ms", "first_token_ms", "done_ms")
           for v in [[r[m] for r in runs]]
           for stat, fn in (("p50", statistics.median), ("p90", lambda x: _pct(x, 0.9)))},
    }
    print(json.dumps(out, indent=1))
    if args.write:
        Path(args.write).write_text(json.dumps({**out, "per_run": runs}, indent=1) + "\n")


if __name__ == "__main__":
    main()
