"""The data plane: the Docker token service on the control plane and the Distribution registry each registry runs.

`routes` is the token service (`/oauth2/token`, `/oauth2/exchange`), `service` decides who gets which access,
`tokens` signs what Distribution and clients read, `certificates` makes the certificate bundle Distribution trusts,
`distribution` generates a registry's Distribution configuration and `runner` starts the Distribution process.
"""
