"""Console pages for watching the fleet: the overview, the charts on server and application
pages, and the alerts (create, enable, delete, history, dead letters)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup
from sqlalchemy.orm import Session

from corral.domain import alerts, measurements, overview, views
from corral.web.actions import act, read
from corral.web.charts import line_chart
from corral.web.console import Console, ConsoleDep

router = APIRouter(include_in_schema=False)


@router.get("/overview", response_class=HTMLResponse)
def overview_page(console: ConsoleDep) -> HTMLResponse:
    seen = read(console, lambda s: overview.overview(s, console.scope,
                                                     console.plane.settings.metrics_seconds))
    return console.render("overview.html", **seen)


def server_charts(session: Session, console: Console, server_id: int) -> list[Markup]:
    start, end, step = measurements.window(None, None, None,
                                           console.plane.settings.metrics_seconds)
    series = measurements.server_series(session, server_id, start, end, max(step, 15))
    t, v = series["timestamps"], series["series"]
    memory = [None if used is None or not total else 100.0 * used / total
              for used, total in zip(v["memoryUsed"], v["memoryTotal"], strict=True)]
    return [line_chart("CPU", t, v["cpu"], "%", 100.0),
            line_chart("Memory", t, memory, "%", 100.0),
            line_chart("Load average", t, v["loadAverage"]),
            line_chart("Threads", t, v["threads"])]


def application_charts(session: Session, console: Console, app_id: int) -> list[Markup]:
    start, end, step = measurements.window(None, None, None,
                                           console.plane.settings.metrics_seconds)
    series = measurements.application_series(session, app_id, start, end, max(step, 15))
    t, v = series["timestamps"], series["series"]
    charts = [line_chart("CPU (of one core)", t, v["cpu"], "%"),
              line_chart("Memory", t, v["memory"], "B")]
    if any(m is not None for m in v["messages"]):
        charts += [line_chart("Messages", t, v["messages"]),
                   line_chart("Errors", t, v["errors"])]
    return charts


# --- alerts ---------------------------------------------------------------------------------

@router.get("/alerts", response_class=HTMLResponse)
def alert_list(console: ConsoleDep) -> HTMLResponse:
    def load(s: Session) -> dict[str, Any]:
        found, _ = alerts.listing(s, console.scope, 0, 500, "name")
        looked_at = alerts.looked_at(s, [a.id for a in found])
        return {"alerts": [views.alert(a, looked_at.get(a.id)) for a in found],
                "dead": alerts.dead_letters(s, console.scope,
                                            detailed=console.principal.may("admin")),
                "recent": alerts.recent_events(s, console.scope, 20)}

    return console.render("alerts.html", conditions=alerts.CONDITIONS, **read(console, load))


def _body(name: str, severity: str, condition: str, resources: str, threshold: str,
          operator: str, period: str, emails: str, webhook: str, secret: str) -> dict[str, Any]:
    """The form as the API's body: `condition` is "resourceType/type"."""
    resource_type, _, kind = condition.partition("/")
    body: dict[str, Any] = {
        "name": name, "severity": severity,
        "condition": {"resourceType": resource_type, "type": kind,
                      "resources": [r.strip() for r in resources.split(",") if r.strip()]
                      or ["*"]},
        "actions": []}
    if alerts.is_threshold(kind):
        try:
            value = float(threshold)
            body["condition"]["threshold"] = int(value) if value.is_integer() else value
        except ValueError:
            body["condition"]["threshold"] = None
        body["condition"]["operator"] = operator
        if period.strip().isdigit():
            body["condition"]["period"] = int(period)
    addresses = [e.strip() for e in emails.replace(";", ",").split(",") if e.strip()]
    if addresses:
        body["actions"].append({"type": "email", "emails": addresses})
    if webhook.strip():
        body["actions"].append({"type": "webhook", "url": webhook.strip(), "secret": secret})
    return body


@router.post("/alerts")
def create_alert(console: ConsoleDep, name: Annotated[str, Form(max_length=255)],
                 severity: Annotated[str, Form(max_length=16)],
                 condition: Annotated[str, Form(max_length=80)],
                 resources: Annotated[str, Form(max_length=2000)] = "",
                 threshold: Annotated[str, Form(max_length=40)] = "",
                 operator: Annotated[str, Form(max_length=16)] = "GREATER_THAN",
                 period: Annotated[str, Form(max_length=8)] = "",
                 emails: Annotated[str, Form(max_length=4000)] = "",
                 webhook: Annotated[str, Form(max_length=2048)] = "",
                 secret: Annotated[str, Form(max_length=255)] = "") -> Response:
    console.require("operator")
    body = _body(name, severity, condition, resources, threshold, operator, period, emails,
                 webhook, secret)
    return act(console, lambda s: alerts.create(s, console.scope, body,
                                                 deny=console.plane.webhook_deny),
               then=lambda alert: f"/alerts/{alert.id}", notice="Alert created.",
               back="/alerts")


@router.get("/alerts/{alert_id}", response_class=HTMLResponse)
def alert_page(console: ConsoleDep, alert_id: str) -> HTMLResponse:
    def load(s: Session) -> dict[str, Any]:
        alert = alerts.get(s, console.scope, alert_id)
        events, total = alerts.history(s, console.scope, alert_id, 0, 200,
                                       detailed=console.principal.may("admin"))
        return {"alert": views.alert(alert, alerts.looked_at(s, [alert.id]).get(alert.id)),
                "events": events, "total": total}

    return console.render("alert.html", **read(console, load))


@router.post("/alerts/{alert_id}/{action}")
def alert_action(console: ConsoleDep, alert_id: str, action: str) -> Response:
    console.require("operator")
    here = f"/alerts/{alert_id}"
    if action == "delete":
        return act(console, lambda s: alerts.remove(s, console.scope, alert_id),
                   then="/alerts", notice="Alert deleted.", back=here)
    if action in ("enable", "disable"):
        return act(console, lambda s: alerts.update(s, console.scope, alert_id,
                                                    {"enabled": action == "enable"},
                                                    deny=console.plane.webhook_deny),
                   then=here, notice=f"Alert {action}d.", back=here)
    return console.redirect(here, error=f"unknown action {action!r}")
