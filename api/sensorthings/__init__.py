"""An OGC SensorThings API v1.1 read-only view of the open data (DESIGN.md, "Open
data API"), mounted at ``/sta/v1.1``: `model` maps the tables onto the STA entities,
`odata` parses the query options, `compile` turns them into SQL and `routes`
serves them."""

from api.sensorthings.routes import router

__all__ = ["router"]
