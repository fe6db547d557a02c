from __future__ import annotations

from django.core.asgi import get_asgi_application

from connectors_site.startup import settings_or_exit

settings_or_exit()
application = get_asgi_application()
