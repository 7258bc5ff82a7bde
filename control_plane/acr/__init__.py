"""ACR's data-plane metadata API, `/acr/v1/…`: repositories, tags and manifests with their `changeableAttributes`,
served by the registry app (routes.py) over the content models (service.py) in ACR's JSON shapes (serialize.py)."""
