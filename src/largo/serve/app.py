"""The FastAPI app of `largo serve`: one static page and a small JSON API over the listed models and the job queue.

Safety: a request names a model only by an id the server listed (looked up in a dict; no path from a request is
ever opened), every number is bounded, every refusal is a 4xx whose `detail` is one line, and nothing is written
to disk (images, trajectories and zips live in memory)."""

from __future__ import annotations

import base64
import binascii
from importlib.resources import files
from typing import Annotated, Literal

import torch
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from largo.errors import LargoError
from largo.serve.catalog import ModelCache, ModelEntry
from largo.sampling.edit_folder import decode_image
from largo.sampling.editing import check_images, check_masks
from largo.serve.generation import (EditPlan, Plan, image_name, png_bytes, run_edit, run_generation, test_images,
                                    trajectory_strip, zip_bytes)
from largo.serve.jobs import Job, JobQueue, QueueFull
from largo.sampling import SamplingOptions
from largo.version import __version__

MAX_PER_CLASS = 16
MAX_IMAGES = 64
MAX_STEPS = 1000
MAX_CFG = 20.0
MAX_SEED = 2**31 - 1
BATCH_IMAGES = 8  # images per batch, at least one class's row: the grid fills batch by batch
TRAJECTORY_TIMEOUT_S = 600
STATIC = {"app.js": "text/javascript", "app.css": "text/css"}
MAX_BODY_BYTES = 64 * 1024  # a generation request is a few hundred bytes
MAX_EDIT_BODY_BYTES = 512 * 1024  # an edit carries its image and mask as base64 PNGs at the model's resolution
MAX_ENCODED_IMAGE = 240 * 1024  # base64 characters of the image and of the mask: both fit in one body, so a longer
# string is the field's one-line 422, not the body's 413
MAX_EDIT_SIDE = 256


def _json_integer(value: object) -> object:
    """A JSON integer, as JSON Schema (and so the published schema) defines it: 3 and 3.0, never "3" or true."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def JsonInt(lo: int, hi: int):  # noqa: N802 - a type
    return Annotated[int, Field(ge=lo, le=hi), BeforeValidator(_json_integer)]


class GenerateRequest(BaseModel):
    """POST /api/generate. Numbers are JSON numbers (strict: "4" is refused), each within its bounds; an integer
    may be written 4.0, which JSON Schema counts as an integer too. The sampling fields are `SamplingOptions`
    fields under the same names (OPTION_FIELDS); the others say what to draw."""
    model_config = ConfigDict(extra="forbid", strict=True)

    model: Annotated[str, Field(min_length=1, max_length=200)]
    classes: Annotated[list[JsonInt(0, 100_000)], Field(min_length=1, max_length=MAX_IMAGES)]
    per_class: JsonInt(1, MAX_PER_CLASS) = 4
    sampler: Annotated[str, Field(max_length=20)] | None = None
    steps: JsonInt(1, MAX_STEPS) | None = None
    cfg: Annotated[float, Field(ge=0, le=MAX_CFG, allow_inf_nan=False)] | None = None
    seed: JsonInt(0, MAX_SEED) = 0


class EditRequest(BaseModel):
    """POST /api/edit: one image (a base64 PNG/JPEG, or a data: URL) edited toward a class, by image-to-image
    (`strength`) or inpainting (`mask`, white = fill; `method`). The sampling fields are SamplingOptions fields."""
    model_config = ConfigDict(extra="forbid", strict=True)

    model: Annotated[str, Field(min_length=1, max_length=200)]
    edit: Literal["img2img", "inpaint"]
    image: Annotated[str, Field(min_length=1, max_length=MAX_ENCODED_IMAGE)]
    mask: Annotated[str, Field(min_length=1, max_length=MAX_ENCODED_IMAGE)] | None = None
    target: JsonInt(0, 100_000)
    strength: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.6
    method: Literal["replace", "repaint", "ddnm"] = "repaint"
    sampler: Annotated[str, Field(max_length=20)] | None = None
    steps: JsonInt(1, MAX_STEPS) | None = None
    cfg: Annotated[float, Field(ge=0, le=MAX_CFG, allow_inf_nan=False)] | None = None
    seed: JsonInt(0, MAX_SEED) = 0


class Problem(BaseModel):
    """Every refusal (4xx) and failure: one line saying what is wrong."""
    detail: str


class Limits(BaseModel):
    per_class: int
    images: int
    steps: int
    cfg: float
    seed: int


class ModelList(BaseModel):
    models: list[dict]
    device: str
    limits: Limits
    version: str


class Submitted(BaseModel):
    job: str
    position: int
    images: int
    status_url: str


class JobView(BaseModel):
    id: str
    status: str
    position: int
    done: int
    total: int
    expected: int
    images: list[dict]
    error: str
    download_url: str


class JobStatus(BaseModel):
    id: str
    status: str


# The published schema states what a refusal looks like (FastAPI's default 422 body, a list of objects, is not
# what this app sends), and what each binary route returns.
REFUSALS = {code: {"model": Problem} for code in (404, 405, 409, 413, 422, 429, 503)}
PNG = {200: {"content": {"image/png": {}}}}


OPTION_FIELDS = ("sampler", "steps", "cfg")  # the request fields that are SamplingOptions fields


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[:limit - 1] + "…"


def _validation_line(exc: RequestValidationError) -> str:
    """The first problem of a refused request as one line: `field: what is wrong`."""
    errors = exc.errors()
    if not errors:
        return "invalid request"
    e = errors[0]
    if e.get("type") == "json_invalid":
        return "the request body is not valid JSON"
    loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return _one_line(f"{loc or 'request body'}: {e.get('msg', 'invalid value')}{more}")


def _refuse(status: int, message: str) -> HTTPException:
    return HTTPException(status_code=status, detail=_one_line(message))


def _plan(req: GenerateRequest, models: dict[str, ModelEntry]) -> Plan:
    """Check a request against the listed models and its model's config; a refusal is a one-line 4xx."""
    entry = models.get(req.model)
    if entry is None:
        raise _refuse(404, f"unknown model {req.model[:80]!r}; GET /api/models lists the ones this server offers")
    n_classes = len(entry.class_names)
    bad = [c for c in req.classes if c >= n_classes]
    if bad:
        raise _refuse(422, f"classes: {bad[0]} is not a class of {entry.id} (it has classes 0..{n_classes - 1})")
    total = len(req.classes) * req.per_class
    if total > MAX_IMAGES:
        raise _refuse(422, f"{len(req.classes)} classes x {req.per_class} per class = {total} images; "
                           f"at most {MAX_IMAGES} per generation")
    try:
        options = SamplingOptions.resolve(entry.cfg, **{name: getattr(req, name) for name in OPTION_FIELDS})
    except LargoError as e:
        raise _refuse(422, str(e)) from None
    labels = [c for c in req.classes for _ in range(req.per_class)] if entry.cfg.model.num_classes else \
        [0] * total
    batch = req.per_class * max(1, BATCH_IMAGES // req.per_class)
    return Plan(entry, labels, [req.seed + i for i in range(total)], options, batch)


def _decoded(text: str, channels: int, what: str) -> torch.Tensor:
    """uint8 (1, C, H, W) from a base64 image (or a data: URL); a refusal is a one-line 422."""
    payload = text.split(",", 1)[1] if text.startswith("data:") else text
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise _refuse(422, f"{what}: not base64 (send the PNG's bytes in base64, or a data: URL)") from None
    try:
        image = decode_image(data, channels, what)
    except LargoError as e:
        raise _refuse(422, str(e)) from None
    if max(image.shape[-2:]) > MAX_EDIT_SIDE:
        raise _refuse(422, f"{what}: at most {MAX_EDIT_SIDE}×{MAX_EDIT_SIDE} pixels")
    return image


def _edit_plan(req: EditRequest, models: dict[str, ModelEntry]) -> EditPlan:
    """Check an edit request: the model, the class, the image and mask (decoded in memory, never from a path)."""
    entry = models.get(req.model)
    if entry is None:
        raise _refuse(404, f"unknown model {req.model[:80]!r}; GET /api/models lists the ones this server offers")
    if entry.latent or not entry.cfg.model.num_classes:
        raise _refuse(422, f"{entry.id}: editing needs a class-conditional pixel model")
    if req.target >= len(entry.class_names):
        raise _refuse(422, f"target: {req.target} is not a class of {entry.id} (it has classes 0.."
                           f"{len(entry.class_names) - 1})")
    if (req.edit == "inpaint") != (req.mask is not None):
        raise _refuse(422, "mask: inpainting needs a mask, and only inpainting takes one")
    image = _decoded(req.image, entry.cfg.model.image_channels, "image")
    try:
        check_images(image, entry.cfg)
        mask = None if req.mask is None else check_masks(_decoded(req.mask, 1, "mask")[0, 0] >= 128, image)
        options = SamplingOptions.resolve(entry.cfg, **{name: getattr(req, name) for name in OPTION_FIELDS})
    except LargoError as e:
        raise _refuse(422, str(e)) from None
    edit = {"edit": req.edit, **({"strength": req.strength} if req.edit == "img2img" else {"method": req.method})}
    return EditPlan(entry, [req.target], [req.seed], options, 1, image=image, mask=mask, edit=edit)


def _job_view(job: Job, jobs: JobQueue) -> dict:
    base = f"/api/jobs/{job.id}"
    images = [{k: v for k, v in r.items() if k not in ("png", "trajectory")}
              | {"url": f"{base}/images/{r['index']}", "trajectory_url": f"{base}/images/{r['index']}/trajectory"}
              for r in list(job.images)]
    return {"id": job.id, "status": job.status, "position": jobs.position(job), "done": job.done,
            "total": job.total, "expected": len(job.plan.labels), "images": images, "error": job.error,
            "download_url": f"{base}/download"}


def _static(name: str) -> str:
    return (files("largo.serve") / "static" / name).read_text(encoding="utf-8")


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_line(exc)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI's "error parsing the body" (not UTF-8): the 422 of any unreadable body
            return JSONResponse({"detail": "the request body is not valid JSON"}, status_code=422)
        return JSONResponse({"detail": _one_line(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.middleware("http")
    async def bounded_body(request: Request, call_next):
        size = request.headers.get("content-length", "0")
        limit = MAX_EDIT_BODY_BYTES if request.url.path == "/api/edit" else MAX_BODY_BYTES
        if not size.isdigit() or int(size) > limit:
            return JSONResponse({"detail": f"the request body must be at most {limit} bytes"}, status_code=413)
        return await call_next(request)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": _one_line(f"internal error: {type(exc).__name__}: {exc}")}, status_code=500)


# long function: the routes share the app's state through this closure, one short handler each
def create_app(models: dict[str, ModelEntry], device: torch.device | str = "cpu",
               jobs: JobQueue | None = None) -> FastAPI:
    """The app over `models` (id → entry, from `catalog.discover`), sampling on `device`."""
    app = FastAPI(title="largo serve", version=__version__, docs_url=None, redoc_url=None, openapi_url=None,
                  responses=REFUSALS)
    cache = ModelCache(torch.device(device))
    jobs = jobs or JobQueue()
    app.state.jobs, app.state.cache, app.state.models = jobs, cache, models
    page = {name: _static(name) for name in ("index.html", *STATIC)}
    _install_error_handlers(app)

    def find_job(job_id: str) -> Job:
        job = jobs.get(job_id)
        if job is None:
            raise _refuse(404, f"unknown job {job_id[:40]!r} (jobs are kept in memory until the server stops)")
        return job

    def find_image(job: Job, k: int) -> dict:
        arrived = list(job.images)
        if not 0 <= k < len(arrived):
            raise _refuse(404, f"job {job.id} has no image {k} (it has {len(arrived)} so far)")
        return arrived[k]

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return HTMLResponse(page["index.html"])

    @app.get("/static/{name}", response_class=Response,
             responses={200: {"content": {media: {} for media in STATIC.values()}}})
    def static(name: str) -> Response:
        if name not in STATIC:  # a fixed set of files read at start-up; a request never names a path
            raise _refuse(404, f"no static file {name[:40]!r}")
        return Response(page[name], media_type=STATIC[name])

    @app.get("/api/models")
    def list_models() -> ModelList:
        return {"models": [e.describe() for e in models.values()], "device": str(cache.device),
                "limits": {"per_class": MAX_PER_CLASS, "images": MAX_IMAGES, "steps": MAX_STEPS, "cfg": MAX_CFG,
                           "seed": MAX_SEED}, "version": __version__}

    @app.post("/api/generate")
    def generate(req: GenerateRequest) -> Submitted:
        plan = _plan(req, models)
        try:
            job = jobs.submit(req.model_dump(), lambda j: run_generation(j, plan, cache), plan=plan)
        except QueueFull as e:
            raise _refuse(429, str(e)) from None
        return {"job": job.id, "position": jobs.position(job), "images": len(plan.labels),
                "status_url": f"/api/jobs/{job.id}"}

    @app.get("/api/models/{model_id:path}/test-images/{k}", response_class=Response, responses=PNG)
    def test_image(model_id: str, k: int) -> Response:
        """The k-th held-out test image of a listed model's dataset, at its resolution (the class in a header)."""
        entry = models.get(model_id)
        if entry is None:
            raise _refuse(404, f"unknown model {model_id[:80]!r}")
        try:
            test = test_images(entry)
        except LargoError as e:
            raise _refuse(404, f"no test images for {entry.id}: {e}") from None
        if not 0 <= k < len(test.labels):
            raise _refuse(404, f"test image {k}: {entry.id}'s test split has {len(test.labels)} images (0..)")
        return Response(png_bytes(test.images[k]), media_type="image/png",
                        headers={"X-Largo-Class": str(int(test.labels[k]))})

    @app.post("/api/edit")
    def edit(req: EditRequest) -> Submitted:
        plan = _edit_plan(req, models)
        record = req.model_dump(exclude={"image", "mask"})
        try:
            job = jobs.submit(record, lambda j: run_edit(j, plan, cache), plan=plan)
        except QueueFull as e:
            raise _refuse(429, str(e)) from None
        return {"job": job.id, "position": jobs.position(job), "images": 1, "status_url": f"/api/jobs/{job.id}"}

    @app.get("/api/jobs/{job_id}")
    def job_status(job_id: str) -> JobView:
        return _job_view(find_job(job_id), jobs)

    @app.post("/api/jobs/{job_id}/cancel")
    def cancel(job_id: str) -> JobStatus:
        job = find_job(job_id)
        jobs.cancel(job)
        return {"id": job.id, "status": job.status}

    @app.get("/api/jobs/{job_id}/images/{k}", response_class=Response, responses=PNG)
    def image(job_id: str, k: int, download: bool = False) -> Response:
        record = find_image(find_job(job_id), k)
        headers = {"Content-Disposition": f'attachment; filename="{image_name(record)}"'} if download else {}
        return Response(record["png"], media_type="image/png", headers=headers)

    @app.get("/api/jobs/{job_id}/images/{k}/trajectory", response_class=Response, responses=PNG)
    def trajectory(job_id: str, k: int) -> Response:
        job = find_job(job_id)
        record = find_image(job, k)
        if isinstance(job.plan, EditPlan):
            raise _refuse(404, f"job {job.id} is an edit; edits have no reverse trajectory here")
        if "trajectory" not in record:
            try:
                record["trajectory"] = jobs.call(lambda: trajectory_strip(job.plan, k, cache), TRAJECTORY_TIMEOUT_S)
            except TimeoutError:
                raise _refuse(503, "the server is busy; try the trajectory again later") from None
        return Response(record["trajectory"], media_type="image/png")

    @app.get("/api/jobs/{job_id}/download", response_class=Response,
             responses={200: {"content": {"application/zip": {}}}})
    def download(job_id: str) -> Response:
        job = find_job(job_id)
        if not job.images:
            raise _refuse(409, f"job {job.id} has no images yet")
        return Response(zip_bytes(job), media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="largo-{job.id}.zip"'})

    return app
