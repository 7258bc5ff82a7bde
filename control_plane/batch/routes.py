"""`POST /batch`: the Azure portal's batching of up to 20 Resource Manager requests (control_plane/batch/service.py).

The batch itself only needs a valid token (each request in it is authorised as itself); it counts as one tenant
write against the caller's throttling budget, and each request in it counts as itself.
"""

from __future__ import annotations

from flask import Blueprint, Response

from control_plane.arm import api_versions
from control_plane.arm.http import arm_json, json_body
from control_plane.authorization import actions
from control_plane.authorization.enforce import requires
from control_plane.batch import service

bp = Blueprint("batch", __name__)

# What the Azure portal sends (later versions answer large batches asynchronously, which this service does not).
API_VERSIONS = ("2020-06-01",)


@bp.route("/batch", methods=["POST"])
@api_versions.require_api_version(API_VERSIONS)
@requires(actions.BATCH)
def batch() -> Response:
    items = service.parse(json_body())
    return arm_json({"responses": [service.run(item) for item in items]})
