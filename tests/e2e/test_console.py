"""The web console in Debian's Chromium (headless, driven by Playwright) against a real
control plane and a real agent: sign in, watch, deploy through the form, stop, read the log,
delete. Screenshots go to $CORRAL_SCREENSHOTS (docs/screenshots/ holds the committed ones)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import playwright.sync_api as playwright_api  # a pinned test dependency: never skipped
import pytest

from tests.e2e.apps import app_zip
from tests.e2e.operator import ADMIN_PASSWORD, Operator
from tests.e2e.processes import AgentProcess, ServeProcess

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]



@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); "
                    ".ci/run installs it")
    with playwright_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


@pytest.fixture
def shots(tmp_path: Path) -> Callable[[object, str], None]:
    folder = Path(os.environ.get("CORRAL_SCREENSHOTS") or tmp_path / "shots")
    folder.mkdir(parents=True, exist_ok=True)

    def take(page: object, name: str) -> None:
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]

    return take


def _signed_in(browser: object, control_plane: ServeProcess, *, height: int,
               timeout: int) -> tuple[Any, Any]:
    """A browser page signed in as the admin, confirming every dialog."""
    context = browser.new_context(viewport={"width": 1280, "height": height})  # type: ignore[attr-defined]
    page = context.new_page()
    page.set_default_timeout(timeout)
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(control_plane.url + "/login")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    return context, page


def test_operate_the_fleet_in_a_browser(browser: object, control_plane: ServeProcess,
                                        operator: Operator,
                                        agents: Callable[[str], AgentProcess],
                                        tmp_path: Path, shots: Callable[[object, str], None]) -> None:
    expect = playwright_api.expect
    agents("web-1")
    context = browser.new_context(viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: dialog.accept())

    # signed out: every page leads to the sign-in form
    page.goto(control_plane.url + "/apps")
    expect(page).to_have_url(re.compile(r"/login$"))
    page.fill("#username", "admin")
    page.fill("#password", "not-the-password")
    page.click("button[type=submit]")
    expect(page.locator(".flash.error")).to_contain_text("Invalid username or password")
    shots(page, "login")
    page.fill("#username", "admin")
    page.fill("#password", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/servers$"))

    # the server, RUNNING, and how to add another
    row = page.locator("tr[data-server='web-1']")
    expect(row).to_contain_text("RUNNING")
    shots(page, "servers")
    page.click("text=Add a server")
    expect(page.locator("#register-command")).to_contain_text(operator.registration_token())
    expect(page.locator("#register-command")).to_contain_text("corral agent register --manager")

    # deploy through the form, watch it become STARTED without reloading
    page.goto(control_plane.url + "/apps")
    expect(page.locator(".empty")).to_contain_text("No applications yet")
    page.click("text=Deploy an application")
    archive = tmp_path / "hello.zip"
    archive.write_bytes(app_zip("v1"))
    page.fill("#artifactName", "hello")
    page.select_option("#targetId", label="web-1 (server)")
    page.set_input_files("#file", str(archive))
    page.fill("#properties", "greeting=from-the-console")
    shots(page, "deploy")
    page.click("#deploy-form button[type=submit]")
    expect(page).to_have_url(re.compile(r"/apps/\d+"))
    expect(page.locator("#app-aggregate")).to_contain_text("STARTED")
    expect(page.locator("#app-status")).to_contain_text("greeting=from-the-console")

    # the log tail, live while the page is open
    expect(page.locator("#log-lines")).to_contain_text("listening on")
    shots(page, "application")

    # a refused deployment shows the API's message in the page
    page.goto(control_plane.url + "/apps/new")
    page.fill("#artifactName", "hello")
    page.set_input_files("#file", str(archive))
    page.click("#deploy-form button[type=submit]")
    expect(page.locator("#deploy-result .flash.error")).to_contain_text("already deployed")

    # stop, then delete
    page.goto(control_plane.url + "/apps")
    expect(page.locator("tr[data-app='hello']")).to_contain_text("STARTED")
    shots(page, "applications")
    page.click("tr[data-app='hello'] a")
    page.click("button:has-text('Stop')")
    expect(page.locator("#app-aggregate")).to_contain_text("STOPPED")
    page.click("button:has-text('Delete')")
    expect(page).to_have_url(re.compile(r"/apps\?notice="))
    expect(page.locator(".empty")).to_contain_text("No applications yet")
    assert operator.data("/applications") == []

    # groups and clusters
    page.goto(control_plane.url + "/groups")
    page.fill("#group-name", "front")
    page.check(f"input[name=server][value='{operator.data('/servers')[0]['id']}']")
    page.click("button:has-text('Create group')")
    expect(page).to_have_url(re.compile(r"/groups/\d+"))
    expect(page.locator("main")).to_contain_text("web-1")
    shots(page, "group")
    page.click("button:has-text('Delete group')")
    expect(page).to_have_url(re.compile(r"/groups\?notice="))
    page.goto(control_plane.url + "/clusters")
    page.fill("#cluster-name", "ring")
    page.check("input[name=multicast]")
    page.click("button:has-text('Create cluster')")  # with no server: refused, said why
    expect(page.locator(".flash.error")).to_contain_text("at least one server")
    page.fill("#cluster-name", "ring")
    page.check("input[name=multicast]")
    page.check(f"input[name=server][value='{operator.data('/servers')[0]['id']}']")
    page.click("button:has-text('Create cluster')")
    expect(page).to_have_url(re.compile(r"/clusters/\d+"))
    expect(page.locator("main")).to_contain_text("Primary node")
    shots(page, "cluster")

    # unknown ids are a page, not a stack trace; environments switch
    page.goto(control_plane.url + "/servers/9999")
    expect(page.locator("h1")).to_contain_text("Not found")
    page.goto(control_plane.url + "/servers")
    page.select_option("select[name=env]", label="Sandbox")
    expect(page.locator(".empty")).to_contain_text("No servers yet")

    # readable on a phone
    phone = browser.new_context(viewport={"width": 390, "height": 844},  # type: ignore[attr-defined]
                                storage_state=context.storage_state())
    mobile = phone.new_page()
    mobile.goto(control_plane.url + "/clusters")
    expect(mobile.locator("h1")).to_contain_text("Clusters")
    width = mobile.evaluate("document.documentElement.scrollWidth")
    assert width <= 400, f"the page is {width}px wide on a 390px phone"
    shots(mobile, "clusters-phone")
    phone.close()

    page.click("button:has-text('Sign out')")
    expect(page).to_have_url(re.compile(r"/login$"))
    page.goto(control_plane.url + "/servers")
    expect(page).to_have_url(re.compile(r"/login$"))
    assert errors == []
    context.close()


def test_a_rollout_and_the_audit_trail_in_a_browser(
        browser: object, control_plane: ServeProcess, operator: Operator,
        agents: Callable[[str], AgentProcess], shots: Callable[[object, str], None]) -> None:
    expect = playwright_api.expect
    members = [agents(f"edge-{i}") for i in range(3)]
    group = operator.call("POST", "/serverGroups", expect=201, json={
        "name": "edge", "serverIds": [m.server_id for m in members]}).json()["data"]
    app = operator.deploy("storefront", group["id"], app_zip("v1"), {"greeting": "hello"})
    operator.wait_app(app["id"], "STARTED")
    operator.call("PATCH", f"/applications/{app['id']}", expect=200,
                  data={"rollout": '{"canary": 1, "maxParallel": 1}'},
                  files={"file": ("storefront-2.zip", app_zip("v2"), "application/zip")})

    context, page = _signed_in(browser, control_plane, height=900, timeout=30_000)
    page.goto(control_plane.url + f"/apps/{app['id']}")
    current = page.locator('#app-history tr[data-deployment="2"]')
    expect(current).to_contain_text("WAITING")  # the canary is healthy and waits
    expect(current).to_contain_text("1/3 servers")
    shots(page, "rollout")
    current.get_by_role("button", name="Promote").click()
    expect(page.locator('#app-history tr[data-deployment="2"]')).to_contain_text(
        "SUCCEEDED", timeout=60_000)
    expect(page.locator('#app-history tr[data-deployment="2"]')).to_contain_text("3/3 servers")
    shots(page, "history")

    page.goto(control_plane.url + f"/audit?resource=/apps/{app['id']}/rollout/")
    expect(page.locator("tr[data-event]")).to_have_count(1)  # the promote, once
    expect(page.locator("tr[data-event]")).to_contain_text("admin")
    expect(page.locator("tr[data-event]")).to_contain_text("/promote")
    page.goto(control_plane.url + "/audit")
    shots(page, "audit")
    context.close()


@pytest.fixture
def measured_every_second(serve: ServeProcess) -> None:
    serve.env["CORRAL_METRICS_SECONDS"] = "1"


def test_overview_charts_and_alerts_in_a_browser(
        measured_every_second: None, browser: object, control_plane: ServeProcess,
        operator: Operator, agents: Callable[[str], AgentProcess],
        shots: Callable[[object, str], None]) -> None:
    import signal

    from tests.support import eventually

    expect = playwright_api.expect
    web, spare = agents("web-1"), agents("web-2")
    app = operator.deploy("storefront", web.server_id, app_zip("v1"), {"greeting": "hello"})
    operator.wait_app(app["id"], "STARTED")
    [down] = operator.call("POST", "/alerts", expect=200, json={
        "name": "web-2 down", "severity": "CRITICAL", "condition": {
            "resourceType": "server", "type": "server-down",
            "resources": [str(spare.server_id)]},
        "actions": [{"type": "email", "emails": ["ops@example.com"]}]}).json()["data"]
    eventually(lambda: operator.data(f"/servers/{web.server_id}/metrics")["timestamps"],
               lambda t: len(t) >= 3, what="a few readings")
    spare.stop(signal.SIGKILL)
    eventually(lambda: operator.data(f"/alerts/{down['id']}/history"), what="the alert firing")

    context, page = _signed_in(browser, control_plane, height=900, timeout=20_000)

    page.goto(control_plane.url + "/overview")
    expect(page.locator(".tile").first).to_contain_text("1")
    expect(page.get_by_role("link", name="web-1").first).to_be_visible()
    expect(page.get_by_role("link", name="web-2 down")).to_be_visible()
    shots(page, "overview")
    page.goto(control_plane.url + f"/servers/{web.server_id}")
    expect(page.locator("figure.chart svg")).to_have_count(4)
    expect(page.locator("figure.chart polyline").first).to_be_attached()
    shots(page, "server-charts")

    page.goto(control_plane.url + "/alerts")
    page.fill("#a-name", "storefront errors")
    page.select_option("#a-condition", "hybrid-application/application-error-count")
    page.fill("input[name=threshold]", "0")
    page.fill("#a-emails", "ops@example.com")
    page.click("text=Create alert")
    expect(page.locator("h1")).to_contain_text("storefront errors")
    page.goto(control_plane.url + "/alerts")
    expect(page.locator(f"tr[data-alert='{down['id']}']")).to_contain_text("firing")
    shots(page, "alerts")
    page.goto(control_plane.url + f"/alerts/{down['id']}")
    expect(page.locator("tr[data-event]")).to_have_count(1)
    expect(page.locator("tr[data-event]")).to_contain_text("FIRING")
    context.close()


def test_a_ca_rotation_in_a_browser(browser: object, control_plane: ServeProcess,
                                    operator: Operator, agents: Callable[[str], AgentProcess],
                                    shots: Callable[[object, str], None]) -> None:
    from tests.support import eventually

    expect = playwright_api.expect
    node = agents("web-1")
    context, page = _signed_in(browser, control_plane, height=800, timeout=20_000)

    page.get_by_role("link", name="Certificates").click()
    page.click("text=Rotate the CA")
    expect(page.locator("h1")).to_contain_text("rotation under way")
    expect(page.locator("[data-waiting]")).to_have_attribute("data-waiting", "1")
    expect(page.get_by_role("link", name="web-1")).to_be_visible()
    shots(page, "certificates")
    page.get_by_role("link", name="web-1").click()
    page.click("text=Renew certificate")  # rather than wait for the rotation's spread
    eventually(lambda: operator.data("/certificateAuthority")["serversOnOldCa"],
               lambda waiting: waiting == 0, what="the server moving to the new CA")
    page.goto(control_plane.url + "/certificates")
    expect(page.locator(".empty")).to_contain_text("Every server is on the new CA")
    page.click("text=Retire the old CA")
    expect(page.locator("text=Rotate the CA")).to_be_visible()
    assert operator.data(f"/servers/{node.server_id}")["status"] == "RUNNING"
    context.close()
