"""Rate limits: login per IP and per account, registration per IP, writes per user.

The login and registration limits keep DRF's sliding log (exact "N in any
window", two cache round trips). The per-user write limit is asked on every
write, checkout included, so it takes one round trip: GCRA (the generic cell
rate algorithm) in one Redis script, see :func:`gcra_take`.
"""

from __future__ import annotations

import logging
import math
import threading
from typing import TYPE_CHECKING, Any

from django.core.cache import caches
from django.http import HttpRequest
from rest_framework.exceptions import APIException, ParseError, UnsupportedMediaType
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from emporium.core.client_ip import client_ip
from emporium.core.parsers import JSONParser
from emporium.core.usernames import username_fold

if TYPE_CHECKING:
    from rest_framework.views import APIView

logger = logging.getLogger(__name__)
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class _SlidingLogThrottle(SimpleRateThrottle):
    """DRF's sliding log, except that a cache that cannot be reached lets the request in.

    Sign-in must not turn into a 500 because Redis is away; Argon2 still makes
    each guess slow while the counters cannot be kept. The failure is logged.
    """

    def allow_request(self, request: Request, view: APIView) -> bool:
        try:
            return bool(super().allow_request(request, view))
        except APIException:
            raise  # the request's own fault (a malformed body read for the key): a 4xx
        except Exception:  # any cache failure degrades the same way
            logger.warning(
                "%s throttle unavailable; allowing the request", self.scope, exc_info=True
            )
            return True


class LoginIPThrottle(_SlidingLogThrottle):
    scope = "login_ip"

    def get_ident(self, request: Request) -> str:
        return client_ip(request)

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class LoginAccountThrottle(_SlidingLogThrottle):
    """Counts attempts per account, whatever address they come from.

    The key is the username's fold, the same one the account lookup uses, so
    every spelling that reaches an account ("ADMIN", with a dotless i, in
    full-width letters) shares its counter.
    """

    scope = "login_account"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        data: Any = request.data
        username = data.get("username") if isinstance(data, dict) else None
        if not isinstance(username, str) or not username:
            return None
        return self.cache_format % {"scope": self.scope, "ident": username_fold(username)}


class RegisterIPThrottle(LoginIPThrottle):
    scope = "register_ip"


# Every way of signing in with a password (the API, the admin site) is asked
# these, on the same counters: a second door is not a way around the first.
LOGIN_THROTTLES: tuple[type[_SlidingLogThrottle], ...] = (LoginIPThrottle, LoginAccountThrottle)


def login_attempt_wait(request: HttpRequest, view: object = None) -> float | None:
    """Counts a sign-in attempt made outside DRF; seconds to wait if refused, else None.

    The body (a form or JSON) is read the way DRF would, so the account key is
    the same one the API's login counts under. A body that cannot be read has
    no username to count; the address is still counted.
    """
    attempt = Request(request, parsers=[FormParser(), MultiPartParser(), JSONParser()])
    for throttle_class in LOGIN_THROTTLES:
        throttle = throttle_class()
        try:
            allowed = throttle.allow_request(attempt, view)  # type: ignore[arg-type]
        except (ParseError, UnsupportedMediaType):
            allowed = True
        if not allowed:
            wait = throttle.wait()
            return float(wait) if wait else 1.0
    return None


# KEYS[1]: the key's theoretical arrival time (TAT). ARGV: now, interval, period (seconds).
# A request is allowed while the TAT it would push forward stays within one period of
# now; the key then lives until its TAT, so an idle user costs nothing.
_GCRA_SCRIPT = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local next_tat = tat + interval
local wait = next_tat - now - period
if wait > 0 then return string.format('%.6f', wait) end
local ttl = math.ceil((next_tat - now) * 1000)
redis.call('SET', KEYS[1], string.format('%.6f', next_tat), 'PX', ttl)
return '0'
"""
_local_lock = threading.Lock()
_gcra: Any = None


def gcra_take(key: str, *, limit: int, period: float, now: float, cost: int = 1) -> float:
    """Takes ``cost`` requests of ``limit`` per ``period`` for ``key``.

    Returns the seconds to wait, 0 if allowed.

    ``limit`` requests may come at once; after that one every ``period / limit``.
    A ``cost`` above 1 takes that many at once (a batch of messages), all or none.
    On Redis (django-redis as the default cache) this is one atomic script call,
    shared by every process; on another cache the same arithmetic runs under a
    process lock, which is exact for the single process of the embedded profile.
    """
    cache = caches["default"]
    interval = period / limit * cost
    raw = getattr(getattr(cache, "client", None), "get_client", None)
    if raw is not None:
        global _gcra
        client = raw(write=True)
        if _gcra is None:
            _gcra = client.register_script(_GCRA_SCRIPT)  # EVALSHA, loaded on first use
        wait = _gcra(
            keys=[cache.make_key(key)],
            args=[repr(now), repr(interval), repr(period)],
            client=client,
        )
        return max(0.0, float(wait))
    with _local_lock:
        stored = cache.get(key)
        tat = max(float(stored) if stored is not None else now, now)
        wait = tat + interval - now - period
        if wait > 0:
            return wait
        cache.set(key, tat + interval, timeout=math.ceil(tat + interval - now))
        return 0.0


class UserWriteThrottle(SimpleRateThrottle):
    """Bounds how fast one authenticated user can write; reads are not counted.

    When the cache cannot be reached the write is allowed (and logged): a limit
    that cannot be checked must not turn every checkout into a 500.
    """

    scope = "user_writes"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        if request.method in _SAFE_METHODS or not request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}

    def allow_request(self, request: Request, view: APIView) -> bool:
        limit, period = getattr(self, "num_requests", None), getattr(self, "duration", None)
        if self.rate is None or limit is None or period is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        try:
            self._wait = gcra_take(self.key, limit=limit, period=period, now=self.timer())
        except Exception:  # any cache failure degrades the same way
            logger.warning("write throttle unavailable; allowing %s", self.key, exc_info=True)
            return True
        return self._wait == 0

    def wait(self) -> float | None:
        return getattr(self, "_wait", None) or None
