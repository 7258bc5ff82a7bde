"""Microsoft.Insights: the subscription's activity log, as `az monitor activity-log list` reads it.

The filter travels in every nextLink (az follows nextLink verbatim and does not add it again), and a caller sees
only the events of resources they may read the log of.
"""

from __future__ import annotations

from flask import Blueprint, request

from control_plane.activity import filters, service
from control_plane.activity.serialize import to_event
from control_plane.arm import api_versions
from control_plane.arm.errors import NotFound
from control_plane.arm.http import arm_json, base_url
from control_plane.arm.paging import next_link, page_body, page_request
from control_plane.authorization import actions, policy
from control_plane.authorization.enforce import requires, subscription_for_caller, visible_below
from control_plane.context import app_context
from control_plane.db import utcnow

bp = Blueprint("activity", __name__)

# `management` sits where ARM has a name, so the canonical-path middleware leaves its casing alone: matched here.
EVENTS = "/subscriptions/<subscription_id>/providers/Microsoft.Insights/eventtypes/<event_type>/values"


@bp.route(EVENTS, methods=["GET"])
@api_versions.require_api_version(api_versions.ACTIVITY_LOG)
@requires(actions.EVENTS_READ, filtered=True)
def list_events(subscription_id: str, event_type: str):
    if event_type.lower() != "management":
        raise NotFound(f"The event type '{event_type[:64]}' is not supported; only 'management' is.",
                       code="InvalidResourceType")
    query = filters.parse_filter(request.args.get("$filter"), utcnow())
    select = filters.parse_select(request.args.get("$select"))
    ctx = app_context()
    page = page_request(request.args, 2, ctx.settings.page_size)
    after = service.decode_after(page.after)
    with ctx.db.session() as session:
        subscription = subscription_for_caller(session, subscription_id)
        visible = visible_below(actions.EVENTS_READ, policy.subscription_scope(subscription.id))
        entries, last = service.list_page(session, subscription.tenant_id, subscription.id, query, visible, after,
                                          page.size)
        items = [to_event(entry, select) for entry in entries]
    return arm_json(page_body(items, next_link(base_url(), request.path, request.args, last)))
