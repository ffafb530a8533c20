"""`largo serve`: a local web playground for the released checkpoints and the user's runs."""

from __future__ import annotations

import argparse

INSTALL_HINT = "largo serve needs FastAPI and uvicorn: pip install 'largo[serve]'"
SERVER_PACKAGES = ("fastapi", "uvicorn", "starlette", "pydantic")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="a local web page to sample from the released checkpoints and your runs",
                       description="Start a local web app: pick a model and classes, set the sampler, steps, guidance "
                                   "and seed, watch the grid arrive with the domain classifier's verdict, click an "
                                   "image for its reverse trajectory, download the PNGs. It listens on localhost "
                                   "unless --host says otherwise, works offline, and runs one generation at a time.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    p.add_argument("--checkpoints", nargs="+", default=[], metavar="PATH",
                   help="run directories or checkpoint folders to offer besides the released checkpoints")
    p.add_argument("--runs", default="runs", metavar="DIR",
                   help="offer the runs found under this folder (default: runs; '' for none)")
    p.add_argument("--no-released", action="store_true", help="do not offer the released checkpoints")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run)


def _server_modules():
    """The app and server modules; a missing FastAPI/uvicorn is one line naming the extra to install."""
    from largo.errors import LargoError

    try:
        from largo.serve import app, server
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] in SERVER_PACKAGES:
            raise LargoError(INSTALL_HINT) from None
        raise
    return app, server


def run(args: argparse.Namespace) -> int:
    app_module, server = _server_modules()
    from largo.runtime import resolve_device
    from largo.serve.catalog import discover

    server.check_port(args.host, args.port)  # before loading anything: a busy port is the commonest mistake
    device = resolve_device(args.device)
    models = discover(args.runs or None, args.checkpoints, released=not args.no_released)
    print(f"largo serve: {len(models)} models on {device}: " + (", ".join(models) or "none (pass --checkpoints)"))
    app = app_module.create_app(models, device)
    try:
        server.serve(app, args.host, args.port)
    finally:
        app.state.jobs.close()
    print("largo serve: stopped")
    return 0
