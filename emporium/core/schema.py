"""The OpenAPI description of the errors every operation can answer with.

Views declare their successful responses; the error responses are derived
here from what the view is made of, so that the document cannot forget one:

* 400 - the operation reads a body or query parameters, or changes something
  (a service refuses input with ``InvalidInput``);
* 401 - the view authenticates requests (a bad or expired token), or it is a
  token endpoint (wrong credentials, a bad refresh token);
* 403 - a permission other than "anyone" guards it, or a write is made with a
  session cookie (CSRF);
* 404 - the path names an object;
* 406 - always: content negotiation offers JSON only;
* 409 - a write that may conflict with the stored state (``Conflict``, a
  constraint caught by the database, an object still referenced);
* 413 and 415 - the operation takes a body (size limit, media type);
* 422 - the operation takes an ``Idempotency-Key`` (the key reused for
  another request);
* 429 - a throttle of the view counts this method;
* 503 - always: the database or another required service cannot be reached.

Each one has the one error shape, the ``Error`` component. A status a view
already declares keeps its description and gains that body if it had none.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent, force_instance, is_basic_serializer
from drf_spectacular.utils import OpenApiParameter
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import SAFE_METHODS, AllowAny
from rest_framework_simplejwt.views import TokenViewBase

from emporium.core.idempotency import HEADER as IDEMPOTENCY_HEADER
from emporium.core.throttling import UserWriteThrottle

ERROR_COMPONENT = "Error"

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every error the API answers with has this shape.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {
                    "type": "string",
                    "description": "Stable, machine-readable: validation_error, not_found, ...",
                },
                "message": {"type": "string", "description": "For people; may change."},
                "details": {
                    "type": "object",
                    "additionalProperties": True,
                    "description": "For validation errors, the messages per field.",
                },
            },
        }
    },
}

ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "The request is malformed or its data is invalid (see details).",
    401: "Missing, invalid or expired credentials.",
    403: "The caller may not perform this operation.",
    404: "No such object, or not one the caller may see.",
    406: "The Accept header asks for something other than JSON.",
    409: "The request conflicts with the current state of the resource.",
    413: "The request body is larger than the server accepts.",
    415: "The body's Content-Type is not one the operation accepts.",
    422: f"The {IDEMPOTENCY_HEADER} was already used for a different request.",
    429: "Too many requests; retry after the number of seconds in Retry-After.",
    503: "A service the API depends on is unavailable; retry later.",
}

_RETRY_AFTER = {
    "Retry-After": {
        "schema": {"type": "integer", "minimum": 1},
        "description": "Seconds to wait before retrying.",
    }
}


# An empty query value, which DRF reads as "not given" for an optional field.
_EMPTY_VALUE = {"type": "string", "maxLength": 0}


class ErrorDescribingAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema plus the error responses described above.

    It also tells the truth about optional query parameters read by a
    serializer: DRF takes ``?limit=`` as "not given" (the default applies), the
    way an HTML form sends an empty field, so each of them also allows the
    empty string.
    """

    def _process_override_parameters(self, direction: Any = "request") -> dict[Any, Any]:
        result: dict[Any, Any] = super()._process_override_parameters(direction)
        for parameter in self.get_override_parameters():
            if not is_basic_serializer(parameter):
                continue
            for name, field in force_instance(parameter).fields.items():
                described = result.get((name, OpenApiParameter.QUERY))
                if described is None or field.required or field.read_only:
                    continue
                described["schema"] = {"anyOf": [described["schema"], _EMPTY_VALUE]}
                described["allowEmptyValue"] = True
        return result

    def get_operation(
        self,
        path: str,
        path_regex: str,
        path_prefix: str,
        method: str,
        registry: Any,
    ) -> dict[str, Any] | None:
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        component = ResolvedComponent(
            name=ERROR_COMPONENT,
            type=ResolvedComponent.SCHEMA,
            schema=ERROR_SCHEMA,
            object=ERROR_COMPONENT,
        )
        self.registry.register_on_missing(component)
        content = {"application/json": {"schema": component.ref}}
        responses: dict[str, Any] = operation["responses"]
        declared = {int(code) for code in responses if code[0] in "45"}
        for status_code in sorted(self.error_statuses(operation) | declared):
            response = responses.setdefault(
                str(status_code), {"description": ERROR_DESCRIPTIONS.get(status_code, "")}
            )
            response.setdefault("content", content)
            if status_code in (429, 503):
                response.setdefault("headers", _RETRY_AFTER)
        return operation

    def error_statuses(self, operation: dict[str, Any]) -> set[int]:
        """The error statuses this operation can answer with (see the module docstring)."""
        view = self.view
        unsafe = self.method not in SAFE_METHODS
        parameters = operation.get("parameters", [])
        has_body = "requestBody" in operation
        statuses = {406, 503}
        if has_body or unsafe or any(p["in"] == "query" for p in parameters):
            statuses.add(400)
        authenticators = view.get_authenticators()
        if authenticators or isinstance(view, TokenViewBase):
            statuses.add(401)
        only_anyone = all(isinstance(p, AllowAny) for p in view.get_permissions())
        session = any(isinstance(a, SessionAuthentication) for a in authenticators)
        if not only_anyone or (unsafe and session):
            statuses.add(403)
        if any(p["in"] == "path" for p in parameters):
            statuses.add(404)
        if unsafe:
            statuses.add(409)
        if has_body:
            statuses |= {413, 415}
        if any(p["in"] == "header" and p["name"] == IDEMPOTENCY_HEADER for p in parameters):
            statuses.add(422)
        throttles = view.get_throttles()
        if any(unsafe or not isinstance(t, UserWriteThrottle) for t in throttles):
            statuses.add(429)
        return statuses


def _component_properties(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        schema = document["components"]["schemas"].get(ref.rsplit("/", 1)[1], {})
    return schema.get("properties", {})


def _path_parameters(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


def add_links_from_created_objects(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """Links from each 201 to the operations on the object it created.

    ``POST /api/cart/items/`` answers 201 with the new line's ``id``; every
    operation under ``/api/cart/items/{id}/`` takes that id. The links say so,
    which lets a client (or a stateful fuzzer) follow create -> read -> change ->
    delete. Path parameters the create itself had are passed along.
    """
    paths: dict[str, Any] = result.get("paths", {})
    for path, operations in paths.items():
        created = operations.get("post", {}).get("responses", {}).get("201")
        if created is None:
            continue
        body = created.get("content", {}).get("application/json", {}).get("schema", {})
        if "id" not in _component_properties(result, body):
            continue
        links: dict[str, Any] = {}
        for target, target_operations in paths.items():
            rest = target[len(path) :] if target.startswith(path) else ""
            if not rest.startswith("{"):
                continue
            object_parameter = rest[1 : rest.index("}")]
            parameters = {name: f"$request.path.{name}" for name in _path_parameters(path)}
            parameters[object_parameter] = "$response.body#/id"
            if set(_path_parameters(target)) != set(parameters):
                continue  # it names another object too, e.g. one review of the new product
            for method, operation in target_operations.items():
                if not isinstance(operation, dict) or "operationId" not in operation:
                    continue
                links[operation["operationId"]] = {
                    "operationId": operation["operationId"],
                    "parameters": parameters,
                    "description": f"{method.upper()} {target} for the object just created.",
                }
        if links:
            created["links"] = links
    return result
