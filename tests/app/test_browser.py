"""The page in a real browser (headless Chromium from the system, driven by Selenium): it loads,
composes, shows the score, plays while marking the notes, downloads a MIDI file that parses, and
continues an uploaded file. Skipped, saying why, where Chromium or its driver is missing."""
import shutil
import threading
import time

import pretty_midi
import pytest

from bachsformer.app.server import App, make_server
from bachsformer.app.studio import Studio
from conftest import N, write_midi

webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs selenium (the [test] extra)")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                reason="the browser test needs Debian's chromium and chromium-driver (apt install "
                                       "chromium chromium-driver; .ci/run installs them)")


@pytest.fixture(scope="module")
def page(tiny_plan_pair, tmp_path_factory):
    from selenium.webdriver.chrome.service import Service

    from test_server import _decoding_a_note_a_frame

    app = App(Studio(tiny_plan_pair, "cpu"), tmp_path_factory.mktemp("browser-out"))
    model = app.studio.model("goldberg")
    model.vae.decode_pieces = _decoding_a_note_a_frame(model.grid.frame_shape)
    httpd = make_server(app, "127.0.0.1", 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,1200", "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)  # the system driver: nothing downloaded
    driver.get(f"http://127.0.0.1:{httpd.server_address[1]}/")
    wait_for(driver, "return document.body.dataset.loaded === '1'")
    yield driver, downloads
    driver.quit()
    httpd.shutdown()
    httpd.server_close()


def wait_for(driver, script, seconds=60):
    end = time.time() + seconds
    while time.time() < end:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {script}; status: {driver.find_element('id', 'status').text}")


def pieces(driver) -> int:
    """Pieces finished so far: shown, with their audio ready to play."""
    return int(driver.execute_script("return Number(document.body.dataset.done || 0)"))


def test_compose_plays_shows_the_score_and_downloads(page):
    driver, downloads = page
    driver.find_element("id", "form").send_keys("through")
    driver.find_element("id", "bars").clear()
    driver.find_element("id", "bars").send_keys("4")
    driver.find_element("id", "seed").send_keys("21")
    driver.find_element("id", "compose").click()
    wait_for(driver, "return document.body.dataset.done === '1'")  # score shown, audio ready to play
    assert driver.find_element("id", "seed-used").text == "seed 21"
    assert "done in" in driver.find_element("id", "status").text
    assert driver.find_elements("css selector", "#score svg")  # the engraved score
    wait_for(driver, "return document.getElementById('audio').readyState >= 2")
    driver.execute_script("document.getElementById('audio').play()")
    wait_for(driver, "return document.getElementById('audio').currentTime > 0.3")
    wait_for(driver, "return document.querySelectorAll('#score .playing').length > 0")  # what plays is marked
    driver.execute_script("document.getElementById('audio').pause()")
    driver.find_element("id", "download-midi").click()
    end = time.time() + 20
    while not list(downloads.glob("*.mid")) and time.time() < end:
        time.sleep(0.1)
    midi = pretty_midi.PrettyMIDI(str(next(downloads.glob("*.mid"))))
    assert sum(len(i.notes) for i in midi.instruments) > 0


def test_an_uploaded_file_is_continued(page, tmp_path):
    driver, _ = page
    theme = write_midi(tmp_path / "theme.mid", [N(60 + (k * 7) % 12, k / 2, k / 2 + 0.5) for k in range(24)],
                       time_signatures=((0.0, 3, 4),))
    before = pieces(driver)
    driver.find_element("id", "upload").send_keys(str(theme))
    wait_for(driver, "return document.getElementById('status').textContent.includes('is ready')")
    assert "theme.mid: 4 bars" in driver.find_element("id", "upload-info").text
    driver.find_element("id", "continue").click()
    wait_for(driver, f"return Number(document.body.dataset.done) > {before}")
    assert "continuing theme.mid: done" in driver.find_element("id", "status").text


def test_a_bad_upload_is_said_in_the_page(page, tmp_path):
    driver, _ = page
    bad = tmp_path / "notes.mid"
    bad.write_bytes(b"this is not MIDI")
    driver.find_element("id", "upload").send_keys(str(bad))
    wait_for(driver, "return document.getElementById('status').className === 'error'")
    assert "notes.mid: not a MIDI file" in driver.find_element("id", "status").text
    assert driver.find_element("id", "compose").is_enabled()  # the page goes on
