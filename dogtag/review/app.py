"""The review server: the page (plain HTML, CSS and JS from `static/`) and its JSON API under /api.

    GET  /api/status                          tagging progress, folders, problems, breed names, limits
    GET  /api/breeds?q=                       the breeds a correction can name (display name, id, group,
                                              aliases), those matching q first (nicknames, old names)
    GET  /api/photos?status=&breed=&offset=&limit=   a page of rows, unsure first, with the filter counts
    GET  /api/photos/{source}/{path}          one row
    GET  /api/thumbnail/{source}/{path}       a small JPEG (made on demand, cached); /api/large/... a
                                              large one; /api/original/... the photo file itself
    POST /api/reviews                         save a correction: {source, path, reviewed_breed, reviewed_by}
    POST /api/photos                          add photos (multipart field `files`): kept in the intake
                                              folder, tagged at once, returned as rows
    POST /api/predict                         the breeds of one photo (multipart field `photo`), not kept
    GET  /api/learn                           corrections to learn from, and the last learning job's progress
    POST /api/learn                           learn from the corrections in the background ({force}), then
                                              switch to the learned model and score every row again
    GET  /api/address.svg                     the QR code of the network address (with its token), for phones
    GET  /docs, /redoc, /openapi.json         the OpenAPI pages (their scripts served from here: work offline)

A row has the shape of a `dogtag tag --format jsonl` line, plus `source` (which results file),
`missing` (the photo is gone from the disk) and `problem` (what to tell the volunteer).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field, StrictBool
from starlette.datastructures import UploadFile

from dogtag import __version__
from dogtag.edge_app.breeds import describe, search
from dogtag.edge_app.classifier import Classifier
from dogtag.edge_app.images import DEFAULT_MAX_PIXELS, PhotoError, load_photo
from dogtag.edge_app.results import ResultsFileError, format_row, prediction_row
from dogtag.edge_app.reviews import MIXED_BREED, NOT_A_DOG, ReviewsFileError
from dogtag.edge_app.tagging import TaggingError
from dogtag.review.jobs import Tagger
from dogtag.review.learning import Learner
from dogtag.review.library import FILTERS, Forbidden, Library, NotFound
from dogtag.review.qr import qr_svg
from dogtag.review.security import TOKEN_COOKIE, host_allowed, same_origin, token_matches
from dogtag.review.thumbnails import LARGE_SIDE, THUMBNAIL_SIDE, rendition
from dogtag.review.uploads import MAX_UPLOAD_BYTES, MAX_UPLOAD_FILES, UploadError, keep_upload

STATIC = Path(__file__).resolve().parent / "static"
# What an upload must be: a photo (any format Dogtag reads; these are the common ones a phone sends).
PHOTO_TYPES = "image/jpeg, image/png, image/webp, image/gif, image/heic"
PAGE_SIZE = 120
# The page loads nothing from elsewhere: no CDN, works offline, and injected markup could not run.
PAGE_POLICY = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


@dataclass
class Settings:
    """How the server was started: the address it listens on, its token, where uploads and thumbnails go."""

    host: str
    token: str
    require_token: bool
    allowed_hosts: set[str]
    intake: Path
    cache: Path
    max_pixels: int = DEFAULT_MAX_PIXELS
    address: str = ""  # the address (with its token) for phones on the network; '' when only this computer


class Problem(BaseModel):
    """Why a request was refused: `detail` says it in words (FastAPI's own 422s give a list of problems)."""

    detail: str | list[dict[str, Any]] = Field(..., description="What was wrong, for the volunteer")


# Every error status a route may answer, as declared in /openapi.json (all with a Problem body).
REFUSALS = {
    400: "Not understood: an unknown filter, a body that is not JSON, or an upload without its photo field",
    403: "Outside the reviewed folders",
    404: "No such photo, or it was deleted or moved since it was tagged",
    411: "An upload without a Content-Length",
    409: "Busy: a learning job is already running",
    413: "Too many photos, or too large",
    422: "Not valid: a parameter of the wrong type, or a file that is not a photo",
    500: "Not saved: the reviews file could not be written",
}


def refusals(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The `responses` declaration of a route that may answer with these error statuses."""
    return {code: {"model": Problem, "description": REFUSALS[code]} for code in codes}


class ReviewIn(BaseModel):
    """A correction for one photo."""

    source: int = Field(0, description="Which results file: the `source` of the row")
    path: str = Field(..., description="The row's `path`, relative to its folder")
    reviewed_breed: str = Field(
        ..., description=f"A breed, '{MIXED_BREED}', '{NOT_A_DOG}', any other name; '' withdraws the review",
    )
    reviewed_by: str = Field("", description="Who reviewed it (written into the results file)")


class BreedOut(BaseModel):
    """A breed a correction can name, as `dogtag tag` names it."""

    name: str = Field(..., description="The display name, as tags and results files write it (Cairn Terrier)")
    breed_id: str = Field(..., description="Stanford Dogs' synset id (n02096177); '' for a label without one")
    stanford_name: str = Field(..., description="Stanford Dogs' (ImageNet's) name (cairn); '' when none")
    group: str = Field(..., description="The kennel-club group (Terrier), as in the XMP keyword tree Dogs|Terrier|...")
    aliases: list[str] = Field(..., description="Other names that find it: nicknames, old names (cairn, toto)")


class BreedsOut(BaseModel):
    """The breeds of the model, for the correction type-ahead."""

    breeds: list[BreedOut] = Field(..., description="Matching breeds, best match first (all, in label order, "
                                                     "without q)")
    special_names: list[str] = Field(..., description="Names that are not breeds: mixed breed, not a dog")


def create_app(library: Library, tagger: Tagger, settings: Settings, classifier: Callable[[], Classifier],
               learner: Learner | None = None) -> FastAPI:
    """The FastAPI app over a library of tagged folders; `classifier()` gives the model of the moment
    for /api/predict (opened once per model: a Learn switch changes it), `learner` runs "Learn from N
    corrections" (review.learning)."""
    # FastAPIOffline: FastAPI whose /docs and /redoc load their scripts from this server, not from a CDN.
    app = FastAPIOffline(title="Dogtag review", version=__version__, description=__doc__.split("\n\n")[0])
    app.middleware("http")(guard(settings))
    app.include_router(page_routes())
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(listing_routes(library, tagger, settings))
    app.include_router(picture_routes(library, settings))
    app.include_router(review_routes(library))
    app.include_router(upload_routes(library, tagger, settings))
    app.include_router(predict_routes(settings, classifier))
    app.include_router(address_routes(settings))
    if learner is not None:
        app.include_router(learn_routes(learner))
    return app


class LearnIn(BaseModel):
    """Start learning from the corrections."""

    force: StrictBool = Field(False, description="Switch to the learned model even if it is worse on held-out photos")


def learn_routes(learner: Learner) -> APIRouter:
    """Learning from the corrections, in the background."""
    router = APIRouter()

    @router.get("/api/learn", summary="Corrections to learn from, and the progress of the last learning job")
    def learn_status() -> dict:
        return learner.status()

    @router.post("/api/learn", summary="Learn from the corrections, then switch to the learned model", status_code=202,
                 responses=refusals(400, 409, 422))
    def start_learning(request: LearnIn) -> dict:
        if learner.start(force=request.force) is None:
            raise HTTPException(409, "a learning job is already running")
        return learner.status()

    return router


def guard(settings: Settings) -> Callable:
    """The middleware every request passes: known Host, the token where one is needed, same-origin writes,
    and the headers that keep the page from being framed or sniffed."""

    async def guard(request: Request, call_next):
        host = request.headers.get("host")
        if not host_allowed(host, settings.host, settings.allowed_hosts):
            return PlainTextResponse(
                f"Unknown Host header {host!r}: open the page at the address `dogtag review` printed "
                "(start it with --allow-host NAME to use another name for this machine).", status_code=400)
        if settings.require_token:
            given = (request.query_params.get("token") or request.cookies.get(TOKEN_COOKIE)
                     or _bearer(request.headers.get("authorization")) or request.headers.get("x-dogtag-token"))
            if not token_matches(given, settings.token):
                return PlainTextResponse(
                    "This Dogtag review page needs its access token: open the address that `dogtag review` "
                    "printed (it ends with ?token=...), or send the header 'Authorization: Bearer TOKEN'.",
                    status_code=401)
            if request.method == "GET" and "token" in request.query_params and not request.url.path.startswith("/api/"):
                rest = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "token"])
                response = RedirectResponse(request.url.path + (f"?{rest}" if rest else ""), status_code=303)
                response.set_cookie(TOKEN_COOKIE, settings.token, httponly=True, samesite="strict")
                return response
        if request.method not in ("GET", "HEAD", "OPTIONS") and not same_origin(request.headers.get("origin"), host):
            return PlainTextResponse("Refused: this request comes from a page of another site.", status_code=403)
        response = await call_next(request)
        if response.status_code == 405:  # Starlette's Allow names the first route of the path only
            response.headers["Allow"] = ", ".join(_allowed_methods(request.app, request.url.path))
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        if request.url.path == "/" or request.url.path.startswith("/static/"):
            response.headers["Content-Security-Policy"] = PAGE_POLICY
        return response

    return guard


def page_routes() -> APIRouter:
    """The page itself (its CSS and JS are mounted under /static)."""
    router = APIRouter()

    @router.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @router.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:  # browsers ask for it on every page: a 404 is a console error each time
        return FileResponse(STATIC / "favicon.ico", media_type="image/x-icon", headers={"Cache-Control": "max-age=86400"})

    return router


def listing_routes(library: Library, tagger: Tagger, settings: Settings) -> APIRouter:
    """What the page shows: the server's status, pages of rows under a filter, one row."""
    router = APIRouter()

    @router.get("/api/status", summary="Tagging progress, the reviewed folders, problems and breed names")
    def status() -> dict:
        library.refresh()
        return {
            "version": __version__,
            "tagging": tagger.status(),
            "sources": [
                {"source": s.index, "results": str(s.results), "reviews": str(s.reviews_file),
                 "folders": s.folders, "photos": len(s.rows)}
                for s in library.sources
            ],
            "problems": [problem for s in library.sources for problem in s.problems],
            "labels": list(library.labels),
            "special_names": [MIXED_BREED, NOT_A_DOG],
            "intake": str(settings.intake),
            "address": settings.address,
            "xmp": library.xmp,
            "filters": list(FILTERS),
            "limits": {"upload_bytes": MAX_UPLOAD_BYTES, "upload_files": MAX_UPLOAD_FILES},
        }

    @router.get("/api/breeds", summary="The breeds a correction can name, with ids, groups and aliases",
                response_model=BreedsOut)
    def breeds(q: str = Query("", description="What the person typed: a name, an old Stanford name or a "
                                              "nickname (lab, yorkie, GSD, pit bull, husky)")) -> dict:
        names = search(q, library.labels, limit=len(library.labels)) if q.strip() else list(library.labels)
        return {"breeds": [describe(name) for name in names], "special_names": [MIXED_BREED, NOT_A_DOG]}

    @router.get("/api/photos", summary="A page of rows (unsure first) under a filter, with counts",
                responses=refusals(400, 422))
    def photos(
        status: str = Query("all", description=f"One of {', '.join(FILTERS)}", json_schema_extra={"enum": list(FILTERS)}),
        breed: str = Query("", description="Only rows of this breed (the reviewed one where there is one)"),
        offset: int = Query(0, ge=0),
        limit: int = Query(PAGE_SIZE, ge=1, le=1000),
    ) -> dict:
        try:
            return library.listing(status, breed, offset, limit)
        except ValueError as error:
            raise HTTPException(400, str(error)) from error

    @router.get("/api/photos/{source}/{path:path}", summary="One row", responses=refusals(404, 422))
    def photo(source: int, path: str) -> dict:
        try:
            found, _ = library.row(source, path)
            with library.lock:
                return library.item(found, path)
        except NotFound as error:
            raise HTTPException(404, str(error)) from error

    return router


def picture_routes(library: Library, settings: Settings) -> APIRouter:
    """The photos: thumbnails and large renditions (made on demand, cached) and the original files."""
    router = APIRouter()

    def picture(source: int, path: str, side: int) -> FileResponse:
        try:
            file = library.photo_file(source, path)
            made = rendition(file, side, settings.cache, settings.max_pixels)
        except NotFound as error:
            raise HTTPException(404, str(error)) from error
        except Forbidden as error:
            raise HTTPException(403, str(error)) from error
        except PhotoError as error:
            raise HTTPException(422, f"{path}: {error}") from error
        return FileResponse(made, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @router.get("/api/thumbnail/{source}/{path:path}", summary=f"A JPEG of the photo, at most {THUMBNAIL_SIDE} px",
                responses={200: {"content": {"image/jpeg": {}}}, **refusals(403, 404, 422)})
    def thumbnail(source: int, path: str) -> FileResponse:
        return picture(source, path, THUMBNAIL_SIDE)

    @router.get("/api/large/{source}/{path:path}", summary=f"A JPEG of the photo, at most {LARGE_SIDE} px",
                responses={200: {"content": {"image/jpeg": {}}}, **refusals(403, 404, 422)})
    def large(source: int, path: str) -> FileResponse:
        return picture(source, path, LARGE_SIDE)

    @router.get("/api/original/{source}/{path:path}", summary="The photo file itself",
                responses={200: {"content": {"image/*": {}}}, **refusals(403, 404, 422)})
    def original(source: int, path: str) -> FileResponse:
        try:
            return FileResponse(library.photo_file(source, path), headers={"Cache-Control": "private, no-cache"})
        except NotFound as error:
            raise HTTPException(404, str(error)) from error
        except Forbidden as error:
            raise HTTPException(403, str(error)) from error

    return router


def review_routes(library: Library) -> APIRouter:
    """Saving a person's correction."""
    router = APIRouter()

    @router.post("/api/reviews", summary="Save a correction (durably, before answering)",
                 responses=refusals(400, 404, 422, 500))
    def save_review(review: ReviewIn) -> dict:
        try:
            item, warnings = library.save_review(review.source, review.path, review.reviewed_breed, review.reviewed_by)
        except NotFound as error:
            raise HTTPException(404, str(error)) from error
        except ReviewsFileError as error:
            raise HTTPException(500, f"NOT saved: {error}") from error
        return {"item": item, "warnings": warnings}

    return router


def upload_routes(library: Library, tagger: Tagger, settings: Settings) -> APIRouter:
    """Adding photos from a browser or phone: kept in the intake folder and tagged at once."""
    router = APIRouter()

    upload_body = {"requestBody": {"content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["files"], "properties": {"files": {
            "type": "array", "items": {"type": "string", "format": "binary", "minLength": 1}, "minItems": 1,
            "maxItems": MAX_UPLOAD_FILES}}}, "encoding": {"files": {"contentType": PHOTO_TYPES}}}}, "required": True}}

    @router.post("/api/photos", summary="Add photos: kept in the intake folder, tagged at once", openapi_extra=upload_body,
                 responses=refusals(400, 411, 413, 422))
    async def add_photos(request: Request) -> JSONResponse:
        uploads = await _read_uploads(request, "files", MAX_UPLOAD_FILES)
        return await run_in_threadpool(keep_and_tag, uploads)

    def keep_and_tag(uploads: list[tuple[str, bytes]]) -> JSONResponse:
        kept, errors = [], []
        for name, data in uploads:
            try:
                kept.append(keep_upload(data, name, settings.intake, settings.max_pixels))
            except UploadError as error:
                errors.append(str(error))
        if not kept:
            return JSONResponse({"detail": "; ".join(errors), "errors": errors, "items": []}, status_code=422)
        try:
            source, keys = tagger.tag_uploads(settings.intake, kept)
        except (TaggingError, ResultsFileError) as error:
            errors.append(f"kept in {settings.intake}, but not tagged yet ({error}); `dogtag tag` tags them")
            return JSONResponse({"items": [], "errors": errors})
        with library.lock:
            items = [library.item(source, key) for key in keys if key in source.rows]
        return JSONResponse({"items": items, "errors": errors})

    return router


def predict_routes(settings: Settings, classifier: Callable[[], Classifier]) -> APIRouter:
    """The breeds of one photo, not kept; the model is opened on first use and shared under a lock."""
    router = APIRouter()
    predict_lock = threading.Lock()

    predict_body = {"requestBody": {"content": {"multipart/form-data": {"schema": {
        "type": "object", "properties": {"photo": {"type": "string", "format": "binary", "minLength": 1}},
        "required": ["photo"]}, "encoding": {"photo": {"contentType": PHOTO_TYPES}}}}, "required": True}}

    @router.post("/api/predict", summary="The breeds of one photo (not kept), as a results row", openapi_extra=predict_body,
                 responses=refusals(400, 411, 413, 422))
    async def predict(request: Request) -> dict:
        ((name, data),) = await _read_uploads(request, "photo", 1)
        return await run_in_threadpool(predict_one, name, data)

    def predict_one(name: str, data: bytes) -> dict:
        settings.cache.mkdir(parents=True, exist_ok=True)
        suffix = os.path.splitext(name)[1][:10]
        with tempfile.NamedTemporaryFile(dir=settings.cache, suffix=suffix) as file:
            file.write(data)
            file.flush()
            with predict_lock:
                model = classifier()
                try:
                    pixels = load_photo(file.name, model.info.input_size, model.info.resize, settings.max_pixels)
                except PhotoError as error:
                    raise HTTPException(422, f"{name}: {error}") from error
                prediction = model.predict_pixels(pixels[None])[0]
        row = prediction_row(prediction, path=name, model_version=model.info.model_version)  # as `dogtag tag` writes it
        return json.loads(format_row(row, "jsonl"))

    return router


def address_routes(settings: Settings) -> APIRouter:
    """The network address as a QR code, for phones (the page's Phone button, the terminal's code)."""
    router = APIRouter()

    @router.get("/api/address.svg", summary="The QR code of the network address, for a phone's camera",
                response_class=Response, responses={
                    200: {"content": {"image/svg+xml": {}}, "description": "An SVG image"},
                    404: {"description": "Only this computer can open the page: no address for phones"}})
    def address_qr() -> Response:
        if not settings.address:
            raise HTTPException(404, "only this computer can open the page: start `dogtag review --host 0.0.0.0`")
        return Response(qr_svg(settings.address), media_type="image/svg+xml", headers={"Cache-Control": "no-store"})

    return router


async def _read_uploads(request: Request, field_name: str, max_files: int) -> list[tuple[str, bytes]]:
    """The files of a multipart request, refused early when too many or too large."""
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        raise HTTPException(411, "send the photos with a Content-Length (a browser does)")
    if int(length) > max_files * MAX_UPLOAD_BYTES + 2**20:
        raise HTTPException(413, f"too large: at most {max_files} photos of {MAX_UPLOAD_BYTES // 2**20} MB each")
    try:
        form = await request.form(max_files=max_files, max_fields=10)
    except Exception as error:  # Starlette's MultiPartException, or a body that is not a form
        raise HTTPException(400, f"not a photo upload ({error}); send multipart/form-data") from error
    files = [item for item in form.getlist(field_name) if isinstance(item, UploadFile)]
    if not files:
        raise HTTPException(400, f"no photo in the upload: send it as the multipart field '{field_name}'")
    if len(files) > max_files:
        raise HTTPException(413, f"too many photos at once: at most {max_files}")
    uploads = []
    for upload in files:
        data = await upload.read(MAX_UPLOAD_BYTES + 1)
        uploads.append((upload.filename or "", data))
    await form.close()
    return uploads


def _allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method some route of the app answers at `path` (for a 405's Allow header)."""
    from starlette.routing import Match

    scope = {"type": "http", "path": path, "method": "GET", "root_path": ""}
    methods = {method for route in app.routes if getattr(route, "methods", None)
               and route.matches(scope)[0] != Match.NONE for method in route.methods}
    return sorted(methods)


def _bearer(header: str | None) -> str | None:
    if header and header.lower().startswith("bearer "):
        return header[7:].strip()
    return None
