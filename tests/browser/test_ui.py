"""The web UI in a real browser: pages load without console errors, the runs table filters and
pages, charts draw their series (a one-step spike in 20,000 steps included) and zoom, MLflow's
`/#/` links land on the matching pages, and script payloads stored in names, tags and params
never run."""
import json
import urllib.parse
import urllib.request

import pytest
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

from conftest import SPIKE_STEP, SPIKE_VALUE, XSS


def console_errors(browser):
    """The page's console errors since the last call (the log is drained by reading it)."""
    return [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def wait(browser, seconds=15):
    return WebDriverWait(browser, seconds)


def open_page(browser, url):
    browser.get(url)
    wait(browser).until(lambda b: b.execute_script("return document.readyState") == "complete")


def chart(browser, key):
    return browser.find_element(By.CSS_SELECTOR, f'figure.chart[data-key="{key}"]')


def drawn(browser, key):
    """Waits until the chart of `key` is drawn and returns its element."""
    el = chart(browser, key)
    browser.execute_script("arguments[0].scrollIntoView()", el)
    wait(browser).until(lambda b: el.get_attribute("data-state") in ("drawn", "error"))
    assert el.get_attribute("data-state") == "drawn", el.text
    return el


def test_experiments_page_lists_and_searches(browser, server):
    console_errors(browser)
    open_page(browser, server.url + "/")
    names = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#experiments tbody td a")]
    assert "browser" in names
    box = browser.find_element(By.CSS_SELECTOR, "form.search input[name=q]")
    box.send_keys("brow")
    box.submit()
    wait(browser).until(EC.url_contains("q=brow"))
    names = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#experiments tbody td a")]
    assert names == ["browser"]
    assert console_errors(browser) == []


def test_runs_table_filters_sorts_and_pages(browser, server):
    console_errors(browser)
    open_page(browser, f"{server.url}/experiments/{server.experiment_id}")
    rows = browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr:not(.child)")
    assert len(rows) == 50, "the first page holds 50 of the 122 top-level runs"
    browser.find_element(By.ID, "next-page").click()
    wait(browser).until(EC.url_contains("page="))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr:not(.child)")) == 50
    # MLflow's filter language, typed into the page's own form.
    box = browser.find_element(By.CSS_SELECTOR, "form.search input[name=filter]")
    box.clear()
    box.send_keys("metrics.acc >= 0.9 and tags.team = 'vision'")
    box.submit()
    wait(browser).until(EC.url_contains("filter="))
    names = [td.text for td in browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr td.name")]
    expected = [f"run-{i:03d}" for i in range(108, 120) if i % 2]
    assert sorted(names) == expected
    assert console_errors(browser) == []
    # A mistake is shown above the table, naming what is wrong (the page's status is 400, which
    # the console reports; nothing else may be there).
    box = browser.find_element(By.CSS_SELECTOR, "form.search input[name=filter]")
    box.clear()
    box.send_keys("metrics.acc >>> 1")
    box.submit()
    wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, "p.error")))
    assert "filter" in browser.find_element(By.CSS_SELECTOR, "p.error").text.lower()
    assert [e for e in console_errors(browser) if "400 (Bad Request)" not in e["message"]] == []


def test_nested_runs_open_under_their_parent(browser, server):
    console_errors(browser)
    open_page(browser, f"{server.url}/experiments/{server.experiment_id}")
    toggle = browser.find_element(By.CSS_SELECTOR, f'a.children-toggle[data-parent="{server.parent_run}"]')
    assert toggle.text == "▸ 4 children"
    children = browser.find_elements(By.CSS_SELECTOR, f'tr.child[data-parent="{server.parent_run}"]')
    assert len(children) == 4 and not any(r.is_displayed() for r in children)
    toggle.click()
    assert all(r.is_displayed() for r in children)
    assert [r.find_element(By.CSS_SELECTOR, "td.name a").text for r in children] == [f"trial-{i}" for i in range(4)]
    assert toggle.get_attribute("aria-expanded") == "true" and toggle.text.startswith("▾")
    toggle.click()
    assert not any(r.is_displayed() for r in children)
    assert console_errors(browser) == []


def test_compare_selected_runs(browser, server):
    console_errors(browser)
    open_page(browser, f"{server.url}/experiments/{server.experiment_id}?filter=params.depth%20%3D%20%272%27")
    boxes = browser.find_elements(By.CSS_SELECTOR, "#runs tbody td.pick input")
    assert len(boxes) >= 3
    for box in boxes[:3]:
        box.click()
    browser.find_element(By.ID, "compare-button").click()
    wait(browser).until(EC.url_contains("/compare?"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#compare-runs tbody tr")) == 3
    assert [td.text for td in browser.find_elements(By.CSS_SELECTOR, "#params tr.differs td:first-child")] == ["lr"]
    scatter = browser.find_element(By.ID, "scatter")
    wait(browser).until(lambda b: scatter.get_attribute("data-state") == "drawn")
    assert scatter.get_attribute("data-points") == "3"
    Select(browser.find_element(By.CSS_SELECTOR, "select[name=scatter-x]")).select_by_value("metrics.loss")
    assert scatter.get_attribute("data-points") == "3"
    overlay = drawn(browser, "acc")
    assert len(overlay.find_elements(By.CSS_SELECTOR, ".u-legend .u-series")) == 4, "x and the three runs"
    assert console_errors(browser) == []


def test_a_chart_draws_a_long_history_with_its_spike_and_zooms(browser, server):
    console_errors(browser)
    open_page(browser, f"{server.url}/runs/{server.long_run}")
    el = drawn(browser, "loss")
    assert int(el.get_attribute("data-points")) == 20_000
    assert float(el.get_attribute("data-max")) == SPIKE_VALUE, "the one-step spike is drawn"
    assert el.find_element(By.CSS_SELECTOR, "canvas").size["width"] > 200
    # Drag across the left tenth: the server is asked for that range only.
    over = el.find_element(By.CSS_SELECTOR, ".u-over")
    width = over.size["width"]
    ActionChains(browser).move_to_element_with_offset(over, -width // 2 + 5, 0).click_and_hold() \
        .move_by_offset(width // 10, 0).release().perform()
    wait(browser).until(lambda b: el.get_attribute("data-state") == "drawn"
                        and int(el.get_attribute("data-points")) < 20_000)
    zoomed = int(el.get_attribute("data-points"))
    assert 0 < zoomed < 4_000 and float(el.get_attribute("data-max")) < SPIKE_VALUE
    # A double click shows the whole series again.
    ActionChains(browser).double_click(el.find_element(By.CSS_SELECTOR, ".u-over")).perform()
    wait(browser).until(lambda b: el.get_attribute("data-state") == "drawn"
                        and int(el.get_attribute("data-points")) == 20_000)
    # Log scale, wall time and relative time redraw without errors.
    browser.find_element(By.CSS_SELECTOR, "input[name=log]").click()
    wait(browser).until(lambda b: el.get_attribute("data-state") == "drawn")
    for axis in ("time", "relative"):
        Select(browser.find_element(By.CSS_SELECTOR, "select[name=x]")).select_by_value(axis)
        wait(browser).until(lambda b: el.get_attribute("data-state") == "drawn"
                            and el.find_element(By.CSS_SELECTOR, ".u-legend th").text.strip() != "")
        assert float(el.get_attribute("data-max")) == SPIKE_VALUE
    assert console_errors(browser) == []


def test_artifacts_preview_and_nothing_in_them_runs(browser, server):
    console_errors(browser)
    open_page(browser, f"{server.url}/runs/{server.xss_run}")
    browser.find_element(By.ID, "browse-artifacts").click()
    wait(browser).until(EC.presence_of_element_located((By.ID, "artifact-list")))
    names = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#artifact-list tbody td a")]
    assert names == ["data/", "metrics.json", "plots/"]
    browser.find_element(By.LINK_TEXT, "metrics.json").click()
    pre = wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, "pre.artifact-text")))
    assert '"accuracy": 0.91' in pre.text and XSS.replace('"', '\\"') in pre.text
    browser.find_element(By.LINK_TEXT, "data/").click()
    browser.find_element(By.LINK_TEXT, "rows.csv").click()
    rows = browser.find_elements(By.CSS_SELECTOR, "#artifact-table tbody tr")
    assert len(rows) == 50 and rows[3].find_elements(By.TAG_NAME, "td")[1].text == XSS
    open_page(browser, f"{server.url}/runs/{server.xss_run}/artifacts?path=plots/roc.svg")
    image = browser.find_element(By.CSS_SELECTOR, "img.artifact-image")
    wait(browser).until(lambda b: b.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image))
    assert browser.execute_script("return window.__xss === undefined")
    assert console_errors(browser) == []
    # Opened directly, the SVG is sandboxed: its script does not run.
    browser.get(image.get_attribute("src"))
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text
    assert browser.execute_script("return window.__xss === undefined")


def test_mlflow_links_land_on_the_matching_pages(browser, server):
    run = server.run_ids[3]
    for link, path in [
        (f"/#/experiments/{server.experiment_id}", f"/experiments/{server.experiment_id}"),
        (f"/#/models/churn", "/models/churn"),
        (f"/#/models/churn/versions/2", "/models/churn/versions/2"),
        (f"/#/experiments/{server.experiment_id}/runs/{run}", f"/runs/{run}"),
    ]:
        open_page(browser, server.url + link)
        wait(browser).until(lambda b: urllib.parse.urlparse(b.current_url).path == path)
    assert browser.find_element(By.CSS_SELECTOR, "h1").text == "run-003"


def test_model_pages_show_versions_and_aliases(browser, server):
    console_errors(browser)
    open_page(browser, server.url + "/models")
    browser.find_element(By.LINK_TEXT, "churn").click()
    wait(browser).until(EC.presence_of_element_located((By.ID, "versions")))
    assert [td.text for td in browser.find_elements(By.CSS_SELECTOR, "#versions tbody td:first-child")] == ["v2", "v1"]
    assert [td.text for td in browser.find_elements(By.CSS_SELECTOR, "#alias-history tbody td:nth-child(3)")] == ["set"]
    browser.find_element(By.LINK_TEXT, "v2").click()
    wait(browser).until(EC.presence_of_element_located((By.ID, "lineage")))
    assert "champion" in browser.find_element(By.ID, "lineage").text
    assert browser.execute_script("return window.__xss === undefined")
    assert console_errors(browser) == []


def test_deployment_page_reads_live_traffic_without_errors(browser, server):
    console_errors(browser)
    open_page(browser, server.url + "/deployments")
    browser.find_element(By.LINK_TEXT, "web").click()
    arms = wait(browser).until(EC.presence_of_all_elements_located((By.CSS_SELECTOR, "#arms tbody tr")))
    assert [a.find_elements(By.TAG_NAME, "td")[0].text for a in arms] == ["primary", "canary"]
    assert "@champion → v2" in arms[0].text and "20%" in arms[1].text
    live = browser.find_element(By.ID, "live")
    wait(browser).until(lambda b: live.get_attribute("data-state") == "live")
    assert console_errors(browser) == []


def test_dataset_page_shows_the_profile(browser, server):
    console_errors(browser)
    open_page(browser, server.url + "/datasets")
    browser.find_element(By.LINK_TEXT, "people").click()
    rows = wait(browser).until(EC.presence_of_all_elements_located((By.CSS_SELECTOR, "#profile tbody tr")))
    assert [r.get_attribute("data-column") for r in rows] == ["age", "city"]
    assert rows[0].find_elements(By.CSS_SELECTOR, "svg.histogram rect"), "the numeric column has a histogram"
    # The recorded validation: the city values outside the allowed set (the payload among them).
    assert [td.text for td in browser.find_elements(By.CSS_SELECTOR, "#validations tbody td:nth-child(3)")] == ["failed"]
    results = {r.find_elements(By.TAG_NAME, "td")[1].text: r.find_elements(By.TAG_NAME, "td")[2].text
               for r in browser.find_elements(By.CSS_SELECTOR, "#expectations tbody tr")}
    assert results == {"not_null": "met", "max": "met", "allowed_values": "failed"}, results
    assert browser.execute_script("return window.__xss === undefined")
    assert console_errors(browser) == []


@pytest.mark.parametrize("page", ["experiments", "experiment", "runs", "run", "model", "dataset"])
def test_script_payloads_stay_inert(browser, server, page):
    path = {
        "experiments": "/",
        "experiment": f"/experiments/{server.xss_experiment_id}?col=params.p&col=tags.note",
        "runs": f"/experiments/{server.xss_experiment_id}",
        "run": f"/runs/{server.xss_run}",
        "model": "/models/churn",
        "dataset": "/datasets/people",
    }[page]
    console_errors(browser)
    open_page(browser, server.url + path)
    if page == "run":
        drawn(browser, "m")
    assert browser.execute_script("return window.__xss === undefined")
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text
    assert XSS in browser.find_element(By.TAG_NAME, "body").text, "the payload is shown as text"
    assert console_errors(browser) == []


def test_a_heatmap_cell_opens_the_window_with_its_histograms(browser, server):
    console_errors(browser)
    open_page(browser, f"{server.url}/deployments/scored")
    # The newest column: the evaluation that saw the seeded traffic.
    cell = browser.find_element(By.CSS_SELECTOR, '#drift-heatmap tr[data-feature="age"] td.cell:last-child a')
    cell.click()
    wait(browser).until(EC.presence_of_element_located((By.ID, "window-drift")))
    assert "/deployments/scored/window?at=" in browser.current_url
    columns = [r.get_attribute("data-column") for r in browser.find_elements(By.CSS_SELECTOR, "#window-drift tbody tr")]
    assert sorted(columns) == ["age", "group", "income"], columns
    bars = browser.find_elements(By.CSS_SELECTOR, '#window-drift tr[data-column="age"] svg rect.current')
    assert len(bars) > 1
    assert "20 in 20 requests" in browser.find_element(By.ID, "window-facts").text
    assert console_errors(browser) == []


def test_two_dataset_versions_are_compared(browser, server):
    console_errors(browser)
    open_page(browser, server.url + "/datasets/people")
    browser.find_element(By.CSS_SELECTOR, "#drift-form button[type=submit]").click()
    wait(browser).until(EC.presence_of_element_located((By.ID, "dataset-drift")))
    assert browser.find_element(By.TAG_NAME, "h1").text == "people: v1 to v2"
    verdicts = {r.get_attribute("data-column"): r.find_elements(By.TAG_NAME, "td")[5].text
                for r in browser.find_elements(By.CSS_SELECTOR, "#dataset-drift tbody tr")}
    assert verdicts == {"age": "drifted", "city": "no drift"}, verdicts
    # The payload is a category: a bin label in the SVG's titles, never markup.
    assert browser.execute_script("return window.__xss === undefined")
    assert console_errors(browser) == []


def test_every_monitor_value_is_charted(browser, server):
    """Each value the monitor records (its API's keys, per-feature drift aside: that is the
    heat-map) is drawn in one of the monitoring charts."""
    console_errors(browser)
    open_page(browser, f"{server.url}/deployments/scored")
    panel = browser.find_element(By.ID, "monitor-charts")
    wait(browser).until(lambda b: panel.get_attribute("data-state") in ("drawn", "error"))
    assert panel.get_attribute("data-state") == "drawn"
    drawn = set(browser.execute_script(
        "return Array.from(document.querySelectorAll('#monitor-charts .u-legend .u-series .u-label'))"
        ".map(function (e) { return e.textContent; })"))
    with urllib.request.urlopen(f"{server.url}/ui-api/monitor?deployment=scored", timeout=10) as r:
        keys = {k for k in json.load(r)["values"] if not k.startswith(("drifted.", "drift_score."))}
    assert keys and keys <= drawn, sorted(keys - drawn)
    assert console_errors(browser) == []
