"""The browser page's speed and the server under load, with the bundled model loaded once:

    python -m benchmarks.app [--composes 5] [--clients 50] [--json FILE]

- first paint: `first-contentful-paint` of the page in headless Chromium (where installed);
- Compose to playable audio and visible score: the page's own clock, from the click to the
  moment the audio can play and the score's SVG is in the page (`document.body.dataset`), the
  median over `--composes` pieces of the default form;
- load: `--clients` Compose requests at once from local threads; every one must be answered
  (accepted and finished, or refused as busy), none lost; the server process's peak RSS.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request

from bachsformer.app.server import App, make_server
from bachsformer.app.studio import Studio


def _post(url: str, body: dict) -> tuple:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=600) as response:
        return json.loads(response.read())


def browser_figures(base: str, composes: int) -> dict:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1200"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get(base + "/")
        while driver.execute_script("return document.body.dataset.loaded") != "1":
            time.sleep(0.02)
        paint = None
        while paint is None:  # the entry appears once the paint is done, which may be after "loaded"
            paint = driver.execute_script("const e = performance.getEntriesByType('paint')"
                                          ".filter(e => e.name === 'first-contentful-paint')[0]; return e && e.startTime")
            time.sleep(0.02)
        seconds = []
        for k in range(composes):
            driver.execute_script(f"document.getElementById('seed').value = {1000 + k}")
            before = int(driver.execute_script("return Number(document.body.dataset.done || 0)"))
            driver.find_element("id", "compose").click()
            while int(driver.execute_script("return Number(document.body.dataset.done || 0)")) == before:
                time.sleep(0.1)  # the page times itself; asking more often only takes CPU from the server
            seconds.append(float(driver.execute_script("return document.body.dataset.composeSeconds")))
        return {"first_paint_s": paint / 1000, "compose_to_audio_and_score_s": statistics.median(seconds),
                "compose_runs_s": seconds, "seeds": [1000 + k for k in range(composes)]}
    finally:
        driver.quit()


def load_figures(base: str, clients: int) -> dict:
    answers = [None] * clients

    def client(i):
        answers[i] = _post(base + "/api/compose", {"seed": 5000 + i})

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    accepted = [body["job"] for status, body in answers if status == 202]
    busy = [body for status, body in answers if status == 503 and body.get("busy")]
    finished = {}
    while len(finished) < len(accepted):
        for job in accepted:
            if job not in finished:
                state = _get(f"{base}/api/jobs/{job}")
                if state["state"] in ("done", "failed"):
                    finished[job] = state["state"]
        time.sleep(0.2)
    return {"clients": clients, "accepted": len(accepted), "refused_busy": len(busy),
            "other_answers": clients - len(accepted) - len(busy), "finished_done": sum(s == "done" for s in finished.values()),
            "lost": len(accepted) - len(finished), "all_answered_s": time.perf_counter() - started,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.app", description=__doc__.splitlines()[0])
    parser.add_argument("--composes", type=int, default=5)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    app = App(Studio(device="cpu"))
    app.jobs.warm.wait()  # as a user would find it: the page opened a few seconds after the server
    server = make_server(app, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    figures = {"model_loaded_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "load_average_start": os.getloadavg()}  # another process on the cores slows every figure
    if shutil.which("chromedriver") and (shutil.which("chromium") or shutil.which("chromium-browser")):
        figures["browser"] = browser_figures(base, args.composes)
    else:
        figures["browser"] = "skipped: no chromium and chromedriver"
    figures["load_average_after_browser"] = os.getloadavg()
    figures["load"] = load_figures(base, args.clients)
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
