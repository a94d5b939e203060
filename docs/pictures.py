"""Make the README's pictures and sound again from the bundled weights (run it whenever they change):

    python docs/pictures.py [--goldberg DIR]

- docs/listen.png, docs/listen.wav: the binary variation of seed 1, its piano roll and first eight bars;
- docs/regenerate.png, docs/harmonise.png, docs/variation.png: the three ways of working on your own
  music, on Goldberg Variation 10 (held out of training) and a held-out chorale melody;
- docs/app.png: the browser page after Compose (where Chromium and its driver are installed).
"""
from __future__ import annotations

import argparse
import copy
import shutil
import tempfile
import threading
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent


def listen(model) -> None:
    from bachsformer.audio import write_wav
    from bachsformer.plots import describe

    piece = model.generate(seed=1)[0]  # a binary variation: A twice, B twice, 16 bars each
    piece.to_png(DOCS / "listen.png", describe(piece.midi, "bachsformer, seed 1"))
    excerpt = copy.deepcopy(piece.midi)
    end = excerpt.get_end_time() * 8 / 64  # the first eight bars
    for instrument in excerpt.instruments:
        instrument.notes = [n for n in instrument.notes if n.start < end]
        for n in instrument.notes:
            n.end = min(n.end, end)
    write_wav(excerpt, DOCS / "listen.wav", sample_rate=22050)


def own_music(model, goldberg: Path) -> None:
    from ludovico_vae.midi import Score, read_midi, score_to_midi

    variation_10 = goldberg / "988-v10.mid"
    piece = model.regenerate(variation_10, [(9, 12)], seed=3)[0]
    piece.to_png(DOCS / "regenerate.png", "Variation 10 (held out), bars 9-12 regenerated: kept in blue, new in red")
    with tempfile.TemporaryDirectory() as folder:  # the first 16 bars of its top line, as a tune to harmonise
        score = read_midi(variation_10)
        first = score.notes.start < 16 * 4
        tune = Path(folder) / "tune.mid"
        score_to_midi(Score(score.notes.select(first), score.ticks_per_beat, score.tempos, score.time_signatures)).write(str(tune))
        model.harmonise(tune, seed=2)[0].to_png(DOCS / "harmonise.png", "Variation 10's first 16 bars, its top line "
                                                "(blue) harmonised (red)")
        model.variation(tune, "rhythm", seed=2)[0].to_png(DOCS / "variation.png", "The same bars, their rhythm kept "
                                                          "and every pitch new")


def app_screenshot() -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from bachsformer.app.server import App, make_server
    from bachsformer.app.studio import Studio

    app = App(Studio(device="cpu"))
    server = make_server(app, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1300,1000", "--hide-scrollbars"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get(f"http://127.0.0.1:{server.server_address[1]}/")
        while driver.execute_script("return document.body.dataset.loaded") != "1":
            time.sleep(0.05)
        driver.find_element("id", "seed").send_keys("7")
        driver.find_element("id", "compose").click()
        while driver.execute_script("return document.body.dataset.done") != "1":
            time.sleep(0.05)
        driver.execute_script("const a = document.getElementById('audio'); a.currentTime = 4.2; "
                              "a.dispatchEvent(new Event('seeked'))")
        time.sleep(0.5)
        driver.save_screenshot(str(DOCS / "app.png"))
    finally:
        driver.quit()
        server.shutdown()


def main() -> None:
    from bachsformer import Bachsformer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--goldberg", default=str(DOCS.parent / "data" / "midi" / "goldberg"),
                        help="the Goldberg files (default: data/midi/goldberg, where `python -m bachsformer.corpus "
                             "goldberg` puts them)")
    args = parser.parse_args()
    model = Bachsformer.from_checkpoints(device="cpu")
    listen(model)
    own_music(model, Path(args.goldberg))
    if shutil.which("chromium") and shutil.which("chromedriver"):
        app_screenshot()


if __name__ == "__main__":
    main()
