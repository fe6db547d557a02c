"""Load the settings before anything else, and turn configuration errors into plain lines.

manage.py, wsgi.py and asgi.py call `settings_or_exit()` first: each problem settings.py found
is printed on stderr as one line, all of them at once, and the process exits with status 2,
without a traceback (a 30-frame traceback per missing secret is what an operator got before).
"""

from __future__ import annotations

import os
import sys

EXIT_CONFIG = 2


def settings_or_exit() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "connectors_site.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        settings.INSTALLED_APPS  # noqa: B018 - imports and checks the settings module
    except ImproperlyConfigured as e:
        for line in str(e).splitlines():
            if line.strip():
                print(f"Configuration error: {line}", file=sys.stderr)
        sys.stderr.flush()
        raise SystemExit(EXIT_CONFIG) from None
