"""The pages in a real browser (Debian's chromium, driven by Selenium through chromium-driver): Compare
shows the verdict the judge gives, Debate argues, Loop's Retrain moves the progress bar and a decision
appears, Models renders a report. A screenshot of each page is saved in the test's temporary folder.

Skipped, saying so, where chromium or chromium-driver is not installed (`.ci/run` installs both)."""

import shutil
import time

import pytest
from test_judge import tiny_model_dir
from test_loop import needs_corpus
from test_serve import bootstrapped, live_server  # noqa: F401 - the fixture is shared

from touchstone.judge import Judge
from touchstone.serve import ServeConfig

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)",
)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    # --no-sandbox: chromium's own sandbox cannot start as root (CI runs as root).
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory.mktemp("browser-model"))


def wait(driver, condition, timeout=120):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def shoot(driver, path):
    """A screenshot of the whole page (the window grown to the page's height)."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(800, min(height + 120, 4000)))
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 1000)
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_compare_page_shows_the_judges_verdict_and_the_tool(browser, model_dir, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    with live_server(ServeConfig(workspace=str(tmp_path / "ws"), model=str(model_dir))) as url:
        browser.get(url + "/")
        browser.find_element(By.ID, "prompt").send_keys("What is 17 plus 25?")
        browser.find_element(By.ID, "a").send_keys("42")
        browser.find_element(By.ID, "b").send_keys("43")
        browser.find_element(By.ID, "judge-button").click()
        wait(browser, EC.visibility_of_element_located((By.ID, "result")))
        verdict = browser.find_element(By.ID, "verdict")
        expected = Judge.load(model_dir).pair("42", "43", prompt="What is 17 plus 25?")
        assert verdict.get_attribute("data-choice") == expected["choice"]
        assert verdict.text.startswith(f"The model prefers {expected['choice'].upper()} (confidence ")
        tool = browser.find_element(By.ID, "tool-verdict").text
        assert "numbers tool says A" in tool and "The true value is 42" in tool
        shoot(browser, tmp_path / "compare.png")
        # A mistake shows in the page, not as raw JSON.
        browser.find_element(By.ID, "a").clear()
        browser.execute_script("document.getElementById('a').removeAttribute('required')")
        browser.find_element(By.ID, "judge-button").click()
        error = wait(browser, EC.visibility_of_element_located((By.ID, "judge-error")))
        assert "body.a" in error.text and "HTTP 422" in error.text


def test_debate_page_argues_with_the_figures(browser, model_dir, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    with live_server(ServeConfig(workspace=str(tmp_path / "ws"), model=str(model_dir))) as url:
        browser.get(url + "/debate")
        browser.find_element(By.ID, "debate-button").click()
        wait(browser, EC.visibility_of_element_located((By.ID, "debate-result")))
        assert browser.find_element(By.ID, "debate-verdict").text.startswith("The model chooses design ")
        assert "L/D" in browser.find_element(By.ID, "figures").text
        assert "The case for" in browser.find_element(By.ID, "argument").text
        wait(browser, lambda d: d.execute_script("return document.getElementById('drawing').naturalWidth") > 0)
        span_b = browser.find_element(By.NAME, "b.span").get_attribute("value")
        browser.find_element(By.ID, "random-b").click()
        wait(
            browser,
            lambda d: (
                d.find_element(By.NAME, "b.span").get_attribute("value") != span_b
                or d.find_element(By.NAME, "b.airfoil").get_attribute("value") != "naca0012"
                or d.find_element(By.NAME, "b.sweep").get_attribute("value") != "5"
            ),
        )
        shoot(browser, tmp_path / "debate.png")


@needs_corpus
def test_loop_page_retrain_moves_the_progress_bar_to_a_decision(browser, bootstrapped, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By

    root = tmp_path / "ws"
    shutil.copytree(bootstrapped, root)
    with live_server(ServeConfig(workspace=str(root))) as url:
        browser.get(url + "/loop")
        assert browser.find_element(By.ID, "champion").text == "gen-0000"
        assert not browser.find_elements(By.CSS_SELECTOR, "#decisions tbody tr")
        browser.find_element(By.ID, "retrain").click()
        seen, deadline = [], time.monotonic() + 300
        while not browser.find_elements(By.CSS_SELECTOR, "#decisions tbody tr"):
            assert time.monotonic() < deadline, f"no decision appeared; progress seen: {seen}"
            value = browser.find_element(By.ID, "progress").get_attribute("data-percent")
            if value is not None and (not seen or seen[-1] != float(value)):
                seen.append(float(value))
            time.sleep(0.1)
        row = browser.find_element(By.CSS_SELECTOR, "#decisions tbody tr").text
        assert row.startswith("1 ") and ("promoted" in row or "rejected" in row)
        wait(browser, lambda d: d.find_element(By.ID, "retrain").is_enabled())  # finished: the button is back
        assert len(seen) >= 2 and seen == sorted(seen), seen  # it moved, forwards
        assert float(browser.find_element(By.ID, "progress").get_attribute("data-percent")) == 100.0
        wait(browser, lambda d: d.execute_script("return document.getElementById('history-plot').naturalWidth") > 0)
        shoot(browser, tmp_path / "loop.png")
        browser.get(url + "/models/gen-0001")
        assert "Fine-tuning report" in browser.find_element(By.TAG_NAME, "main").text
        shoot(browser, tmp_path / "models.png")
