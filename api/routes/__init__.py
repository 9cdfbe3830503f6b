"""The API's routers, one module per group of routes under /v1."""
