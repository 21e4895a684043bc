"""The console in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium):
log in, open every page, launch a short training job and watch it finish, compare two runs, register,
promote and roll back, rate and correct an answer in the playground. Screenshots of each page go to
$TUNELOOM_SCREENSHOTS (default: a pytest temporary folder)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CHAT_TASK, CLS_TASK

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def console_url(console_ws) -> Iterator[str]:
    """The console served by uvicorn on loopback, in a thread of this process."""
    import uvicorn

    from tuneloom.config import load_project
    from tuneloom.ui import create_console

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_console(load_project(console_ws.config)), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM or not DRIVER:
        pytest.skip(
            "no Chromium here: install Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)"
        )
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not try to download a browser
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900", "--disable-gpu"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("TUNELOOM_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _wait(predicate, timeout: float = 20.0, what: str = "") -> None:
    """Poll until `predicate()` holds; a page that is being replaced meanwhile (a stale or missing element, or
    Chromium's "node does not belong to the document") just means: not yet."""
    from selenium.common.exceptions import WebDriverException

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if predicate():
                return
        except WebDriverException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _h1(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "h1").text


def test_console_in_chromium(browser, console_url, console_ws, shots):
    from selenium.webdriver.common.by import By

    d = browser
    d.get(console_url + "/runs")
    assert _h1(d) == "Log in to the console"
    d.save_screenshot(str(shots / "login.png"))
    d.find_element(By.ID, "key").send_keys(console_ws.admin_key)
    d.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    _wait(lambda: _h1(d) == "Runs", what="the runs page after login")
    for path, title, shot in (
        ("/", "Project tiny-project", "project"),
        ("/data", "Data", "data"),
        ("/eval", "Evaluation and gate", "evaluation"),
        ("/registry", "Registry", "registry"),
        ("/feedback", "Feedback review", "feedback"),
        ("/scout", "Scout", "scout"),
    ):
        d.get(console_url + path)
        assert _h1(d) == title
        d.save_screenshot(str(shots / f"{shot}.png"))
    d.find_element(By.TAG_NAME, "body").send_keys("\t")  # keyboard: the first Tab reaches the skip link
    assert d.switch_to.active_element.text == "Skip to content"
    d.get(console_url + "/data")
    d.find_element(By.PARTIAL_LINK_TEXT, "(latest)").click() if d.find_elements(By.PARTIAL_LINK_TEXT, "(latest)") else None
    d.find_element(By.CSS_SELECTOR, f"#task-{CLS_TASK} tbody th a").click()
    assert "dataset" in _h1(d)
    d.save_screenshot(str(shots / "dataset.png"))
    evaluated = sorted(p.name for p in (console_ws.workspace / "runs").iterdir() if p.name.startswith(CLS_TASK))[0]
    d.get(f"{console_url}/runs/{evaluated}/eval")
    assert _h1(d) == f"Evaluation of {evaluated}" and "✓ passed" in d.find_element(By.ID, "main").text
    d.save_screenshot(str(shots / "eval.png"))
    _launch_and_watch(d, console_url, shots)
    _compare(d, console_url, shots)
    _promote_and_roll_back(d, console_url, console_ws, shots)
    _playground(d, console_url, console_ws, shots)  # and the review of its correction


def _launch_and_watch(d, console_url: str, shots: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    d.get(console_url + "/runs")
    Select(d.find_element(By.ID, "kind")).select_by_value("train")
    Select(d.find_element(By.ID, "task")).select_by_value(CLS_TASK)
    d.find_element(By.ID, "overrides").send_keys("train.max_steps=1")
    d.find_element(By.CSS_SELECTOR, "#launch button[type=submit]").click()
    _wait(lambda: _h1(d).startswith("Job "), what="the job page")
    _wait(lambda: d.find_element(By.ID, "job-log").text.strip() != "", 30, "the job's log to stream in")
    d.save_screenshot(str(shots / "job-running.png"))
    _wait(lambda: "completed" in d.find_element(By.ID, "job-state").text, 150, "the training job to finish")
    _wait(lambda: d.find_elements(By.CSS_SELECTOR, "#job-chart svg"), 10, "the loss chart")
    assert "✓ completed" in d.find_element(By.ID, "job-state").text  # the page reloaded with the final state
    d.save_screenshot(str(shots / "job-done.png"))


def _compare(d, console_url: str, shots: Path) -> None:
    from selenium.webdriver.common.by import By

    d.get(console_url + "/runs")
    boxes = [
        b for b in d.find_elements(By.CSS_SELECTOR, "input[name=run][type=checkbox]") if CLS_TASK in b.get_attribute("value")
    ]
    assert len(boxes) >= 2
    for box in (boxes[0], boxes[-1]):  # the run trained from the browser, the evaluated one
        box.click()
    d.find_element(By.XPATH, "//button[text()='Compare the ticked runs']").click()
    _wait(lambda: _h1(d) == "Compare runs", what="the comparison")
    body = d.find_element(By.TAG_NAME, "main").text
    assert "train.max_steps" in body and "accuracy" in body
    assert len(d.find_elements(By.CSS_SELECTOR, "svg.chart polyline")) >= 2  # curves overlaid
    d.save_screenshot(str(shots / "compare.png"))


def _promote_and_roll_back(d, console_url: str, console_ws, shots: Path) -> None:
    """Register the evaluated run (gate passed) and the run trained from the browser (no gate), promote the
    first, promote the second with a reason, roll back to the first."""
    from selenium.webdriver.common.by import By

    runs = sorted(p.name for p in (console_ws.workspace / "runs").iterdir() if p.name.startswith(CLS_TASK))
    versions = {}
    for run in (runs[0], runs[-1]):
        d.get(f"{console_url}/runs/{run}")
        d.find_element(By.XPATH, "//button[text()='Register as a new version']").click()
        _wait(lambda: _h1(d) in (CLS_TASK, "Not done"), what="the model page")  # "Not done": registered already
        d.get(f"{console_url}/registry/{CLS_TASK}")
        row = d.find_element(By.XPATH, f"//tr[.//a[text()='{run}']]")
        versions[run] = int(row.get_attribute("id")[1:])
    gated, fresh = versions[runs[0]], versions[runs[-1]]
    if f"version {gated}" not in d.find_element(By.ID, "production").text:
        d.find_element(By.XPATH, f"//button[text()='Promote version {gated}']").click()
        _wait(lambda: f"version {gated}" in d.find_element(By.ID, "production").text, what="the first promotion")
    reason = d.find_element(By.ID, f"reason-{fresh}")
    assert reason.get_attribute("required") is not None  # no gate result: a reason is required
    reason.send_keys("browser test: ship the short run")
    d.find_element(By.XPATH, f"//button[text()='Promote version {fresh}']").click()
    _wait(lambda: f"version {fresh}" in d.find_element(By.ID, "production").text, what="the forced promotion")
    d.find_element(By.ID, "rollback-reason").send_keys("browser test rollback")
    d.find_element(By.XPATH, "//button[text()='Roll back production']").click()
    _wait(lambda: f"version {gated}" in d.find_element(By.ID, "production").text, what="the rollback")
    assert "browser test rollback" in d.find_element(By.TAG_NAME, "main").text
    d.save_screenshot(str(shots / "registry-model.png"))


def _playground(d, console_url: str, console_ws, shots: Path) -> None:
    """Base, tuned and production answer; the production answer is corrected, then reviewed in the queue."""
    from selenium.webdriver.common.by import By

    d.get(f"{console_url}/playground?task={CHAT_TASK}")
    d.find_element(By.ID, "prompt").send_keys("How do I reset the Smart Plug?")
    d.find_element(By.XPATH, "//button[text()='Ask all three']").click()
    _wait(lambda: d.find_elements(By.ID, "answer-production"), 120, "the answers")
    assert d.find_elements(By.ID, "answer-base") and d.find_elements(By.ID, "answer-tuned")
    d.find_element(By.ID, "correction-production").send_keys("Hold the button for ten seconds.")
    d.find_element(By.XPATH, "//section[@aria-labelledby='side-production']//button[@value='down']").click()
    _wait(lambda: "Feedback saved" in d.find_element(By.TAG_NAME, "main").text, what="the saved feedback")
    d.save_screenshot(str(shots / "playground.png"))
    d.get(f"{console_url}/feedback?task={CHAT_TASK}")
    d.find_element(By.XPATH, "//button[text()='Queue new feedback']").click()
    item = "//article[.//dd[contains(., 'Hold the button for ten seconds.')]]"
    _wait(lambda: d.find_elements(By.XPATH, item), what="the correction in the review queue")
    d.save_screenshot(str(shots / "feedback-queue.png"))
    article_id = d.find_element(By.XPATH, item).get_attribute("id")
    d.find_element(By.XPATH, f"//article[@id='{article_id}']//button[@value='accept']").click()
    _wait(lambda: not d.find_elements(By.ID, article_id), what="the accepted item to leave the pending list")
    d.get(f"{console_url}/feedback?task={CHAT_TASK}&state=accepted")
    assert d.find_elements(By.ID, article_id)
