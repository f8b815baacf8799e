"""What ElevenLabs answers, as its API reference shows: bodies, errors, request validation.

The 422 detail is FastAPI's, which ElevenLabs runs.
"""

ANSWER_OK = {
    "success": True,
    "message": "Call initiated successfully",
    "conversation_id": "conv_01jx8k2m9q4r5s6t7v8w9x0y1z",
    "callSid": "CA1b2c3d4e5f60718293a4b5c6d7e8f901",
}
ANSWER_UNSUCCESSFUL = {
    "success": False,
    "message": "Failed to initiate call",
    "conversation_id": None,
    "callSid": None,
}
ERROR_401 = {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}}
ERROR_422 = {
    "detail": [
        {
            "type": "missing",
            "loc": ["body", "agent_phone_number_id"],
            "msg": "Field required",
            "input": None,
        }
    ]
}
ERROR_429_CONCURRENCY = {
    "detail": {
        "status": "too_many_concurrent_requests",
        "message": "Too many concurrent requests for your plan",
    }
}
ERROR_429_BUSY = {
    "detail": {"status": "system_busy", "message": "The system is busy, try again later"}
}
ERROR_404_CONVERSATION = {
    "detail": {"status": "conversation_not_found", "message": "Conversation not found"}
}
# What a test may make the conversation endpoint answer instead, by HTTP status.
FAULTS = {429: ERROR_429_BUSY, 500: {"detail": "Internal Server Error"}}


def problem(kind: str, loc: list, msg: str, value) -> dict:
    return {"type": kind, "loc": loc, "msg": msg, "input": value}


def outbound_call_problems(body) -> list[dict]:
    """Return what is wrong with an outbound-call body, as a 422's ``detail`` list."""
    if not isinstance(body, dict):
        msg = "Input should be a valid dictionary or object to extract fields from"
        return [problem("model_attributes_type", ["body"], msg, body)]
    found = []
    for name in ("agent_id", "agent_phone_number_id", "to_number"):
        if name not in body:
            found.append(problem("missing", ["body", name], "Field required", None))
        elif not isinstance(body[name], str):
            found.append(
                problem("string_type", ["body", name], "Input should be a valid string", body[name])
            )
    client_data = body.get("conversation_initiation_client_data")
    if client_data is None:
        return found
    where = ["body", "conversation_initiation_client_data"]
    variables = client_data.get("dynamic_variables") if isinstance(client_data, dict) else None
    if not isinstance(client_data, dict) or not isinstance(variables, dict | None):
        msg = "Input should be a valid dictionary"
        return [*found, problem("dict_type", where, msg, client_data)]
    for name, value in (variables or {}).items():
        if not isinstance(value, str | int | float | bool) or name.startswith("system__"):
            msg = "Input should be a string, a number or a boolean, under a name not system__*"
            found.append(problem("value_error", [*where, "dynamic_variables", name], msg, value))
    return found


def list_problem(args) -> dict | None:
    """Return the 422 item for the list's first bad query parameter, or None."""
    size = args.get("page_size", "30")
    if not (size.isdigit() and 1 <= int(size) <= 100):
        msg = "Input should be an integer from 1 to 100"
        return problem("int_parsing", ["query", "page_size"], msg, size)
    if not args.get("cursor", "0").isdigit():
        return problem("value_error", ["query", "cursor"], "Invalid cursor", args["cursor"])
    for name in ("call_start_after_unix", "call_start_before_unix"):
        if not args.get(name, "0").isdigit():
            return problem(
                "int_parsing", ["query", name], "Input should be a valid integer", args[name]
            )
    return None
