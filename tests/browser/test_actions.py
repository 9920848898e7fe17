"""The UI's actions in a real browser, each through its plain form and recorded as its CLI
command records it: a promotion through the stored gates (passed, blocked by the champion
gate, then forced with a reason), a rollback, a canary's weight set and the canary ended, an
alert acknowledged; and a form posted from another site is refused."""
import json
import urllib.request

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC

from test_ui import console_errors, open_page, wait


def api(server, path):
    with urllib.request.urlopen(server.url + path, timeout=10) as r:
        return json.load(r)


def production(server):
    alias = api(server, "/api/2.0/mlflow/registered-models/alias?name=gated&alias=production")
    return alias["model_version"]["version"]


def submit(browser, form_id):
    """Submits the form and returns the notice of the page it leads to (waiting for this page
    to go first: it may hold a notice of its own from the last action)."""
    form = browser.find_element(By.ID, form_id)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(browser, 60).until(EC.staleness_of(form))
    return wait(browser, 60).until(EC.presence_of_element_located((By.ID, "notice"))).text


def test_a_version_is_promoted_through_its_gates_then_blocked_then_forced_and_rolled_back(browser, server):
    console_errors(browser)
    open_page(browser, f"{server.url}/models/gated/versions/1")
    assert "policy stored on gated" in browser.find_element(By.ID, "policy-note").text
    notice = submit(browser, "promote-form")
    assert notice == "The gates passed: production now points at this version.", notice
    assert production(server) == "1"
    checks = [td.text for td in browser.find_elements(By.CSS_SELECTOR, "#gate-checks tbody td:nth-child(2)")]
    assert "accuracy" in checks and "accuracy_vs_champion" in checks, checks
    # Version 2, a one-split tree, scores below the champion on the evaluation rows.
    open_page(browser, f"{server.url}/models/gated/versions/2")
    notice = submit(browser, "promote-form")
    assert notice.startswith("Not promoted: a gate failed"), notice
    assert production(server) == "1"
    rows = [[td.text for td in r.find_elements(By.TAG_NAME, "td")]
            for r in browser.find_elements(By.CSS_SELECTOR, "#gate-checks tbody tr")]
    assert [r[1] for r in rows if r[4] == "fail"] == ["accuracy_vs_champion"], rows
    # Forced, with a reason.
    form = browser.find_element(By.ID, "promote-form")
    form.find_element(By.NAME, "force").click()
    form.find_element(By.NAME, "reason").send_keys("hotfix needs the tree")
    notice = submit(browser, "promote-form")
    assert notice.startswith("Forced: production now points at this version"), notice
    assert production(server) == "2"
    # Rolled back from the model's page.
    open_page(browser, f"{server.url}/models/gated")
    browser.find_element(By.CSS_SELECTOR, "#rollback-form input[name=reason]").send_keys("tree too coarse")
    notice = submit(browser, "rollback-form")
    assert notice == "production rolled back to the version it held before.", notice
    assert production(server) == "1"
    rows = browser.find_elements(By.CSS_SELECTOR, "#alias-history tbody tr")
    history = [[td.text for td in row.find_elements(By.TAG_NAME, "td")][1:7] for row in rows]
    assert history == [
        ["production", "rollback", "v2", "v1", "web UI", "tree too coarse"],
        ["production", "force", "v1", "v2", "web UI", "hotfix needs the tree"],
        ["production", "promote", "", "v1", "web UI", ""],
    ], history
    assert console_errors(browser) == []


def test_a_canary_weight_is_set_then_the_canary_ended(browser, server):
    console_errors(browser)
    open_page(browser, f"{server.url}/deployments/scored")
    box = browser.find_element(By.CSS_SELECTOR, "#weight-form input[name=weight]")
    assert box.get_attribute("value") == "30"
    box.clear()
    box.send_keys("45")
    assert submit(browser, "weight-form").startswith("The canary's weight changed")
    weights = [w.get_attribute("value") for w in browser.find_elements(By.CSS_SELECTOR, "#arms progress")]
    assert weights == ["55", "45"], weights
    stored = api(server, "/api/shipyard/deployments/get?name=scored")
    assert [a["weight"] for a in stored["deployment"]["spec"]["arms"]] == [55, 45], stored
    assert submit(browser, "end-canary-form").startswith("The canary ended")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#arms tbody tr")) == 1
    assert browser.find_elements(By.ID, "weight-form") == []
    assert console_errors(browser) == []


def test_an_alert_is_acknowledged_from_the_alerts_page(browser, server):
    console_errors(browser)
    open_page(browser, f"{server.url}/alerts")
    row = next(r for r in browser.find_elements(By.CSS_SELECTOR, "#alerts tbody tr") if "traffic-seen" in r.text)
    button = row.find_element(By.CSS_SELECTOR, "td.ack button")
    button.click()
    wait(browser).until(EC.staleness_of(button))
    wait(browser).until(EC.presence_of_element_located((By.ID, "notice")))
    assert browser.find_element(By.ID, "notice").text == "Alert acknowledged."
    row = next(r for r in browser.find_elements(By.CSS_SELECTOR, "#alerts tbody tr") if "traffic-seen" in r.text)
    assert row.find_element(By.CSS_SELECTOR, "td.ack").text.startswith("web UI")
    assert console_errors(browser) == []


def test_a_form_posted_from_another_site_is_refused(browser, server):
    """A page on another origin (a data: URL) posting to the UI: the browser sends no cookie
    (SameSite=Strict) and marks it cross-site; the server refuses and nothing changes."""
    before = api(server, "/api/2.0/mlflow/registered-models/alias?name=gated&alias=production")
    page = ("data:text/html,<form id=f method=post action='" + server.url + "/models/gated/rollback'>"
            "<input name=alias value=production></form><script>document.getElementById('f').submit()</script>")
    browser.get(page)
    wait(browser).until(lambda b: b.current_url.startswith(server.url))
    assert "came from another site" in browser.find_element(By.ID, "refused").text
    after = api(server, "/api/2.0/mlflow/registered-models/alias?name=gated&alias=production")
    assert after == before
    console_errors(browser)
