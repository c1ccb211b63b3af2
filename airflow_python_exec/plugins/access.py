"""Who may call what on the Python jobs page: Airflow's auth manager (DAG read and edit access,
asked for a job DAG's own id), and the rule that a form posted with the browser's cookie comes from
this origin (CSRF), DESIGN.md "The UI plugin"."""

from __future__ import annotations

import urllib.parse
from typing import Any, Literal

from airflow.api_fastapi.core_api.security import get_user
from fastapi import Depends, HTTPException, Request

from airflow_python_exec.plugins.threads import off_loop


def require(user: Any, method: Literal["GET", "PUT"]) -> Any:
    """403 unless ``user`` may ``method`` DAGs *in general*; returns the user.

    Not Airflow's ``requires_access_dag``: on a route without a ``dag_id`` path parameter it takes
    ``dag_id`` from the query string, so ``?dag_id=<a DAG the user may edit>`` would grant these
    global actions (encrypt, upload, the whole listing). Here no request value reaches the check.
    """
    from airflow.api_fastapi.app import get_auth_manager

    if not get_auth_manager().is_authorized_dag(method=method, user=user):
        raise HTTPException(403, "Forbidden")
    return user


async def reader(user: Any = Depends(get_user)) -> Any:
    """Dependency: the user, who may read DAGs (``GET``); 401 without a valid token, else 403.
    The auth manager is asked off the event loop (:func:`off_loop`): it may query a database."""
    return await off_loop(require, user, "GET")


async def editor(request: Request, user: Any = Depends(get_user)) -> Any:
    """Dependency: the user, who may edit DAGs (``PUT``); 401 without a valid token, else 403.

    A request authenticated by the browser's ``_token`` cookie must also come from this origin
    (:func:`same_origin`): ``SameSite=Lax`` stops another *site*, not a sibling subdomain or
    another port of the same host, whose form post would carry the cookie (CSRF). The cookie
    authenticates every request without a Bearer token (:func:`has_bearer`), one with another
    ``Authorization`` scheme too: Airflow's ``get_user`` ignores a ``Basic`` header, which a browser
    adds by itself behind an HTTP Basic proxy.
    """
    if not has_bearer(request) and not same_origin(request):
        raise HTTPException(403, "cross-origin request refused: post the form from the Python jobs page itself")
    return await off_loop(require, user, "PUT")


def has_bearer(request: Request) -> bool:
    """The request carries an ``Authorization: Bearer <token>`` header: the credential Airflow's
    ``get_user`` takes instead of the cookie (same parsing as FastAPI's ``HTTPBearer``). A browser
    never adds one to a cross-origin form post, so such a request is not CSRF."""
    from fastapi.security.utils import get_authorization_scheme_param

    scheme, credentials = get_authorization_scheme_param(request.headers.get("authorization"))
    return scheme.lower() == "bearer" and bool(credentials)


def same_origin(request: Request) -> bool:
    """The browser says the request comes from this origin: ``Sec-Fetch-Site: same-origin``, else an
    ``Origin`` (or, without one, a ``Referer``) of this very scheme://host[:port]."""
    if request.headers.get("sec-fetch-site") == "same-origin":
        return True
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return False
    parts = urllib.parse.urlsplit(source)
    return (parts.scheme, parts.netloc) == (request.url.scheme, request.url.netloc)


def may_edit(user: Any, dag_id: str) -> bool:
    """Whether the auth manager lets ``user`` edit (``PUT``) the DAG ``dag_id``, asked for that id even
    before the DAG exists (as the listing asks to read an upload's DAG)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    return bool(get_auth_manager().is_authorized_dag(method="PUT", user=user, details=DagDetails(id=dag_id)))
