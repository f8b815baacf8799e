"""The application factory: ``create_app()``; production runs ``gunicorn 'app:create_app()'``."""

from flask import Flask

import config
import db
import errors


def create_app(test_config=None):
    """Create the app: settings from the environment, then ``test_config`` over them."""
    app = Flask(__name__)
    app.config.from_mapping(config.from_env())
    if test_config:
        app.config.from_mapping(test_config)
    config.check(app.config)

    _init_sentry(app)
    errors.init_app(app)
    db.init_app(app, _open_pool(app))

    import driver_data
    import health
    import openapi
    import ops_console
    import webhooks_elevenlabs

    app.register_blueprint(health.bp)
    app.register_blueprint(driver_data.bp)
    app.register_blueprint(webhooks_elevenlabs.bp)
    app.register_blueprint(ops_console.bp)
    app.register_blueprint(openapi.bp)
    return app


def _open_pool(app):
    url = app.config["DATABASE_URL"]
    if not url:
        import embedded_db

        server = embedded_db.start()
        app.extensions["embedded_postgres"] = server  # kept alive with the app
        url = app.config["DATABASE_URL"] = embedded_db.url(server)
    return db.open_pool(
        url,
        min_size=app.config["DB_POOL_MIN_SIZE"],
        max_size=app.config["DB_POOL_MAX_SIZE"],
        timeout=app.config["DB_POOL_TIMEOUT"],
    )


def _init_sentry(app) -> None:
    if not app.config["SENTRY_DSN"]:
        return
    import sentry_sdk
    from sentry_sdk.integrations.flask import FlaskIntegration

    sentry_sdk.init(
        dsn=app.config["SENTRY_DSN"],
        integrations=[FlaskIntegration()],
        environment=app.config["APP_ENV"],
        release=app.config["RELEASE"] or None,
        send_default_pii=False,
    )
