"""The DCAT-AP-NO catalogue of the open datasets (``/v1/catalog``), as JSON-LD."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from api.dcat import catalogue
from api.responses import MAX_AGE_CATALOGUE, read_response
from core.settings import Settings

router = APIRouter(tags=["catalogue"])

JSON_LD = "application/ld+json"


class JSONLDBytes(Response):
    """A JSON-LD document already serialised."""

    media_type = JSON_LD


def public_base_url(request: Request, settings: Settings) -> str:
    """The API's public root without ``/v1``: the configured one, else the request's
    (behind a proxy, set ``SMARTBY_API_PUBLIC_URL`` so links point at the right host)."""
    return (settings.api_public_url or str(request.base_url)).rstrip("/")


@router.get(
    "/catalog",
    summary="DCAT-AP-NO catalogue of the datasets (JSON-LD)",
    response_class=JSONLDBytes,
    responses={200: {"content": {JSON_LD: {}}}},
)
async def dcat_catalogue(request: Request) -> Response:
    """A dcat:Catalog with a dcat:Dataset per export dataset (DCAT-AP-NO mandatory
    properties: title and description in Bokmål and English, identifier, EU data
    theme, publisher, contact point, distributions with access URL, format and the
    NLOD 2.0 licence), and the API as a dcat:DataService."""
    settings: Settings = request.app.state.settings
    document = catalogue(settings, public_base_url(request, settings))
    return read_response(request, document, max_age=MAX_AGE_CATALOGUE, response_class=JSONLDBytes)
