"""WSGI entry point: the production HTTP server (granian, docs/adr/0013) loads it.

Anonymous product reads are answered in front of Django's handler by the lean
gateway (docs/adr/0020); every other request, and any read the gateway does not
take, reaches Django unchanged.
"""

import os

from django.core.wsgi import get_wsgi_application

# Production unless told otherwise: it refuses to start without its secrets, so a
# deployment that forgets DJANGO_SETTINGS_MODULE fails instead of serving.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

django_application = get_wsgi_application()

from django.conf import settings  # noqa: E402

from emporium.catalog.fast_path import gateway_routes  # noqa: E402
from emporium.core.gateway import LeanGateway, WSGIApplication  # noqa: E402
from emporium.dashboard.middleware import request_answered  # noqa: E402


def lean_gateway(wrapped: WSGIApplication) -> LeanGateway:
    """The gateway as production runs it: the catalog's lean reads, counted as Django's are."""
    return LeanGateway(wrapped, gateway_routes(), on_answered=request_answered)


application = (
    lean_gateway(django_application) if settings.LEAN_GATEWAY_ENABLED else django_application
)
