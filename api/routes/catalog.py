"""The DCAT-AP-NO catalogue of the open datasets (``/v1/catalog``), as JSON-LD."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from api import models
from api.dcat import catalogue, facts_of, facts_query
from api.responses import MAX_AGE_CATALOGUE, JSONLDBytes, public_base_url, read_response
from core.settings import Settings

router = APIRouter(tags=["catalogue"])


@router.get(
    "/catalog",
    summary="DCAT-AP-NO catalogue of the datasets (JSON-LD)",
    response_model=models.DcatCatalog,
    response_class=JSONLDBytes,
)
async def dcat_catalogue(request: Request) -> Response:
    """A dcat:Catalog with a dcat:Dataset per export dataset (DCAT-AP-NO mandatory
    properties: title and description in Bokmål and English, identifier, EU data
    theme, publisher, contact point, distributions with access URL, format and the
    NLOD 2.0 licence), and the API as a dcat:DataService."""
    settings: Settings = request.app.state.settings
    async with request.app.state.pool.connection() as conn:
        cursor = await conn.execute(facts_query())
        facts = facts_of(await cursor.fetchall())
    document = catalogue(settings, public_base_url(request), facts)
    return read_response(request, document, max_age=MAX_AGE_CATALOGUE, response_class=JSONLDBytes)
