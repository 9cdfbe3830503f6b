"""HTTP push in the API process: the composition root builds ingest's push service and
hands it to the API as its `core.push.PushSink` (the API may not import ingest)."""

from __future__ import annotations

from core.settings import Settings
from db.connect import database_url
from ingest.http_push import HttpPushService


def push_service(settings: Settings) -> HttpPushService:
    """Started; it writes with ``SMARTBY_INGEST_HTTP_DATABASE_URL`` (the ingest login),
    or the API's own database URL."""
    configured = settings.ingest_http_database_url
    url = configured.get_secret_value() if configured is not None else database_url(settings)
    service = HttpPushService(settings, url)
    service.start()
    return service
