"""The FastAPI app of the "Python jobs" page, mounted by the api-server under ``/python-exec``.

HTML pages (server-rendered Jinja2; one small script only follows links out of the UI's iframe) and the same as JSON:

==========================================  ====================  ===============================
route                                       access                what
==========================================  ====================  ===============================
``GET /`` and ``GET /api/jobs``             DAG read (``GET``)    a page of jobs (:mod:`.listing`)
``GET /jobs/{id}``, ``GET /api/jobs/{id}``  DAG read (``GET``)    one job
``POST /encrypt``, ``POST /api/encrypt``    DAG edit (``PUT``)    a Fernet token for a value
``POST /upload``, ``POST /api/jobs``        DAG edit (``PUT``),   a job bundle (:mod:`.upload`)
                                            and of its DAG
==========================================  ====================  ===============================

Authentication is Airflow's own (``airflow.api_fastapi.core_api.security.get_user``: the JWT from an
``Authorization: Bearer`` header or, in the browser, from the UI's ``_token`` cookie). Authorization
asks the configured auth manager for DAG access *in general* (``is_authorized_dag`` without details:
no request value, such as a ``?dag_id=``, can widen it); the listing then shows only tasks of the DAGs
the user may read (``get_authorized_dag_ids``), and an upload only to a user who may read its own DAG
``job_<jobId>`` (asked for that id even before the DAG exists). No token: 401; a token without the
access: 403. The list takes ``limit``, ``offset`` and ``search`` as Airflow's DAG list does.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from airflow_python_exec import crypto
from airflow_python_exec.errors import JobConfigError, PythonExecError
from airflow_python_exec.plugins import URL_PREFIX, catalog
from airflow_python_exec.plugins.access import editor, has_bearer, may_edit, reader
from airflow_python_exec.plugins.cache_figures import cache_figures
from airflow_python_exec.plugins.job_outputs import latest_versions
from airflow_python_exec.plugins.listing import Page, page_query
from airflow_python_exec.plugins.reparse import job_owner, request_reparse
from airflow_python_exec.plugins.threads import Shared, off_loop
from airflow_python_exec.plugins.upload import (
    JobIdTakenError,
    UploadDisabledError,
    UploadForbiddenError,
    require_upload_folder,
    upload_bundle,
)
from airflow_python_exec.plugins.visibility import readable_by
from airflow_python_exec.redaction import hide_credentials_in, hide_url_credentials
from airflow_python_exec.settings import EngineSettings

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
TEMPLATES.env.globals["job_dag_prefix"] = catalog.job_dag_prefix
#: Largest value the Encrypt form takes (a secret, not a file).
MAX_SECRET_CHARS = 65_536
#: Room a request body gets beyond ``max_source_bytes``: multipart framing and the zip's own headers.
BODY_SLACK_BYTES = 1_048_576
_CHUNK = 1_048_576


def max_body_bytes() -> int:
    """The largest request body taken: ``[python_exec] max_source_bytes`` plus :data:`BODY_SLACK_BYTES`."""
    return EngineSettings.from_airflow_config().max_source_bytes + BODY_SLACK_BYTES


class BodyGuard:
    """ASGI middleware answering before any request body is read: 401 when a request with a body has
    neither an ``Authorization: Bearer`` header nor the ``_token`` cookie (what ``get_user`` reads),
    413 when its ``Content-Length`` passes :func:`max_body_bytes`.

    FastAPI parses (and spools to disk) a whole form before it solves the auth dependency, so
    without this anyone could make the api-server read and store any amount of data.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            request = Request(scope)
            refusal = _body_refusal(request)
            if refusal is not None:
                await _error(request, *refusal)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _body_refusal(request: Request) -> tuple[int, str] | None:
    """``(status, detail)`` for a body that must not be read, else ``None``."""
    if not has_bearer(request) and "_token" not in request.cookies:
        return 401, "Not authenticated"
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_body_bytes():
        return 413, (
            f"the request has {length} bytes, more than [python_exec] max_source_bytes allows "
            f"({max_body_bytes()}); upload a smaller bundle"
        )
    return None


class EncryptBody(BaseModel):
    """``POST /api/encrypt`` body: the plain value of a secure macro."""

    value: str = Field(max_length=MAX_SECRET_CHARS)


def create_app() -> FastAPI:
    """Build the plugin's FastAPI app (routes in the module docstring)."""
    # No schema or docs: FastAPI serves them without any auth dependency.
    app = FastAPI(
        title="Python jobs",
        description="airflow-python-exec: jobs, Encrypt and Upload",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    edit = [Depends(editor)]
    app.add_api_route("/api/jobs", api_jobs, methods=["GET"])
    app.add_api_route("/api/jobs/{job_id}", api_job, methods=["GET"])
    app.add_api_route("/api/encrypt", api_encrypt, methods=["POST"], dependencies=edit)
    app.add_api_route("/api/jobs", api_upload, methods=["POST"], dependencies=edit, status_code=201)
    app.add_api_route("/", jobs_page, methods=["GET"], response_class=HTMLResponse)
    app.add_api_route("/jobs/{job_id}", job_page, methods=["GET"], response_class=HTMLResponse)
    app.add_api_route("/encrypt", encrypt_form, methods=["POST"], dependencies=edit, response_class=HTMLResponse)
    app.add_api_route("/upload", upload_form, methods=["POST"], dependencies=edit, response_class=HTMLResponse)
    # Starlette types a handler as taking any Exception; each of these is registered for its own class.
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_middleware(BodyGuard)
    return app


# -- JSON ----------------------------------------------------------------------------------------


async def api_jobs(user: Any = Depends(reader), page: Page = Depends(page_query)) -> JSONResponse:
    """``GET /api/jobs?limit=&offset=&search=``: ``{"jobs": [...], "total_entries": n, "limit", "offset",
    "search", "uploadFolder": path or null, "cache": {...}}``, most recently run first (:mod:`.listing`);
    ``cache``: this machine's environment cache (:mod:`.cache_figures`)."""
    view = await DAG_VIEW.get()
    return await off_loop(_jobs_json, user, view, page)


def _jobs_json(user: Any, view: Any, page: Page) -> JSONResponse:
    settings = EngineSettings.from_airflow_config()
    jobs, total = _catalog(settings, user, view, page)
    # A JSONResponse of plain JSON values: FastAPI's jsonable_encoder would walk every value again.
    return JSONResponse(
        {
            "jobs": [job.as_dict() for job in jobs],
            "total_entries": total,
            **vars(page),
            "uploadFolder": str(settings.upload_folder) if settings.upload_folder else None,
            "cache": cache_figures(settings).as_dict(),
        }
    )


async def api_job(job_id: str, user: Any = Depends(reader)) -> JSONResponse:
    """``GET /api/jobs/{job_id}``: one job; 404 when no job has that ``jobId``."""
    view = await DAG_VIEW.get()
    return await off_loop(lambda: JSONResponse(_job(job_id, user, view).as_dict()))


def api_encrypt(body: EncryptBody) -> dict[str, str]:
    """``POST /api/encrypt``: ``{"token": ...}``, the value encrypted with the server's first Fernet key."""
    return {"token": _encrypt(body.value)}


def api_upload(file: UploadFile = File(...), user: Any = Depends(editor)) -> dict[str, Any]:
    """``POST /api/jobs`` (multipart, field ``file``): install a job bundle; 201 with what was written
    and the DAG files asked to be re-parsed (``reparse``); 403 when the user may not edit the DAG of its
    ``jobId``; 409 when its ``jobId`` is another folder's."""
    done, files = _upload(file, user)
    return hide_credentials_in(
        {
            "jobId": done.job_id,
            "folder": str(done.folder),
            "previousVersion": str(done.previous) if done.previous else None,
            "files": done.files,
            "reparse": files,
        }
    )


# -- HTML ----------------------------------------------------------------------------------------


async def jobs_page(request: Request, user: Any = Depends(reader), page: Page = Depends(page_query)) -> HTMLResponse:
    """``GET /?limit=&offset=&search=``: a page of the jobs table (search box, previous/next links),
    the Encrypt form, the Upload form and this machine's environment cache size."""

    def html() -> HTMLResponse:
        settings = EngineSettings.from_airflow_config()
        entries, total = _catalog(settings, user, view, page)
        jobs = [job.as_dict() for job in entries]
        cache = cache_figures(settings).shown()
        folder = settings.upload_folder
        return _render(request, "jobs.html", jobs=jobs, upload_folder=folder, page=page, total=total, cache=cache)

    view = await DAG_VIEW.get()
    return await off_loop(html)


async def job_page(request: Request, job_id: str, user: Any = Depends(reader)) -> HTMLResponse:
    """``GET /jobs/{job_id}``: one job's details."""
    view = await DAG_VIEW.get()

    def page() -> HTMLResponse:
        job = _job(job_id, user, view).as_dict()
        return _render(request, "job.html", job={**job, "outputs": latest_versions(job)})

    return await off_loop(page)


def encrypt_form(request: Request, value: str = Form(..., max_length=MAX_SECRET_CHARS)) -> HTMLResponse:
    """``POST /encrypt`` (form field ``value``): a page showing the token."""
    return _render(request, "result.html", title="Encrypted", token=_encrypt(value))


def upload_form(request: Request, file: UploadFile = File(...), user: Any = Depends(editor)) -> HTMLResponse:
    """``POST /upload`` (form field ``file``): a page saying what was installed."""
    done, files = _upload(file, user)
    uploaded = SimpleNamespace(**hide_credentials_in(vars(done)), reparse=files)
    return _render(request, "result.html", title="Uploaded", uploaded=uploaded)


# -- shared --------------------------------------------------------------------------------------


#: What the DAGs say, shared by the page requests that arrive together (filtered per viewer after).
DAG_VIEW = Shared(lambda: catalog.dag_view())


def _catalog(settings: EngineSettings, user: Any, view: Any, page: Page) -> tuple[list[catalog.JobEntry], int]:
    """One page of the catalog as ``user`` may see it, and how many jobs match in all (``view``: the
    DAGs' tasks, :func:`~airflow_python_exec.plugins.catalog.dag_view`)."""
    return catalog.catalog_page(settings.upload_folder, view, page, readable_by(user, view))


def _job(job_id: str, user: Any, view: Any) -> catalog.JobEntry:
    upload_folder = EngineSettings.from_airflow_config().upload_folder
    entry = catalog.job_entry(upload_folder, view, job_id, readable_by(user, view))
    if entry is None:
        raise HTTPException(404, f"no job with jobId {job_id!r} in the DAGs or upload_folder; check the id")
    catalog.add_ran_with(entry)
    return entry


def _encrypt(value: str) -> str:
    try:
        return crypto.encrypt(value, EngineSettings.from_airflow_config().fernet_keys())
    except PythonExecError as exc:
        raise HTTPException(500, str(exc)) from None


def _upload(file: UploadFile, user: Any) -> tuple[Any, list[str]]:
    """Install the bundle (:func:`~.upload.upload_bundle`, refusing a ``jobId`` whose DAG ``user`` may
    not edit, then one another folder owns), then ask for a re-parse of the job DAG files
    (:func:`~.reparse.request_reparse`).

    Edit access to DAGs *in general* lets the form in; the bundle replaces (or makes) the DAG
    ``job_<jobId>``, so the auth manager is asked for that very DAG too: with DAG-level permissions
    (FAB, Keycloak) an editor of some DAGs must not replace the code another DAG runs."""
    settings = EngineSettings.from_airflow_config()
    try:
        folder = require_upload_folder(settings.upload_folder)
    except UploadDisabledError as exc:
        raise HTTPException(403, str(exc)) from None
    name = file.filename or "upload.zip"
    with tempfile.NamedTemporaryFile(prefix="python-exec-upload-", suffix=".zip") as spool:
        _spool(file, spool, max_body_bytes())
        spool.flush()
        try:
            done = upload_bundle(
                Path(spool.name),
                name,
                folder,
                max_bytes=settings.max_source_bytes,
                owner=lambda job_id, target: job_owner(job_id, target, settings.job_dag_prefix),
                may_edit=lambda job_id: may_edit(user, settings.job_dag_prefix + job_id),
            )
        except UploadForbiddenError as exc:
            raise HTTPException(403, str(exc)) from None
        except JobIdTakenError as exc:
            raise HTTPException(409, hide_url_credentials(str(exc))) from None
        except JobConfigError as exc:  # quotes the job's values: URL user info hidden, as on the page
            raise HTTPException(400, hide_url_credentials(str(exc))) from None
        except OSError as exc:
            raise HTTPException(
                500, f"upload_folder {folder} cannot be written ({exc}); check its permissions"
            ) from exc
    return done, request_reparse()


def _spool(file: UploadFile, spool: Any, limit: int) -> None:
    """Copy the upload in chunks, stopping with 413 past ``limit`` bytes (a body without a
    ``Content-Length`` was not bounded by :class:`BodyGuard`)."""
    total = 0
    for chunk in iter(lambda: file.file.read(_CHUNK), b""):
        total += len(chunk)
        if total > limit:
            raise HTTPException(
                413,
                f"the upload has more than {limit} bytes, more than [python_exec] "
                "max_source_bytes allows; upload a smaller bundle",
            )
        spool.write(chunk)


def _render(
    request: Request, template: str, *, status_code: int = 200, headers: Any = None, **context: Any
) -> HTMLResponse:
    """An HTML page; framed only by the same origin (the Airflow UI's iframe), against clickjacking."""
    root = request.scope.get("root_path", "").rstrip("/")
    return TEMPLATES.TemplateResponse(
        request,
        template,
        {"base": root, "airflow_base": root.removesuffix(URL_PREFIX), **context},
        status_code=status_code,
        headers={**(headers or {}), "X-Frame-Options": "SAMEORIGIN"},
    )


async def _http_error(request: Request, exc: StarletteHTTPException) -> Any:
    """JSON ``{"detail": ...}`` for ``/api/``; for a page, the same message in an HTML page."""
    return _error(request, exc.status_code, exc.detail, exc.headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> Any:
    """422 naming what is wrong, without ``input``: FastAPI's default echoes the submitted value,
    which for ``/encrypt`` is the secret itself."""
    errors = [
        {key: value for key, value in error.items() if key not in ("input", "ctx", "url")} for error in exc.errors()
    ]
    if not _is_api(request):
        return _error(
            request, 422, "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}" for e in errors)
        )
    return _error(request, 422, errors)


def _is_api(request: Request) -> bool:
    root = request.scope.get("root_path", "").rstrip("/")
    return request.url.path.startswith(f"{root}/api/") or request.url.path.startswith("/api/")


def _error(request: Request, status: int, detail: Any, headers: Any = None) -> Any:
    if _is_api(request):
        return JSONResponse({"detail": detail}, status_code=status, headers=headers)
    return _render(request, "error.html", status_code=status, headers=headers, status=status, detail=detail)
