"""WSGI entry point: the production HTTP server (granian, docs/adr/0013) loads it.

Product reads, and a signed-in customer's own reads (profile, cart, wishlist,
orders), are answered in front of Django's handler by the lean gateway
(docs/adr/0020, docs/adr/0034); every other request, and any read the gateway
does not take, reaches Django unchanged.
"""

import os

from django.core.wsgi import get_wsgi_application

# Production unless told otherwise: it refuses to start without its secrets, so a
# deployment that forgets DJANGO_SETTINGS_MODULE fails instead of serving.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

django_application = get_wsgi_application()

from django.conf import settings  # noqa: E402

from emporium.accounts import fast_path as accounts_fast_path  # noqa: E402
from emporium.accounts.authentication import bearer_user  # noqa: E402
from emporium.carts import fast_path as carts_fast_path  # noqa: E402
from emporium.catalog import fast_path as catalog_fast_path  # noqa: E402
from emporium.core.gateway import LeanGateway, WSGIApplication  # noqa: E402
from emporium.dashboard.middleware import request_answered  # noqa: E402
from emporium.orders import fast_path as orders_fast_path  # noqa: E402
from emporium.wishlists import fast_path as wishlists_fast_path  # noqa: E402


def lean_gateway(wrapped: WSGIApplication) -> LeanGateway:
    """The gateway as production runs it: the lean reads, counted as Django's are."""
    routes = [
        *catalog_fast_path.gateway_routes(),
        *accounts_fast_path.gateway_routes(),
        *carts_fast_path.gateway_routes(),
        *wishlists_fast_path.gateway_routes(),
        *orders_fast_path.gateway_routes(),
    ]
    return LeanGateway(wrapped, routes, on_answered=request_answered, bearer_user=bearer_user)


application = (
    lean_gateway(django_application) if settings.LEAN_GATEWAY_ENABLED else django_application
)
