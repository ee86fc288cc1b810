"""The status page: ``GET /ui`` on the status listener, and how a browser signs in.

The page is three files shipped in the package (``heartbeat/static/``): no build
step, nothing fetched from elsewhere.  Its script reads the same JSON as
``nats-heartbeat status`` (``GET /?limit=&offset=&counts=1``, ``GET /history``)
with relative URLs, so it works from any replica and behind a path prefix.

A browser cannot send ``Authorization: Bearer``, so with a token the page signs
in once: ``/ui?token=T`` (a link) or the form ``POST /ui`` sets an HttpOnly,
SameSite=Strict cookie and redirects to ``/ui``.  The cookie holds an HMAC of the
token, never the token itself: every replica with the same token accepts it, and
changing the token signs every browser out.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import cache
from importlib import resources

from aiohttp import web

COOKIE = "nats_heartbeat_session"
COOKIE_MAX_AGE_S = 7 * 24 * 3600
ASSETS = {  # path -> (file in heartbeat/static, content type)
    "/ui/status.js": ("status.js", "text/javascript"),
    "/ui/status.css": ("status.css", "text/css"),
}
PAGE = "/ui"
MAX_FORM = 8192  # a login form is one short field

# Scripts and styles from this listener only, no inline code: a string that slips
# through into the DOM still cannot run.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def session_value(token: str) -> str:
    """The cookie value that stands for ``token`` (the same on every replica)."""
    return hmac.new(token.encode(), b"nats-heartbeat status page", hashlib.sha256).hexdigest()


def signed_in(request: web.Request, token: str) -> bool:
    """Whether ``request`` carries the session cookie of ``token``."""
    given = request.cookies.get(COOKIE, "")
    return bool(given) and hmac.compare_digest(given.encode(), session_value(token).encode())


def public(path: str) -> bool:
    """Paths served without a token: the page's script and style hold no data, and
    signing out (or finding the page from ``/ui/``) needs no token either."""
    return path in ASSETS or path in (PAGE + "/logout", PAGE + "/")


@cache
def _static(name: str) -> bytes:
    return (resources.files("heartbeat") / "static" / name).read_bytes()


@cache
def _page(signed: bool) -> bytes:
    html = _static("status.html")
    if signed:
        return html
    # No token, nothing to sign out of.
    start = html.index(b'<a id="logout"')
    return html[:start] + html[html.index(b"</a>", start) + 4 :]


async def asset(request: web.Request) -> web.Response:
    name, content_type = ASSETS[request.path]
    headers = {**HEADERS, "Cache-Control": "no-cache"}
    return web.Response(body=_static(name), content_type=content_type, headers=headers)


async def sign_in(request: web.Request, token: str) -> web.StreamResponse:
    """``/ui`` without a valid session: check a ``?token=`` or a posted form; on success
    set the cookie and redirect to the page, else answer 401 with the sign-in form."""
    given: str | None = request.query.get("token")
    if request.method == "POST":
        if (request.content_length or 0) > MAX_FORM:
            return _login(401, "That is not a token.")
        form = await request.post()
        value = form.get("token")
        given = value.strip() if isinstance(value, str) else None
    if given is None:
        return _login(401, "")
    if not hmac.compare_digest(given.encode(), token.encode()):
        return _login(401, "Wrong token.")
    answer = see_other("ui")
    answer.set_cookie(
        COOKIE,
        session_value(token),
        max_age=COOKIE_MAX_AGE_S,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=_https(request),
    )
    return answer


async def sign_out(request: web.Request) -> web.StreamResponse:
    answer = see_other("../ui")
    answer.del_cookie(COOKIE, path="/")
    return answer


def see_other(location: str) -> web.Response:
    """A 303 to ``location``, relative, so a path prefix in front of us is kept."""
    return web.Response(status=303, headers={**HEADERS, "Location": location})


def _https(request: web.Request) -> bool:
    # Behind a TLS-terminating proxy the request itself is plain HTTP.
    forwarded = request.headers.get("X-Forwarded-Proto", "")
    return request.secure or forwarded.split(",")[0].strip().lower() == "https"


def _login(status: int, message: str) -> web.Response:
    body = _static("login.html").replace(b"<!--message-->", message.encode())
    return web.Response(status=status, body=body, content_type="text/html", headers=HEADERS)


def add_routes(app: web.Application, token: str) -> None:
    """``/ui`` (the page), ``/ui/logout`` and the page's script and style."""

    async def page(request: web.Request) -> web.StreamResponse:
        # The auth middleware let it through; a ``?token=`` that got here was right:
        # drop it from the address bar.
        if "token" in request.query:
            return see_other("ui")
        return web.Response(body=_page(bool(token)), content_type="text/html", headers=HEADERS)

    app.router.add_get(PAGE, page)
    app.router.add_post(PAGE, _to_page_here)  # signed in already (or no token)
    app.router.add_get(PAGE + "/", _to_page)
    app.router.add_get(PAGE + "/logout", sign_out)
    for path in ASSETS:
        app.router.add_get(path, asset)


async def _to_page(request: web.Request) -> web.StreamResponse:
    return see_other("../ui")


async def _to_page_here(request: web.Request) -> web.StreamResponse:
    return see_other("ui")
