"""The application factory: ``create_app()``; production runs ``gunicorn 'app:create_app()'``."""

from flask import Flask

import config
import db
import errors
from observability import logs, metrics

# Request headers worth seeing in a Sentry event; every other one is "[Filtered]".
SAFE_HEADERS = ["content-type", "content-length", "user-agent", "accept", "x-request-id", "host"]


def create_app(test_config=None):
    """Create the app: settings from the environment, then ``test_config`` over them."""
    app = Flask(__name__, static_folder=None)  # the console serves its own
    app.config.from_mapping(config.from_env())
    if test_config:
        app.config.from_mapping(test_config)
    config.check(app.config)

    logs.init_app(app)
    _init_sentry(app)
    errors.init_app(app)
    metrics.init_app(app)
    db.init_app(app)

    import driver_data
    import webhooks_elevenlabs
    from api import openapi
    from console import views as console
    from observability import health

    for blueprint in (health.bp, driver_data.bp, webhooks_elevenlabs.bp, console.bp, openapi.bp):
        app.register_blueprint(blueprint)
    return app


def _init_sentry(app) -> None:
    """Report unhandled errors to Sentry/GlitchTip when SENTRY_DSN is set, without personal data."""
    if not app.config["SENTRY_DSN"]:
        return
    import sentry_sdk
    from sentry_sdk.integrations.flask import FlaskIntegration

    sentry_sdk.init(
        dsn=app.config["SENTRY_DSN"],
        integrations=[FlaskIntegration()],
        environment=app.config["APP_ENV"],
        release=app.config["RELEASE"] or None,
        # PII off (``data_collection`` supersedes send_default_pii in sentry-sdk 2.x):
        # bodies, cookies, query strings and frame locals can hold drivers' data.
        data_collection={
            "user_info": False,
            "cookies": {"mode": "off"},
            "http_headers": {"request": {"mode": "allowlist", "terms": SAFE_HEADERS}},
            "http_bodies": [],
            "url_query_params": {"mode": "off"},
            "database_query_data": False,
            "stack_frame_variables": False,
        },
        # What remains (messages, breadcrumbs) is cleaned like a log line.
        before_send=lambda event, hint: logs.scrub(event),
        before_breadcrumb=lambda crumb, hint: logs.scrub(crumb),
    )
