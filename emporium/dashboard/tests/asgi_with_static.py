"""The project's ASGI application with static files served, for the browser test's server.

In production nginx serves /static/; the embedded profile's application does it
itself, but the test server may run on the production profile (PostgreSQL and
Redis), so it adds the same handler Django's runserver uses.
"""

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

from config.asgi import application as project_application

application = ASGIStaticFilesHandler(project_application)
