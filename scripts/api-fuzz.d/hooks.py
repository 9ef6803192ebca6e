"""Schemathesis hooks for scripts/api-fuzz: the checks docs/api.md adds to
the OpenAPI document's (every error answer is a well-formed problem)."""

import json

import schemathesis

PROBLEM_FIELDS = {"type": str, "title": str, "status": int, "detail": str}


@schemathesis.check
def problem_json(ctx, response, case):
    """Every 4xx and 5xx answer is application/problem+json: an object
    with type (/problems/...), title, the status again, and a detail."""
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])
    if isinstance(content_type, list):
        content_type = content_type[0] if content_type else ""
    if not content_type.startswith("application/problem+json"):
        raise AssertionError(
            f"{response.status_code} answered as {content_type!r}, "
            "not application/problem+json"
        )
    try:
        body = json.loads(response.content)
    except ValueError as error:
        raise AssertionError(f"the problem is not JSON: {error}") from None
    if not isinstance(body, dict):
        raise AssertionError("the problem is not a JSON object")
    for field, kind in PROBLEM_FIELDS.items():
        if not isinstance(body.get(field), kind) or body.get(field) == "":
            raise AssertionError(f"the problem's {field!r} is missing or empty")
    if not body["type"].startswith("/problems/"):
        raise AssertionError(f"the problem's type {body['type']!r} is not /problems/...")
    if body["status"] != response.status_code:
        raise AssertionError(
            f"the problem says {body['status']}, the status line {response.status_code}"
        )
    return None
