"""The console's pages and actions, under ``/console``.

Server-rendered HTML (Jinja2) with htmx for the queue actions, which swap the
row they act on. The routes are left out of the OpenAPI document, so the API's
governance middleware leaves access to them; they check it themselves:

* no or an invalid session → a redirect to ``/console/login`` (htmx requests
  get ``HX-Redirect``);
* the role decides what is shown and allowed, with the API's permission table
  (:data:`accord.api.auth.GRANTS`): queue roles see and act on their own queue,
  admin on all, auditor reads everything and changes nothing;
* every ``POST`` carries the CSRF token of its session, or is refused with 403.
"""

from __future__ import annotations

import secrets
from datetime import date, timedelta
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from sqlalchemy import select
from starlette.responses import HTMLResponse, RedirectResponse, Response

from accord.api.auth import QUEUE_ROLES, Authenticator, Permission, Principal
from accord.api.context import ApiContext
from accord.api.keys import KEY_MARKER
from accord.api.problems import Problem
from accord.console import views
from accord.console.session import ConsoleSession, SessionSigner, secret_from_env
from accord.store import append
from accord.store.api_tables import API_ROLES, api_keys
from accord.store.reconcile_tables import DISCREPANCY_CLASSES
from accord.store.tables import ExceptionState

__all__ = ["COOKIE", "Console", "console_router"]

#: The session cookie: a signed token, never the key.
COOKIE = "accord_console"
_LOGIN_COOKIE = "accord_console_login"
_PREFIX = "/console"
_STATIC = {
    "htmx.min.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


class Console:
    """The console's state (signer, templates) and its request handlers."""

    def __init__(self, signer: SessionSigner) -> None:
        self.signer = signer
        env = Environment(
            loader=PackageLoader("accord.console", "templates"),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters["money"] = lambda minor, currency: views.money(minor, currency)
        env.filters["percent"] = views.percent
        env.filters["duration"] = views.duration
        env.filters["when"] = lambda at: at.strftime("%Y-%m-%d %H:%M:%S UTC") if at else "—"
        env.globals["discrepancy_classes"] = DISCREPANCY_CLASSES
        self.env = env

    # ----------------------------------------------------------------- plumbing

    @staticmethod
    def _ctx(request: Request) -> ApiContext:
        ctx: ApiContext = request.app.state.accord
        return ctx

    def _who(self, request: Request) -> tuple[ConsoleSession, Principal] | None:
        """The signed-in caller, if the session is valid and its key still active."""
        ctx = self._ctx(request)
        session = self.signer.read(request.cookies.get(COOKIE), ctx.clock())
        if session is None or not session.principal_id.startswith("key:"):
            return None
        with ctx.engine.connect() as conn:
            row = conn.execute(
                select(api_keys.c.role, api_keys.c.revoked_at).where(
                    api_keys.c.id == session.principal_id.removeprefix("key:")
                )
            ).one_or_none()
        if row is None or row.revoked_at is not None or row.role != session.role:
            return None
        principal = Principal(session.principal_id, session.role, session.name)
        request.scope.setdefault("state", {})["principal"] = principal
        return session, principal

    @staticmethod
    def _to_login(request: Request) -> Response:
        target = request.url.path
        if request.url.query:
            target += "?" + request.url.query
        location = f"{_PREFIX}/login?next={quote(target, safe='')}"
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": location})
        return RedirectResponse(location, status_code=303)

    def render(
        self,
        request: Request,
        template: str,
        who: tuple[ConsoleSession, Principal] | None,
        *,
        status: int = 200,
        section: str = "",
        **context: Any,
    ) -> HTMLResponse:
        session, principal = who if who else (None, None)
        html = self.env.get_template(template).render(
            principal=principal,
            csrf=self.signer.csrf(session.sid) if session else context.pop("csrf", ""),
            section=section,
            roles=API_ROLES,
            can_operations=bool(principal and principal.can(Permission.READ_OPERATIONS)),
            can_exceptions=bool(principal and principal.can(Permission.READ_EXCEPTIONS)),
            **context,
        )
        response = HTMLResponse(html, status_code=status)
        self._secure(response)
        return response

    @staticmethod
    def _secure(response: Response) -> None:
        for name, value in _SECURITY_HEADERS.items():
            response.headers[name] = value
        response.headers["Cache-Control"] = "no-store"

    def _refuse(
        self, request: Request, who: tuple[ConsoleSession, Principal], status: int, message: str
    ) -> HTMLResponse:
        return self.render(
            request,
            "error.html",
            who,
            status=status,
            title=_TITLES.get(status, "Error"),
            message=message,
        )

    @staticmethod
    async def _form(request: Request) -> dict[str, str]:
        body = await request.body()
        parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        return {name: values[0] for name, values in parsed.items()}

    def _cookie(
        self, request: Request, response: Response, name: str, value: str, max_age: int
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=_PREFIX,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    # ----------------------------------------------------------------- sign in / out

    def login_form(self, request: Request, next: str = "") -> HTMLResponse:
        who = self._who(request)
        nonce = secrets.token_urlsafe(18)
        response = self.render(
            request,
            "login.html",
            None,
            csrf=self.signer.csrf(nonce),
            next=_safe_next(next),
            error=None,
            notice="You are signed in already." if who else None,
        )
        self._cookie(request, response, _LOGIN_COOKIE, nonce, 1800)
        return response

    async def login(self, request: Request) -> Response:
        form = await self._form(request)
        ctx = self._ctx(request)
        nonce = request.cookies.get(_LOGIN_COOKIE)
        next_page = _safe_next(form.get("next", ""))

        def again(message: str, status: int) -> HTMLResponse:
            fresh = secrets.token_urlsafe(18)
            response = self.render(
                request,
                "login.html",
                None,
                status=status,
                csrf=self.signer.csrf(fresh),
                next=next_page,
                error=message,
                notice=None,
            )
            self._cookie(request, response, _LOGIN_COOKIE, fresh, 1800)
            return response

        if not self.signer.csrf_ok(nonce, form.get("csrf")):
            return again("The sign-in form expired; please sign in again.", 403)
        key = form.get("api_key", "").strip()
        if not key.startswith(KEY_MARKER):
            return again(f"Sign-in failed: an API key starts with {KEY_MARKER!r}.", 401)
        try:
            principal = await run_in_threadpool(
                Authenticator(ctx.engine).authenticate, f"Bearer {key}"
            )
        except Problem:
            return again("Sign-in failed: unknown or revoked API key.", 401)
        now = ctx.clock()
        token = self.signer.issue(principal.id, principal.role, principal.name, now)

        def audit() -> None:
            with ctx.engine.begin() as conn:
                append(
                    conn,
                    actor=principal.name,
                    action="console.signed_in",
                    subject=f"api_key/{principal.id.removeprefix('key:')}",
                    data={"role": principal.role},
                    at=now,
                )

        await run_in_threadpool(audit)
        response = RedirectResponse(next_page or _PREFIX, status_code=303)
        self._cookie(request, response, COOKIE, token, int(self.signer.ttl.total_seconds()))
        response.delete_cookie(_LOGIN_COOKIE, path=_PREFIX)
        self._secure(response)
        return response

    async def logout(self, request: Request) -> Response:
        form = await self._form(request)
        session = self.signer.read(request.cookies.get(COOKIE), self._ctx(request).clock())
        if session is not None and not self.signer.csrf_ok(
            session.sid, form.get("csrf") or request.headers.get("x-csrf-token")
        ):
            return HTMLResponse("The sign-out form expired; reload the page.", status_code=403)
        response = RedirectResponse(f"{_PREFIX}/login?signed_out=1", status_code=303)
        response.delete_cookie(COOKIE, path=_PREFIX)
        self._secure(response)
        return response

    # ----------------------------------------------------------------- pages

    def home(self, request: Request, as_of: str = "") -> Response:
        who = self._who(request)
        if who is None:
            return self._to_login(request)
        if not who[1].can(Permission.READ_RECORDS):
            return self._refuse(request, who, 403, "Your role may not read business records.")
        try:
            day = date.fromisoformat(as_of) if as_of else None
        except ValueError:
            return self._refuse(request, who, 400, f"as_of: {as_of!r} is not a date (YYYY-MM-DD).")
        data = views.dashboard(self._ctx(request), who[1], day)
        return self.render(request, "dashboard.html", who, section="dashboard", d=data)

    def exceptions(self, request: Request, role: str = "", state: str = "") -> Response:
        who = self._who(request)
        if who is None:
            return self._to_login(request)
        try:
            shown_role, rows = views.queue(self._ctx(request), who[1], role or None, state or None)
        except views.ActionRefused as refused:
            return self._refuse(request, who, refused.status, refused.message)
        queue_roles = [who[1].role] if who[1].role in QUEUE_ROLES else ["", *QUEUE_ROLES, "admin"]
        return self.render(
            request,
            "exceptions.html",
            who,
            section="exceptions",
            rows=rows,
            role=shown_role or "",
            state=state,
            queue_roles=queue_roles,
            states=[s.value for s in ExceptionState],
            read_only=not who[1].can(Permission.ACT_EXCEPTIONS),
        )

    async def exception_action(self, request: Request, item_id: str, action: str) -> Response:
        who = await run_in_threadpool(self._who, request)
        if who is None:
            return self._to_login(request)
        session, principal = who
        form = await self._form(request)
        htmx = bool(request.headers.get("hx-request"))
        token = form.get("csrf") or request.headers.get("x-csrf-token")
        if not self.signer.csrf_ok(session.sid, token):
            return self._fragment_refusal(request, who, 403, "CSRF token missing or wrong.", htmx)
        if not principal.can(Permission.ACT_EXCEPTIONS):
            return self._fragment_refusal(
                request, who, 403, f"Role {principal.role} may not change anything.", htmx
            )
        trace_id = request.scope.get("state", {}).get("trace_id")
        ctx = self._ctx(request)
        try:
            row = await run_in_threadpool(
                views.act, ctx, principal, item_id, action, form.get("reason"), trace_id
            )
        except views.ActionRefused as refused:
            if htmx and refused.status in (409, 422):
                current = await run_in_threadpool(self._current_row, ctx, principal, item_id)
                if current is not None:
                    return self.render(
                        request,
                        "_exception_row.html",
                        who,
                        status=refused.status,
                        row=current,
                        error=refused.message,
                    )
            return self._fragment_refusal(request, who, refused.status, refused.message, htmx)
        if htmx:
            return self.render(request, "_exception_row.html", who, row=row, error=None)
        response = RedirectResponse(f"{_PREFIX}/exceptions", status_code=303)
        self._secure(response)
        return response

    @staticmethod
    def _current_row(ctx: ApiContext, principal: Principal, item_id: str) -> views.QueueRow | None:
        from accord.store import Exceptions

        with ctx.engine.connect() as conn:
            item = Exceptions(conn, ctx.clock).get(item_id)
        if item is None or not views.visible(principal, item.role):
            return None
        return views.queue_row(principal, item)

    def _fragment_refusal(
        self,
        request: Request,
        who: tuple[ConsoleSession, Principal],
        status: int,
        message: str,
        htmx: bool,
    ) -> HTMLResponse:
        if htmx:
            response = self.render(request, "_refusal.html", who, status=status, message=message)
            response.headers["HX-Retarget"] = "#flash"
            response.headers["HX-Reswap"] = "innerHTML"
            return response
        return self._refuse(request, who, status, message)

    def traces(self, request: Request, trace_id: str = "") -> Response:
        who = self._who(request)
        if who is None:
            return self._to_login(request)
        if not who[1].can(Permission.READ_RECORDS):
            return self._refuse(request, who, 403, "Your role may not read traces.")
        wanted = trace_id.strip()
        if wanted:
            return RedirectResponse(f"{_PREFIX}/traces/{quote(wanted, safe='')}", status_code=303)
        recent = views.recent_traces(self._ctx(request))
        return self.render(
            request, "traces.html", who, section="traces", recent=recent, view=None, trace_id=""
        )

    def trace(self, request: Request, trace_id: str) -> Response:
        who = self._who(request)
        if who is None:
            return self._to_login(request)
        if not who[1].can(Permission.READ_RECORDS):
            return self._refuse(request, who, 403, "Your role may not read traces.")
        view = views.trace(self._ctx(request), trace_id)
        return self.render(
            request,
            "traces.html",
            who,
            status=200 if view is not None else 404,
            section="traces",
            recent=[],
            view=view,
            trace_id=trace_id,
        )

    def reconciliation(self, request: Request) -> Response:
        who = self._who(request)
        if who is None:
            return self._to_login(request)
        if not who[1].can(Permission.READ_RECORDS):
            return self._refuse(request, who, 403, "Your role may not read reconciliation runs.")
        runs = views.reconciliation_runs(self._ctx(request))
        return self.render(request, "reconciliation.html", who, section="reconciliation", runs=runs)

    def reconciliation_run(self, request: Request, run_id: str, category: str = "") -> Response:
        who = self._who(request)
        if who is None:
            return self._to_login(request)
        if not who[1].can(Permission.READ_RECORDS):
            return self._refuse(request, who, 403, "Your role may not read reconciliation runs.")
        try:
            found = views.reconciliation_run(self._ctx(request), run_id, category or None)
        except views.ActionRefused as refused:
            return self._refuse(request, who, refused.status, refused.message)
        if found is None:
            return self._refuse(request, who, 404, f"No reconciliation run {run_id!r}.")
        run, discrepancies, total = found
        return self.render(
            request,
            "run.html",
            who,
            section="reconciliation",
            run=run,
            discrepancies=discrepancies,
            total=total,
            category=category,
        )

    def health(self, request: Request) -> Response:
        who = self._who(request)
        if who is None:
            return self._to_login(request)
        view = views.health(self._ctx(request))
        return self.render(request, "health.html", who, status=200, section="health", health=view)

    @staticmethod
    def static(name: str) -> Response:
        media = _STATIC.get(name)
        if media is None:
            return Response("not found", status_code=404, media_type="text/plain")
        body = files("accord.console").joinpath("static", name).read_bytes()
        return Response(
            body,
            media_type=media,
            headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
        )


_TITLES = {403: "Not allowed", 404: "Not found", 409: "Conflict", 422: "Not valid"}


def _safe_next(target: str) -> str:
    """Only a console path may follow sign-in (no open redirect)."""
    if target.startswith(_PREFIX) and not target.startswith("//") and "\\" not in target:
        return target
    return ""


def console_router(
    signer: SessionSigner | None = None, *, session_ttl: timedelta = timedelta(hours=8)
) -> APIRouter:
    """The console as a router to include in the API's app (``create_app`` does)."""
    console = Console(signer or SessionSigner(secret_from_env(), session_ttl))
    router = APIRouter(prefix=_PREFIX, include_in_schema=False)
    html: dict[str, Any] = {"response_class": HTMLResponse}
    router.add_api_route("/login", console.login_form, methods=["GET"], **html)
    router.add_api_route("/login", console.login, methods=["POST"])
    router.add_api_route("/logout", console.logout, methods=["POST"])
    router.add_api_route("", console.home, methods=["GET"], **html)
    router.add_api_route("/exceptions", console.exceptions, methods=["GET"], **html)
    router.add_api_route(
        "/exceptions/{item_id}/{action}", console.exception_action, methods=["POST"]
    )
    router.add_api_route("/traces", console.traces, methods=["GET"], **html)
    router.add_api_route("/traces/{trace_id}", console.trace, methods=["GET"], **html)
    router.add_api_route("/reconciliation", console.reconciliation, methods=["GET"], **html)
    router.add_api_route(
        "/reconciliation/{run_id}", console.reconciliation_run, methods=["GET"], **html
    )
    router.add_api_route("/health", console.health, methods=["GET"], **html)
    router.add_api_route("/static/{name}", console.static, methods=["GET"])
    return router
