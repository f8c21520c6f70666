"""ASGI entry point: HTTP to Django, WebSockets to the realtime app's router.

Production serves HTTP with granian (WSGI, docs/adr/0013) and WebSockets
with this application under uvicorn (docs/adr/0014); the embedded profile
(`make run`) serves both from this one application, static files included.
"""

import os

from django.core.asgi import get_asgi_application

# Production unless told otherwise: it refuses to start without its secrets, so a
# deployment that forgets DJANGO_SETTINGS_MODULE fails instead of serving.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

# Django must be set up before anything imports models.
django_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from emporium.realtime.routing import lifespan_application, websocket_application  # noqa: E402

http_application = (
    ASGIStaticFilesHandler(django_application)
    if settings.EMPORIUM_PROFILE == "embedded"
    else django_application
)

application = ProtocolTypeRouter(
    {
        "http": http_application,
        "websocket": websocket_application,
        # Starts the realtime transport with the server and stops it on shutdown.
        "lifespan": lifespan_application,
    }
)
