"""The API's routers, each included under :data:`API`."""

API = "/api/v1"
