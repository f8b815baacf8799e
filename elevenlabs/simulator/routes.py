"""The simulator's HTTP face: ElevenLabs' URLs, its auth header, its JSON errors."""

import json

from flask import Flask, Response, request

from elevenlabs.simulator import answers


def build(sim) -> Flask:
    """Return the WSGI app serving ``sim`` (a ``Simulator``)."""
    app = Flask("elevenlabs.simulator")

    @app.before_request
    def keep_and_check_key():
        key = request.headers.get("xi-api-key")
        sim.record(request.path, key, request.get_json(silent=True))
        if sim.api_key and key != sim.api_key:
            return _json(answers.ERROR_401, 401)
        return None

    @app.post(answers.OUTBOUND_CALL_PATH)
    def outbound_call():
        if sim.scripted:
            status, body = sim.scripted_answer(sim.received[-1])
            if isinstance(body, str):
                return Response(body, status=status, content_type="text/html")
            return _json(body, status)
        body = request.get_json(silent=True)
        problems = answers.outbound_call_problems(body)
        if problems:
            return _json({"detail": problems}, 422)
        status, answer, ring = sim.place(body)
        response = _json(answer, status)
        if ring:  # the phone rings once the answer is on the wire, as it would
            response.call_on_close(ring)
        return response

    @app.get(answers.CONVERSATIONS_PATH)
    def conversation_list():
        problem = answers.list_problem(request.args)
        if problem:
            return _json({"detail": [problem]}, 422)
        return _json(sim.listing(request.args))

    @app.get(f"{answers.CONVERSATIONS_PATH}/<conversation_id>")
    def conversation(conversation_id):
        fault = sim.conversation_faults.get(conversation_id)
        if fault is not None:
            return _json(answers.FAULTS[fault], fault)
        document = sim.conversations.get(conversation_id)
        if document is None:
            return _json(answers.ERROR_404_CONVERSATION, 404)
        return _json(document)

    @app.errorhandler(404)
    @app.errorhandler(405)
    def not_here(error):
        # FastAPI's own answer for a URL or method it does not serve.
        return _json({"detail": error.name}, error.code)

    return app


def _json(body, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")
