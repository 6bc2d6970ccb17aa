"""The live dashboard in a real headless Chromium (Selenium + Debian's chromium-driver) on a real worker.

Calm history flows in while the page is open (the airparadis chart gets points, then more), a bad-buzz
storm raises alerts that appear in the alert list, a hostile tweet text is shown as text (no XSS), and
the "wrong label" control posts feedback that the worker counts in ``badbuzz_feedback_total``.
Skipped when chromium / chromedriver / selenium are not installed. Set ``BADBUZZ_DASHBOARD_SCREENSHOT``
to a path to keep a copy of the final screenshot (e.g. ``docs/dashboard.png``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_app.events import tweet_key
from stream_app.kafkaio import produce_messages
from stream_app.simulator import Scenario

pytestmark = pytest.mark.integration

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROME_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-dev-shm-usage", "--no-first-run", "--disable-sync", "--disable-component-update",
               "--window-size=1440,1000"]
XSS = ('@airparadis 3 days and still no luggage, no compensation, no reply. Disgusting service '
       '<img id="xss" src="x" onerror="window.__xss=1"><b>bold</b>')


@pytest.fixture
def browser() -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            pytest.skip(f"{path} not installed (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in CHROME_ARGS:
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except Exception:  # noqa: BLE001 - stale elements while the page re-renders: try again
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.25)


def encode(tweets) -> list[tuple[bytes, bytes]]:
    return [(tweet_key(t), orjson.dumps(t)) for t in tweets]


def chart(driver, brand: str) -> tuple[int, int]:
    svg = driver.find_element("css selector", f'svg[data-brand="{brand}"]')
    return int(svg.get_attribute("data-points")), int(svg.get_attribute("data-tweets"))


def test_dashboard_updates_live_and_posts_feedback(browser, broker, start_worker, tmp_path: Path):
    from selenium.webdriver.support.ui import Select

    w = start_worker("dash")
    topic = w.env["BADBUZZ_TOPIC_TWEETS"]
    now = time.time()
    sc = Scenario(seed=11)
    calm = [*sc.history(now - 180, minutes=30, per_minute=24)]
    hostile = {"id": "xss-1", "text": XSS, "brand": "airparadis", "created_at": calm[0]["created_at"], "lang": "en",
               "author": {"id": "u1", "handle": "<script>x</script>", "followers": 12}}
    asyncio.run(produce_messages(broker.url, topic, encode([hostile])))

    browser.get(f"{w.url}/dashboard")
    assert "badbuzz" in browser.title
    # Hostile text is rendered as text: nothing injected, no script run.
    row = wait_for("the hostile tweet", lambda: browser.find_element("css selector", 'li[data-tweet-id="xss-1"]'),
                   timeout=30)
    assert '<img id="xss"' in row.find_element("css selector", ".text").text
    assert "@<script>x</script>" in row.text
    assert not browser.find_elements("css selector", "#xss, #negative img, #negative b, #negative script")
    assert browser.execute_script("return window.__xss") is None
    assert browser.find_element("id", "conn").get_attribute("data-state") == "ok"
    # the brand card comes from the alerting tables, which trail the enriched topic by a moment
    card = wait_for("the airparadis card",
                    lambda: browser.find_elements("css selector", 'article[data-brand="airparadis"]'), timeout=30)
    assert "warming up" in card[0].text
    browser.save_screenshot(str(tmp_path / "dashboard-warmup.png"))
    points1, tweets1 = wait_for("airparadis chart points", lambda: (c := chart(browser, "airparadis"))[0] > 0 and c,
                                timeout=10)

    # Traffic flows: the chart gets more minutes and tweets without reloading the page.
    asyncio.run(produce_messages(broker.url, topic, encode(calm)))
    points2, tweets2 = wait_for("the chart to update", lambda: (c := chart(browser, "airparadis"))[0] > points1 and c,
                                timeout=30)
    assert points2 > points1 and tweets2 > tweets1
    wait_for("one chart per brand", lambda: len(browser.find_elements("css selector", "svg[data-brand]")) == 3,
             timeout=20)

    # The storm: alerts show up in the list.
    storm = [sc.storm_tweet(now - 170 + i * 0.5) for i in range(320)]
    asyncio.run(produce_messages(broker.url, topic, encode(Scenario._clean(t) for t in storm)))
    alert = wait_for("an airparadis spike alert", lambda: browser.find_element(
        "css selector", '#alerts li[data-brand="airparadis"][data-rule$="_spike"]'), timeout=45)
    assert alert.get_attribute("data-severity") in {"warning", "critical"}
    assert "observed" in alert.text and "threshold" in alert.text
    assert alert.find_elements("css selector", ".samples li"), "alert shows sample tweets"
    assert browser.find_element("id", "alerts-empty").get_attribute("hidden") is not None
    negatives = browser.find_element("css selector", 'article[data-brand="airparadis"] [data-metric="negative"]')
    assert "threshold" in negatives.text
    assert tweets2 < chart(browser, "airparadis")[1], "storm minutes added to the chart"

    # "Wrong label" on a negative tweet -> POST /feedback -> confirmation, and the worker counts it.
    def open_form() -> str:  # the list may re-render between finding a row and clicking: retried by wait_for
        tweet = browser.find_element("css selector", "#negative li.tweet")
        tweet_id = tweet.get_attribute("data-tweet-id")
        tweet.find_element("css selector", "button.wrong-label").click()
        return tweet_id

    tweet_id = wait_for("a wrong-label button to click", open_form, timeout=10)
    assert browser.find_element("id", "paused").is_displayed(), "the list holds still while the form is open"
    form = browser.find_element("css selector", f'form.feedback[data-tweet-id="{tweet_id}"]')
    Select(form.find_element("css selector", "select[name=correct_label]")).select_by_value("neutral")
    browser.save_screenshot(str(tmp_path / "dashboard-feedback-form.png"))
    form.find_element("css selector", "button.send").click()
    status = wait_for("the feedback confirmation", lambda: browser.find_element(
        "css selector", f'li[data-tweet-id="{tweet_id}"] .feedback-status[data-state="sent"]'), timeout=15)
    assert status.text == "✓ Recorded as neutral"
    assert "neutral" in browser.find_element("css selector", "#feedback-log li").text
    wait_for("badbuzz_feedback_total in /metrics",
             lambda: 'badbuzz_feedback_total{kind="misclassification"}' in w.get("/metrics").decode(), timeout=20)

    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1440, min(max(int(height) + 40, 900), 4000))
    shot = tmp_path / "dashboard.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    if keep := os.environ.get("BADBUZZ_DASHBOARD_SCREENSHOT"):
        Path(keep).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, keep)


def test_dashboard_forwards_its_token_off_loopback(browser, broker, start_worker):
    from selenium.webdriver.support.ui import Select

    token = "dash-s3cret"
    w = start_worker("dashsec", BADBUZZ_WEB_HOST="0.0.0.0", BADBUZZ_API_TOKEN=token)
    tweet = {"id": "sec-1", "text": XSS, "brand": "airparadis", "lang": "en"}
    asyncio.run(produce_messages(broker.url, w.env["BADBUZZ_TOPIC_TWEETS"], encode([tweet])))

    browser.get(f"{w.url}/dashboard")  # no token: the static page loads, its data is refused
    wait_for("the unauthorized state", lambda: "unauthorized" in browser.find_element("id", "conn").text, timeout=15)
    assert not browser.find_elements("css selector", 'li[data-tweet-id="sec-1"]')
    browser.get(f"{w.url}/dashboard#token={token}")  # the fragment never reaches the server (or its logs)
    row = wait_for("the tweet, fetched with the bearer header", lambda: browser.find_element(
        "css selector", 'li[data-tweet-id="sec-1"]'), timeout=30)
    assert browser.find_element("id", "conn").get_attribute("data-state") == "ok"
    row.find_element("css selector", "button.wrong-label").click()
    Select(row.find_element("css selector", "select[name=correct_label]")).select_by_value("positive")
    row.find_element("css selector", "button.send").click()
    wait_for("the feedback confirmation", lambda: browser.find_element(
        "css selector", 'li[data-tweet-id="sec-1"] .feedback-status[data-state="sent"]'), timeout=15)
