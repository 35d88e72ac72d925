# SPDX-License-Identifier: MIT
# page.py URL KEY - the chat page of moetier serve in Debian's headless Chromium (selenium with
# /usr/bin/chromedriver; nothing is downloaded): a message typed and sent shows a streamed reply;
# a long reply is stopped by the Stop button, which frees the server. Prints "PASS what" or
# "FAIL what: why" per check. Talks to URL (127.0.0.1) only; every wait is bounded.
import json
import sys
import tempfile
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

url, key = sys.argv[1], sys.argv[2]


def check(what, cond, why=""):
    print(("PASS %s" % what) if cond else ("FAIL %s: %s" % (what, why)), flush=True)


def health():
    with urllib.request.urlopen(url + "/health", timeout=5) as r:
        return json.load(r)


profile = tempfile.mkdtemp(prefix="mt-chromium-")
opts = webdriver.ChromeOptions()
opts.binary_location = "/usr/bin/chromium"
for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
          "--user-data-dir=" + profile, "--no-first-run", "--disable-extensions"):
    opts.add_argument(a)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
driver.set_page_load_timeout(20)
try:
    driver.get(url + "/")
    wait = WebDriverWait(driver, 40, poll_frequency=0.05)
    check("page: the chat page loads", driver.title == "moetier", driver.title)
    state = lambda: driver.find_element(By.TAG_NAME, "body").get_attribute("data-state")
    notes_now = lambda: [n.text for n in driver.find_elements(By.CSS_SELECTOR, ".assistant .note")]

    driver.find_element(By.ID, "key").send_keys(key)
    mx = driver.find_element(By.ID, "max")
    mx.clear()
    mx.send_keys("12")
    driver.find_element(By.ID, "msg").send_keys("Hello page")
    driver.find_element(By.ID, "send").click()
    wait.until(lambda d: state() != "streaming" and d.find_elements(By.CSS_SELECTOR, ".assistant"))
    replies = driver.find_elements(By.CSS_SELECTOR, ".assistant .content")
    users = driver.find_elements(By.CSS_SELECTOR, ".user")
    text = replies[0].get_attribute("textContent") if replies else ""
    check("page: a typed message is sent and its streamed reply shown",
          state() == "idle" and len(users) == 1 and users[0].text == "Hello page" and text != "",
          "state %s, reply %r" % (state(), text))

    # The tiny random model samples its end-of-text token at random points (a 3000-token reply
    # ended after 100 tokens, 0.4 s, in one of six tries), so a reply may finish by itself between
    # "it streams" and the click on Stop. Such a try ends "idle" and is made again (up to 5 times);
    # a Stop that does not work never ends "stopped" with its note, so it fails every try.
    mx.clear()
    mx.send_keys("3000")
    for attempt in range(1, 6):
        driver.find_element(By.ID, "msg").send_keys("A long one")
        driver.find_element(By.ID, "send").click()
        count = 1 + attempt
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".assistant .content")) == count
                   and (d.find_elements(By.CSS_SELECTOR, ".assistant .content")[count - 1]
                        .get_attribute("textContent") != "" or state() != "streaming"))
        streaming = state() == "streaming" and health()["busy"]
        driver.find_element(By.ID, "stop").click()
        wait.until(lambda d: state() != "streaming")
        if not (state() == "idle" and "[stopped]" not in notes_now()):
            break
        # the reply ended by itself before the click: ask again (the page answers the new
        # message after the finished reply; wait for the server to be idle first)
        t0 = time.time()
        while health()["busy"] and time.time() - t0 < 3:
            time.sleep(0.05)
    check("page: a long reply streams (the server is busy)", streaming,
          "state %s (try %d)" % (state(), attempt))
    t0 = time.time()
    while health()["busy"] and time.time() - t0 < 3:
        time.sleep(0.05)
    notes = notes_now()
    check("page: Stop ends the reply and frees the server",
          state() == "stopped" and "[stopped]" in notes and not health()["busy"],
          "state %s, notes %r (try %d)" % (state(), notes, attempt))
finally:
    driver.quit()
