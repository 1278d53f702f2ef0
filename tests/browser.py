"""Headless Chromium from the system's packages, driven by selenium, for the demo page's tests and
benchmarks/bench_demo_page.py: the Debian `chromium` and `chromium-driver` binaries, never a
downloaded driver (selenium's manager is bypassed by naming the driver's path), and the browser's
network log (Chrome's performance log) to check where the page went and what it cost.

Also: start a real `mixllm serve` process and wait until it answers.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("MIXLLM_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("MIXLLM_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
ROOT = Path(__file__).resolve().parent.parent


def missing() -> str | None:
    """Why no browser test can run here (None: it can)."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).is_file() and os.access(path, os.X_OK)) and shutil.which(path) is None:
            return f"{path} is missing (Debian: apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    return None


def chrome(width: int = 1280, height: int = 900) -> Any:
    """A headless Chromium with its performance (network) log on."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-extensions",
                "--lang=en-US"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)


def set_width(driver: Any, width: int, height: int = 900) -> None:
    """Lay the page out at `width` CSS pixels, as a phone (360) or a desktop (1280) would."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})


def network(driver: Any) -> list[dict[str, Any]]:
    """The requests since the last call (the log is drained): url, method, type, status and the bytes
    transferred (encoded, headers included), from the performance log's Network events."""
    seen: dict[str, dict[str, Any]] = {}
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        method, params = msg.get("method", ""), msg.get("params", {})
        rid = params.get("requestId")
        if method == "Network.requestWillBeSent":
            seen[rid] = {"url": params["request"]["url"], "method": params["request"]["method"],
                         "type": params.get("type"), "status": None, "bytes": 0}
        elif method == "Network.responseReceived" and rid in seen:
            seen[rid]["status"] = params["response"]["status"]
        elif method == "Network.loadingFinished" and rid in seen:
            seen[rid]["bytes"] = int(params.get("encodedDataLength", 0))
    return list(seen.values())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_serve(home: Path, port: int, env: dict[str, str], log: Path, *extra: str) -> subprocess.Popen[bytes]:
    """`mixllm serve` on 127.0.0.1:`port` (keys on unless `extra` says --no-auth); waits for /healthz."""
    cmd = [sys.executable, "-m", "mixllm_cli", "serve", "--port", str(port), "--home", str(home), *extra]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=out, env={**env, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"mixllm serve exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.terminate()
            raise RuntimeError(f"mixllm serve did not answer within 120 s: {log.read_text()[-2000:]}")
        time.sleep(0.2)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
