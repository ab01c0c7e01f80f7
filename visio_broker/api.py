"""What every REST endpoint shares: API-key authentication, scopes, per-key throttling,
application/problem+json errors, Idempotency-Key on POST and ETag / If-Match.

API views inherit ``ApiView`` (or ``ApiGenericView``) and declare ``scopes``, the scope each
HTTP method needs; everything else here applies by itself.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import Token
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, connections, router, transaction
from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone
from django.utils.datastructures import MultiValueDict
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from rest_framework import exceptions, serializers
from rest_framework.authentication import BaseAuthentication
from rest_framework.generics import GenericAPIView
from rest_framework.parsers import JSONParser
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle
from rest_framework.utils.json import strict_constant
from rest_framework.views import APIView

from agencies.apikeys import key_parse, secret_hash, secret_matches
from agencies.models import Agency, ApiKey
from agencies.services import apikey_used
from visio_broker.api_key_cache import api_key_lookup, api_key_used
from visio_broker.audit import _acting_key
from visio_broker.errors import DomainError, InvalidInput, NoCapacity
from visio_broker.models import IdempotentRequest

if TYPE_CHECKING:
    from rest_framework.permissions import _PermissionClass

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "urn:visio-broker:problem:"
IDEMPOTENCY_TTL = timedelta(hours=24)
# A first request that has not finished after this long is taken to have died with its worker.
IDEMPOTENCY_ABANDONED_AFTER = timedelta(minutes=5)
_DUMMY_HASH = secret_hash("no such key")


# --- Authentication and scopes -----------------------------------------------------------------


class ApiClient:
    """``request.user`` of an API call: the agency's system, acting through one key."""

    is_authenticated = True
    is_anonymous = False
    is_active = True

    def __init__(self, key: ApiKey) -> None:
        self.key = key
        self.agency: Agency = key.agency

    def __str__(self) -> str:
        return f"api-key:vbk_{self.key.prefix}"


def api_key(request: Request) -> ApiKey | None:
    """The key the request was authenticated with, if any."""
    key = getattr(request, "auth", None)
    return key if isinstance(key, ApiKey) else None


def client_ip(request: Request) -> str | None:
    from meetings.feeds import client_address

    return client_address(request._request) or None


# --- Queries compiled once ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Compiled:
    sql: str
    # For each SQL parameter: (True, which argument value it takes) or (False, a constant).
    parameters: tuple[tuple[bool, Any], ...]
    converters: dict[int, tuple[list[Any], Any]]


class CompiledRows:
    """The rows of a ``values_list`` queryset whose SQL is compiled once per database and
    argument shape, not per call: Django's compilation costs more than a small query.

    ``build(*arguments)`` makes the queryset; an argument is an integer (an id), a list of
    integers, an aware datetime or a string, and each must reach the SQL as one parameter:
    compiling with stand-ins checks it, and raises ImproperlyConfigured otherwise.
    Rows get the same conversions from the database as the ORM applies.
    """

    def __init__(self, build: Callable[..., QuerySet[Any, Any]]) -> None:
        self._build = build
        self._compiled: dict[tuple[Any, ...], _Compiled] = {}

    def rows(self, *arguments: Any, using: str = "default") -> list[tuple[Any, ...]]:
        compiled = self._compiled_for(arguments, using)
        connection = connections[using]
        with connection.cursor() as cursor:
            cursor.execute(compiled.sql, self._parameters(compiled, arguments))
            found = cursor.fetchall()
        if not compiled.converters:
            return [tuple(row) for row in found]
        rows = []
        for row in found:
            converted = list(row)
            for position, (converters, expression) in compiled.converters.items():
                value = converted[position]
                for converter in converters:
                    value = converter(value, expression, connection)
                converted[position] = value
            rows.append(tuple(converted))
        return rows

    def sql(self, *arguments: Any, using: str = "default") -> tuple[str, list[Any]]:
        """The query and its parameters, for a larger statement (a CTE): what
        ``build(*arguments).query.get_compiler(using).as_sql()`` gives."""
        compiled = self._compiled_for(arguments, using)
        return compiled.sql, self._parameters(compiled, arguments)

    def _compiled_for(self, arguments: tuple[Any, ...], using: str) -> _Compiled:
        shape = tuple(len(a) if isinstance(a, list) else type(a) for a in arguments)
        key = (using, connections[using].vendor, shape)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = self._compile(using, shape)
        return compiled

    @staticmethod
    def _parameters(compiled: _Compiled, arguments: tuple[Any, ...]) -> list[Any]:
        values = [
            value
            for argument in arguments
            for value in (argument if isinstance(argument, list) else [argument])
        ]
        return [values[taken] if given else taken for given, taken in compiled.parameters]

    def _compile(self, using: str, shape: tuple[Any, ...]) -> _Compiled:
        stand_ins = _StandIns()
        arguments = [
            [stand_ins.take(int) for _ in range(kind)]
            if isinstance(kind, int)
            else stand_ins.take(kind)
            for kind in shape
        ]
        flat = [
            value
            for argument in arguments
            for value in (argument if isinstance(argument, list) else [argument])
        ]
        compiler = self._build(*arguments).query.get_compiler(using)
        sql, params = compiler.as_sql()
        # By type and value, so that a constant 1 is not taken for a stand-in True, or the like;
        # other constants (possibly unhashable) are never looked up.
        index = {(type(value), value): position for position, value in enumerate(flat)}
        parameters = tuple(
            (True, index[(type(param), param)])
            if type(param) in _StandIns.KINDS and (type(param), param) in index
            else (False, param)
            for param in params
        )
        if {taken for given, taken in parameters if given} != set(range(len(flat))):
            raise ImproperlyConfigured(f"An argument does not reach {sql!r} as a parameter.")
        columns = [expression for expression, _sql, _alias in compiler.select]
        return _Compiled(
            sql=sql, parameters=parameters, converters=compiler.get_converters(columns)
        )


class _StandIns:
    """Distinct values no real argument takes: negative integers, datetimes in 1901, strings
    in the reserved .invalid domain."""

    KINDS = (int, datetime, str)

    def __init__(self) -> None:
        self._count = 0

    def take(self, kind: type) -> Any:
        self._count += 1
        if kind is int:
            return -(10**9) + self._count
        if kind is datetime:
            return datetime(1901, 1, 1, tzinfo=UTC) + timedelta(microseconds=self._count)
        if kind is str:
            return f"stand-in-{self._count}@compiled.invalid"
        raise ImproperlyConfigured(f"CompiledRows takes no {kind.__name__} argument.")


@dataclass(frozen=True)
class _KeyQuery:
    """``ApiKey.objects.select_related("agency").filter(prefix=…)[:1]``, compiled once."""

    sql: str
    converters: dict[int, tuple[list[Any], Any]]
    key_fields: tuple[str, ...]
    key_columns: tuple[int, ...]
    agency_fields: tuple[str, ...]
    agency_columns: tuple[int, ...]


_KEY_QUERIES: dict[tuple[str, str], _KeyQuery] = {}
_PREFIX_PARAMETER = "prefix-placeholder"


def _key_query(alias: str) -> _KeyQuery:
    connection = connections[alias]
    found = _KEY_QUERIES.get((alias, connection.vendor))
    if found is not None:
        return found
    queryset = ApiKey.objects.using(alias).select_related("agency").filter(prefix=_PREFIX_PARAMETER)
    compiler = queryset[:1].query.get_compiler(alias)
    sql, params = compiler.as_sql()
    if tuple(params) != (_PREFIX_PARAMETER,):
        raise ImproperlyConfigured(f"Unexpected API key query parameters: {params!r}")
    key_info = compiler.klass_info
    agency_info = key_info["related_klass_infos"][0] if key_info else None
    if key_info is None or agency_info is None:
        raise ImproperlyConfigured("The API key query does not select its agency.")
    columns = [expression for expression, _sql, _alias in compiler.select]
    found = _KeyQuery(
        sql=sql,
        converters=compiler.get_converters(columns),
        key_fields=tuple(columns[i].target.attname for i in key_info["select_fields"]),
        key_columns=tuple(key_info["select_fields"]),
        agency_fields=tuple(columns[i].target.attname for i in agency_info["select_fields"]),
        agency_columns=tuple(agency_info["select_fields"]),
    )
    _KEY_QUERIES[(alias, connection.vendor)] = found
    return found


def apikey_with_agency(prefix: str) -> ApiKey | None:
    """The key with this prefix and its agency, like ``select_related("agency")`` gives them.

    The SQL is compiled once per database instead of per call (the ORM's compilation cost
    more than the query). Requests read it through visio_broker.api_key_cache, which keeps the
    result while no key or agency changes.
    """
    alias = router.db_for_read(ApiKey)
    query = _key_query(alias)
    connection = connections[alias]
    with connection.cursor() as cursor:
        cursor.execute(query.sql, (prefix,))
        found = cursor.fetchone()
    if found is None:
        return None
    row = list(found)
    for position, (converters, expression) in query.converters.items():
        value = row[position]
        for converter in converters:
            value = converter(value, expression, connection)
        row[position] = value
    key = ApiKey.from_db(alias, query.key_fields, [row[i] for i in query.key_columns])
    agency = Agency.from_db(alias, query.agency_fields, [row[i] for i in query.agency_columns])
    key.agency = agency
    return key


class ApiKeyAuthentication(BaseAuthentication):
    """``Authorization: Bearer vbk_<prefix>_<secret>``; a bad, revoked or expired key is 401."""

    def authenticate(self, request: Request) -> tuple[ApiClient, ApiKey] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _sep, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise exceptions.AuthenticationFailed(
                _("Send the API key as: Authorization: Bearer <key>."), code="invalid_key"
            )
        raw = key_parse(value)
        key = None
        if raw is not None:
            now = time.time()
            counter, timeout = throttle_counter(raw.prefix, now)
            secret = raw.secret
            found = api_key_lookup(
                raw.prefix,
                read=apikey_with_agency,
                presented=lambda kept: secret_matches(secret, kept.secret_hash),
                counter=counter,
                timeout=timeout,
            )
            key = found.key
            if found.hits is not None:
                request._throttle_hit = ThrottleHit(counter, found.hits, now)  # type: ignore[attr-defined]
        # Compare even when nothing was found, so timing does not tell which prefixes exist.
        matches = secret_matches(raw.secret if raw else "", key.secret_hash if key else _DUMMY_HASH)
        if key is None or not matches:
            raise exceptions.AuthenticationFailed(_("Unknown API key."), code="invalid_key")
        if key.revoked_at is not None:
            raise exceptions.AuthenticationFailed(
                _("This API key has been revoked."), code="key_revoked"
            )
        if not key.is_active():
            raise exceptions.AuthenticationFailed(
                _("This API key has expired."), code="key_expired"
            )
        apikey_used(key=key, ip=client_ip(request))
        api_key_used(key)
        return ApiClient(key), key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "visio_broker.api.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "vbk_<prefix>_<secret>",
            "description": "An agency API key, created by an agency admin or `apikey_create`.",
        }


class InsufficientScope(exceptions.PermissionDenied):
    default_code = "insufficient_scope"


def required_scope(view: Any, method: str) -> str | None:
    scopes: dict[str, str] = getattr(view, "scopes", {})
    method = method.upper()
    if method == "HEAD":
        method = "GET"
    return scopes.get(method)


class HasScope(BasePermission):
    """The key must carry the scope the view declares for the method."""

    def has_permission(self, request: Request, view: Any) -> bool:
        key = request.auth
        if not isinstance(key, ApiKey):
            raise exceptions.NotAuthenticated(
                _("Send an API key: Authorization: Bearer <key>."), code="not_authenticated"
            )
        scope = required_scope(view, request.method or "GET")
        if scope is not None and not key.has_scope(scope):
            raise InsufficientScope(_("This API key lacks the %(scope)s scope.") % {"scope": scope})
        return True


class ApiKeyThrottle(BaseThrottle):
    """A fixed window per key: one counter increment per request in the shared cache.

    The cache fails open (visio_broker.cache): with Redis down, calls are not throttled.
    """

    def __init__(self) -> None:
        self.limit, self.window = _parse_rate(settings.API_RATE_LIMIT)
        self._wait = 0.0

    def allow_request(self, request: Request, view: Any) -> bool:
        key = request.auth
        if not isinstance(key, ApiKey):
            return True
        now = time.time()
        counter, timeout = throttle_counter(key.prefix, now)
        # Counted already when the key came from the cache (one Redis round trip for both).
        taken: ThrottleHit | None = getattr(request, "_throttle_hit", None)
        if taken is not None and taken.counter == counter:
            count, now = taken.count, taken.at
        else:
            count = _window_hit(counter, timeout=timeout)
        if count > self.limit:
            self._wait = (now // self.window + 1) * self.window - now
            return False
        return True

    def wait(self) -> float:
        return max(1.0, self._wait)


@dataclass(frozen=True)
class ThrottleHit:
    counter: str
    count: int
    at: float


def throttle_counter(prefix: str, now: float) -> tuple[str, int]:
    """The key's fixed-window counter at ``now``: its name and how long it must live."""
    window = _parse_rate(settings.API_RATE_LIMIT)[1]
    return f"api-throttle:{prefix}:{int(now // window)}", window + 1


def _window_hit(name: str, *, timeout: int) -> int:
    """Count a hit on the fixed-window counter ``name``; the count so far, this one included."""
    incr_window = getattr(cache, "incr_window", None)
    if incr_window is not None:  # visio_broker.cache: one round trip to Redis
        count: int | None = incr_window(name, timeout)
        return 1 if count is None else count  # Redis down: fail open
    cache.add(name, 0, timeout=timeout)
    try:
        return int(cache.incr(name))
    except ValueError:  # expired between add and incr
        cache.set(name, 1, timeout=timeout)
        return 1


def _parse_rate(rate: str) -> tuple[int, int]:
    count, _sep, period = rate.partition("/")
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}[period[:1]]
    return int(count), seconds


# --- Input -----------------------------------------------------------------------------------


_NOT_DECODED = object()


class ApiRequest(Request):
    """DRF's request, parsing a JSON body (the API's input format) in one step.

    DRF matches the content type against each parser's, copies the body into a new stream and
    decodes it through a codecs reader: a twentieth of a join ticket's time, for a body of a
    few dozen bytes. A JSON body the view's JSONParser would take is decoded here at once;
    anything else (no body, another type, a body read already) and any body that fails to
    decode goes DRF's way, which answers as it always did (415, or 400 with its parse error).
    """

    def _parse(self) -> tuple[Any, Any]:
        data = self._json_body()
        if data is _NOT_DECODED:
            return super()._parse()  # type: ignore[misc]  # private, absent from the stubs
        return data, MultiValueDict()

    def _json_body(self) -> Any:
        """The body decoded as JSON in its declared charset, as strictly as DRF's JSONParser
        (NaN refused); _NOT_DECODED when DRF's way must decide."""
        request = self._request
        media_type = (self.content_type or "").partition(";")[0].strip().lower()
        if (
            media_type != "application/json"
            or request._read_started  # type: ignore[attr-defined]
            or not any(type(parser) is JSONParser for parser in self.parsers or ())
        ):
            return _NOT_DECODED
        body = request.body
        if not body:
            return _NOT_DECODED
        try:
            return json.loads(
                body.decode(request.encoding or settings.DEFAULT_CHARSET),
                parse_constant=strict_constant if JSONParser.strict else None,
            )
        except ValueError:  # DRF's parser, run again, words the 400
            return _NOT_DECODED


def query_data(request: Request) -> dict[str, str]:
    """The query string as a plain dict, for a query serializer.

    DRF reads a QueryDict like an HTML form, where an empty value of an optional field means
    "not given": ``?updated_since=`` would pass unnoticed. A plain dict makes it a 400.
    """
    return {name: request.query_params[name] for name in request.query_params}


def _wrong_type(field: serializers.Field[Any, Any, Any, Any], value: Any) -> bool:
    if value is None:
        return False
    if isinstance(field, serializers.BooleanField):
        return not isinstance(value, bool)
    if isinstance(field, serializers.CharField):
        return not isinstance(value, str)
    if isinstance(field, serializers.IntegerField | serializers.FloatField):
        return isinstance(value, bool) or not isinstance(value, int | float)
    if isinstance(field, serializers.ListField):
        return isinstance(value, list) and any(_wrong_type(field.child, item) for item in value)
    return False


_Field = TypeVar("_Field", bound=serializers.Field[Any, Any, Any, Any])
# Fields that hold no other field or serializer: a shallow copy of one is a field of its own.
_LEAF_FIELDS = (
    serializers.BooleanField,
    serializers.CharField,
    serializers.ChoiceField,
    serializers.DateField,
    serializers.DateTimeField,
    serializers.DecimalField,
    serializers.FloatField,
    serializers.IntegerField,
    serializers.UUIDField,
)


class InputSerializer(serializers.Serializer[Any]):
    """Base of the serializers that read a request (body or query string).

    DRF deep-copies the declared fields for each instance, which builds every field anew (its
    validators and error messages): for the list's eight filters that was a tenth of a
    millisecond per request. Leaf fields are copied shallowly instead; the copy is bound to
    this serializer and the declared field is never changed. Nested fields and serializers
    are deep-copied as DRF does.
    """

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        return {
            name: _shallow_copy(field) if isinstance(field, _LEAF_FIELDS) else copy.deepcopy(field)
            for name, field in self._declared_fields.items()
        }


def _shallow_copy(field: _Field) -> _Field:
    """``copy.copy(field)`` without the pickle protocol's detour (a quarter of its time)."""
    fresh: _Field = object.__new__(type(field))
    fresh.__dict__.update(field.__dict__)
    return fresh


class JsonBodySerializer(InputSerializer):
    """Base of request-body serializers: JSON types are taken at their word.

    DRF coerces like a form would (0 becomes "0", "yes" becomes True); an API client that sends
    a number where its schema says string has a bug it should hear about.
    """

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            errors = {
                name: [exceptions.ErrorDetail(_("Wrong type for this field."), code="invalid")]
                for name, field in self.fields.items()
                if not field.read_only and name in data and _wrong_type(field, data[name])
            }
            if errors:
                raise exceptions.ValidationError(errors)
        return super().to_internal_value(data)


# --- Errors as application/problem+json (RFC 9457) --------------------------------------------


class PreconditionFailed(exceptions.APIException):
    status_code = 412
    default_detail = "The resource changed since you read it; fetch it again."
    default_code = "precondition_failed"


class IdempotencyKeyReused(exceptions.APIException):
    status_code = 422
    default_detail = "This Idempotency-Key was already used with a different request."
    default_code = "idempotency_key_reused"


class IdempotencyInProgress(exceptions.APIException):
    status_code = 409
    default_detail = "A request with this Idempotency-Key is still being processed; retry later."
    default_code = "idempotency_in_progress"


class ProblemFieldSerializer(serializers.Serializer[Any]):
    field = serializers.CharField(help_text="Dotted path of the field, e.g. attendees.0.email.")
    code = serializers.CharField()
    message = serializers.CharField()


class ProblemSerializer(serializers.Serializer[Any]):
    """RFC 9457 problem details; ``code`` is the stable machine code to branch on."""

    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    code = serializers.CharField()
    instance = serializers.CharField(required=False)
    # The metaclass moves declared fields away, so this does not shadow Serializer.errors.
    errors = ProblemFieldSerializer(many=True, required=False)  # type: ignore[assignment]


def _flatten(detail: Any, path: str = "") -> list[dict[str, str]]:
    if isinstance(detail, dict):
        return [
            item
            for name, value in detail.items()
            for item in _flatten(value, f"{path}.{name}" if path else str(name))
        ]
    if isinstance(detail, list):
        if all(isinstance(item, exceptions.ErrorDetail) for item in detail):
            return [
                {
                    "field": path or "non_field_errors",
                    "code": item.code or "invalid",
                    "message": item,
                }
                for item in detail
            ]
        return [
            item
            for index, value in enumerate(detail)
            for item in _flatten(value, f"{path}.{index}" if path else str(index))
        ]
    return [
        {
            "field": path or "non_field_errors",
            "code": getattr(detail, "code", "invalid") or "invalid",
            "message": str(detail),
        }
    ]


def problem_response(
    *,
    status: int,
    code: str,
    detail: str,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    body: dict[str, Any] = {
        "type": f"{PROBLEM_TYPE_BASE}{code}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": str(detail),
        "code": code,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    return Response(body, status=status, headers=headers, content_type=PROBLEM_CONTENT_TYPE)


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """REST_FRAMEWORK's EXCEPTION_HANDLER: domain errors keep their code and message."""
    request = context.get("request")
    instance = request.path if request is not None else None
    if isinstance(exc, DomainError):
        extra: dict[str, Any] = {}
        if isinstance(exc, NoCapacity):
            extra = {
                "window_start": exc.window_start.isoformat(),
                "window_end": exc.window_end.isoformat(),
            }
        return problem_response(
            status=exc.status, code=exc.code, detail=exc.message, instance=instance, **extra
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(_("Not found."))
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None
    headers: dict[str, str] = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
    wait = getattr(exc, "wait", None)
    if isinstance(exc, exceptions.Throttled) and wait is not None:
        headers["Retry-After"] = str(int(wait + 0.999))
    if isinstance(exc, exceptions.ValidationError):
        errors = _flatten(exc.detail)
        return problem_response(
            status=exc.status_code,
            code="invalid",
            detail=_("Some fields are not valid; see errors."),
            instance=instance,
            headers=headers,
            errors=errors,
        )
    code = exc.get_codes()
    if not isinstance(code, str):
        code = exc.default_code
    return problem_response(
        status=exc.status_code,
        code=code,
        detail=str(exc.detail),
        instance=instance,
        headers=headers,
    )


@csrf_exempt
def api_not_found(request: Any, unmatched: str = "") -> Any:
    """Any path under /api/v1/ that names no resource: a problem, not Django's HTML page."""
    from django.http import JsonResponse

    return JsonResponse(
        {
            "type": f"{PROBLEM_TYPE_BASE}not_found",
            "title": HTTPStatus.NOT_FOUND.phrase,
            "status": 404,
            "detail": _("No such resource."),
            "code": "not_found",
            "instance": request.path,
        },
        status=404,
        content_type=PROBLEM_CONTENT_TYPE,
    )


# --- Conditional requests --------------------------------------------------------------------


def representation_etag(data: Any) -> str:
    """A strong ETag of what the client was shown: any visible change changes it."""
    encoded = json.dumps(data, sort_keys=True, separators=(",", ":"), cls=DjangoJSONEncoder)
    return '"' + hashlib.sha256(encoded.encode()).hexdigest()[:32] + '"'


def etagged_response(data: dict[str, Any], status: int = 200, **headers: str) -> Response:
    """One resource, with the ETag of what it shows."""
    return Response(data, status=status, headers={"ETag": representation_etag(data), **headers})


@contextmanager
def field_errors(field_of_code: Mapping[str, str]) -> Iterator[None]:
    """A service's refusal about one field of the body (its code mapped to that field) becomes
    a 400 naming the field; other refusals go on to the problem handler."""
    try:
        yield
    except InvalidInput as exc:
        field = field_of_code.get(exc.code)
        if field is None:
            raise
        raise serializers.ValidationError({field: [exc.message]}, code=exc.code) from exc


def if_match_check(request: Request, current_etag: str) -> None:
    """Refuse the write with 412 when the client's If-Match names another version."""
    header = request.headers.get("If-Match")
    if not header:
        return
    tags = [tag.strip() for tag in header.split(",")]
    # Strong comparison (RFC 9110 13.1.1): weak tags never match.
    if "*" not in tags and current_etag not in tags:
        raise PreconditionFailed()


# --- Idempotency-Key -------------------------------------------------------------------------


class _Replay(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def _fingerprint(request: Request) -> str:
    digest = hashlib.sha256()
    digest.update(f"{request.method} {request.path}\n".encode())
    digest.update(request.body)
    return digest.hexdigest()


def idempotency_begin(request: Request, key: ApiKey, idempotency_key: str) -> IdempotentRequest:
    """Claim the key for this request, or replay / refuse when it was seen before."""
    if not 1 <= len(idempotency_key) <= 255:
        raise exceptions.ValidationError(
            {"Idempotency-Key": [_("Use 1 to 255 characters.")]}, code="invalid"
        )
    fingerprint = _fingerprint(request)
    now = timezone.now()
    for _attempt in range(2):
        try:
            with transaction.atomic():
                return IdempotentRequest.objects.create(
                    api_key=key, key=idempotency_key, fingerprint=fingerprint, created_at=now
                )
        except IntegrityError:
            seen = IdempotentRequest.objects.filter(api_key=key, key=idempotency_key).first()
            if seen is None:
                continue
            if seen.created_at < now - IDEMPOTENCY_TTL or (
                seen.status_code is None and seen.created_at < now - IDEMPOTENCY_ABANDONED_AFTER
            ):
                IdempotentRequest.objects.filter(pk=seen.pk, created_at=seen.created_at).delete()
                continue
            if seen.fingerprint != fingerprint:
                raise IdempotencyKeyReused() from None
            if seen.status_code is None:
                raise IdempotencyInProgress() from None
            response = Response(
                seen.response_body,
                status=seen.status_code,
                headers={**seen.response_headers, "Idempotent-Replayed": "true"},
                content_type=seen.response_headers.get("Content-Type"),
            )
            raise _Replay(response) from None
    raise IdempotencyInProgress()


_REPLAYED_HEADERS = ("Location", "ETag")


def idempotency_finish(record: IdempotentRequest, response: Response) -> None:
    if response.status_code >= 500 or response.status_code == 429:
        # Nothing was done (or we cannot say): the client may retry with the same key.
        IdempotentRequest.objects.filter(pk=record.pk).delete()
        return
    headers = {name: response[name] for name in _REPLAYED_HEADERS if name in response}
    # Not set yet: the renderer sets it after this point.
    headers["Content-Type"] = response.content_type or "application/json"
    IdempotentRequest.objects.filter(pk=record.pk).update(
        status_code=response.status_code,
        response_body=getattr(response, "data", None),
        response_headers=headers,
    )


def idempotent_requests_purge() -> int:
    deleted, _rows = IdempotentRequest.objects.filter(
        created_at__lt=timezone.now() - IDEMPOTENCY_TTL
    ).delete()
    return deleted


# --- Base views ------------------------------------------------------------------------------


class ApiViewMixin:
    """Authentication, scopes, throttling, idempotency and audit attribution for API views."""

    authentication_classes: Sequence[type[BaseAuthentication]] = [ApiKeyAuthentication]
    permission_classes: Sequence[_PermissionClass] = [HasScope]
    throttle_classes: Sequence[type[BaseThrottle]] = [ApiKeyThrottle]
    _audit_token: Token[ApiKey | None] | None = None
    _idempotency: IdempotentRequest | None = None
    # HTTP method → the scope it needs, e.g. {"GET": "meetings:read"}.
    scopes: ClassVar[dict[str, str]] = {}
    # False for POSTs whose response holds a secret (a join token, a feed URL): it must not be
    # kept for replay, so the Idempotency-Key is ignored; such POSTs are safe to repeat anyway.
    idempotent_replay: ClassVar[bool] = True

    def initialize_request(self, request: Any, *args: Any, **kwargs: Any) -> ApiRequest:
        view: APIView = self  # type: ignore[assignment]
        return ApiRequest(
            request,
            parsers=view.get_parsers(),
            authenticators=view.get_authenticators(),
            negotiator=view.get_content_negotiator(),
            parser_context=view.get_parser_context(request),
        )

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        key: ApiKey = request.auth  # type: ignore[assignment]  # HasScope checked it
        self._audit_token = _acting_key.set(key)
        # From META: request.headers would copy every header into a dict first.
        idempotency_key = request.META.get("HTTP_IDEMPOTENCY_KEY")
        if request.method == "POST" and idempotency_key is not None and self.idempotent_replay:
            self._idempotency = idempotency_begin(request, key, idempotency_key)

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, _Replay):
            return exc.response
        return super().handle_exception(exc)  # type: ignore[misc]

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]
        record = self._idempotency
        if record is not None:
            self._idempotency = None
            idempotency_finish(record, response)
        return response

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]
        finally:
            # Also after an unhandled exception (a 500), which skips finalize_response: the
            # key must not stay the audit actor of the thread's next request, and the
            # Idempotency-Key must be free for the client's retry.
            if self._audit_token is not None:
                _acting_key.reset(self._audit_token)
                self._audit_token = None
            if self._idempotency is not None:
                IdempotentRequest.objects.filter(pk=self._idempotency.pk).delete()
                self._idempotency = None

    @property
    def agency(self) -> Agency:
        return self.request.auth.agency  # type: ignore[attr-defined]


class ApiView(ApiViewMixin, APIView):
    pass


class ApiGenericView(ApiViewMixin, GenericAPIView[Any]):
    pass


# --- OpenAPI ---------------------------------------------------------------------------------

_COMMON_ERRORS = {
    400: "Invalid input: `errors` lists each field.",
    401: "Missing, unknown, revoked or expired API key.",
    403: "The key lacks the scope this operation needs (`insufficient_scope`).",
    429: "Too many requests for this key; wait `Retry-After` seconds.",
}
_OBJECT_ERRORS = {404: "No such object, or it belongs to another agency."}
_WRITE_ERRORS = {
    409: "Conflict with the current state (e.g. `no_capacity`, `idempotency_in_progress`).",
    503: "No media backend is available for the agency (`backend_unavailable`).",
}
_POST_ERRORS = {422: "The Idempotency-Key was used before with a different body."}
_CONDITIONAL_ERRORS = {412: "If-Match names a version that is no longer current."}


class ApiAutoSchema(AutoSchema):
    """Documents each operation's scope, the Idempotency-Key and If-Match headers and the
    problem+json errors it can answer."""

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None or not isinstance(self.view, ApiViewMixin):
            return operation
        method = self.method.upper()
        scope = required_scope(self.view, method)
        if scope:
            note = f"Required scope: `{scope}`."
            description = operation.get("description", "")
            operation["description"] = f"{description}\n\n{note}" if description else note
            operation["x-required-scopes"] = [scope]
        errors = dict(_COMMON_ERRORS)
        if "{" in self.path:
            errors.update(_OBJECT_ERRORS)
        if method in ("POST", "PUT", "PATCH", "DELETE"):
            errors.update(_WRITE_ERRORS)
        if method == "POST" and self.view.idempotent_replay:
            errors.update(_POST_ERRORS)
        if method in ("PATCH", "PUT", "DELETE"):
            errors.update(_CONDITIONAL_ERRORS)
        problem = self.resolve_serializer(ProblemSerializer, "response").ref
        responses = operation.setdefault("responses", {})
        for status, text in errors.items():
            responses.setdefault(
                str(status),
                {"description": text, "content": {PROBLEM_CONTENT_TYPE: {"schema": problem}}},
            )
        return operation

    def get_override_parameters(self) -> list[Any]:
        from drf_spectacular.utils import OpenApiParameter

        parameters = list(super().get_override_parameters())
        method = self.method.upper()
        if isinstance(self.view, ApiViewMixin) and method == "POST" and self.view.idempotent_replay:
            parameters.append(
                OpenApiParameter(
                    "Idempotency-Key",
                    str,
                    OpenApiParameter.HEADER,
                    description=(
                        "Makes the POST safe to retry: the same key with the same body returns "
                        "the original response for 24 hours; with another body, 422."
                    ),
                )
            )
        if isinstance(self.view, ApiViewMixin) and method in ("PATCH", "PUT", "DELETE"):
            parameters.append(
                OpenApiParameter(
                    "If-Match",
                    str,
                    OpenApiParameter.HEADER,
                    description="The ETag you read; a stale one answers 412.",
                )
            )
        return parameters
