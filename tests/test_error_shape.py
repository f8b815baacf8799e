"""Every error leaves the app as ``{"error", "message", "details"}`` JSON."""

import pytest
from flask import Blueprint

from app import create_app


def assert_error_shape(response, status, code):
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error", "message", "details"}
    assert body["error"] == code
    assert body["message"]
    return body


def test_unknown_path_is_a_json_404(client):
    assert_error_shape(client.get("/no/such/thing"), 404, "not_found")


def test_wrong_method_is_a_json_405_naming_the_allowed_ones(client):
    response = client.delete("/healthz")
    assert_error_shape(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


@pytest.fixture
def echo_app(app_config):
    """An app with one extra JSON endpoint and one that fails, to see errors leave."""
    # TESTING re-raises unexpected errors; production does not, and that is what is checked.
    app = create_app({**app_config, "MAX_CONTENT_LENGTH": 1024, "PROPAGATE_EXCEPTIONS": False})
    extra = Blueprint("extra", __name__)

    @extra.post("/echo")
    def echo():
        from flask import request

        return {"got": request.get_json()}

    @extra.get("/boom")
    def boom():
        raise RuntimeError("an unexpected failure")

    app.register_blueprint(extra)
    yield app
    app.extensions["db_pool"].close()


def test_malformed_json_is_a_json_400(echo_app):
    response = echo_app.test_client().post(
        "/echo", data=b"{not json", content_type="application/json"
    )
    assert_error_shape(response, 400, "invalid_json")


def test_oversized_body_is_a_json_413(echo_app):
    response = echo_app.test_client().post(
        "/echo", data=b"x" * 2048, content_type="application/json"
    )
    assert_error_shape(response, 413, "payload_too_large")


def test_unexpected_exception_is_a_json_500_without_internals(echo_app):
    response = echo_app.test_client().get("/boom")
    body = assert_error_shape(response, 500, "internal_error")
    assert "unexpected failure" not in response.get_data(as_text=True)
    assert body["details"] == {}
