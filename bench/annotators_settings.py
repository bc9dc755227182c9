"""Settings for bench/annotators.py only: the site's settings with a URLconf that adds a bare view.

Never used by the product; the bench starts gunicorn with DJANGO_SETTINGS_MODULE pointing here.
"""

from evalsite.settings import *  # noqa: F403

ROOT_URLCONF = "bench.annotators_urls"
