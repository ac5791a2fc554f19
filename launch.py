"""Start the ftapp web UI: the composition root (settings → services → ui.build_app → launch).

Reaching the app from another machine (``--share``, or ``--host`` other than a loopback
address) requires ``--auth user:pass`` (or FTAPP_AUTH); without it the app refuses to start. It
does not invent credentials: a password printed to a log is a password in the log.

The public demo (FTAPP_DEMO=1, and by default on Hugging Face Spaces) is the exception: it needs
no login, because there every visitor has their own datasets, runs and adapters (a key in a
cookie), may only upload files, and runs small capped jobs (``ftapp.demo.policy``). On Spaces it
listens on 0.0.0.0:7860 and keeps its home in the Space's persistent storage (/data) when it has one.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from pathlib import Path

from ftapp.demo import DemoCaps
from ftapp.errors import FtappError
from ftapp.services import Services, open_services
from ftapp.settings import Settings, demo_requested, on_spaces

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
log = logging.getLogger("ftapp.launch")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="launch.py",
        description="Start the ftapp fine-tuning studio in the browser.",
        epilog="Exposing the app (--share, or a --host that is not 127.0.0.1/localhost/::1) requires "
        "--auth user:pass (or FTAPP_AUTH=user:pass); without it launch.py exits with status 2. No credentials "
        "are generated. Demo mode (FTAPP_DEMO=1, or on Hugging Face Spaces) needs no login: there each "
        "visitor sees only their own uploads and runs, may not name server paths, and jobs are capped.",
    )
    parser.add_argument("--home", help="data directory (default: $FTAPP_HOME or ~/.ftapp)")
    # Spaces routes visitors to port 7860 of the container, which must listen on every interface.
    parser.add_argument(
        "--host",
        default="0.0.0.0" if on_spaces(os.environ) else "127.0.0.1",
        help="address to listen on (default: 127.0.0.1; 0.0.0.0 on Hugging Face Spaces)",
    )
    parser.add_argument("--port", type=int, default=7860, help="port to listen on (default: 7860)")
    parser.add_argument("--share", action="store_true", help="open a public gradio.live link (requires --auth)")
    parser.add_argument(
        "--auth",
        metavar="USER:PASS",
        default=os.environ.get("FTAPP_AUTH") or None,
        help="require this login (default: $FTAPP_AUTH); needed with --share or a non-local --host",
    )
    parser.add_argument("--root-path", default=None, help="URL prefix when served behind a reverse proxy, e.g. /ftapp")
    parser.add_argument(
        "--allow-root",
        action="append",
        default=[],
        metavar="DIR",
        help="when shared or exposed, a server folder users may import from (default: uploads only)",
    )
    parser.add_argument("--no-demo", action="store_true", help="do not build the offline demo on the first start with an empty registry")
    return parser


def is_exposed(args: argparse.Namespace) -> bool:
    """Reachable by people other than this machine's user."""
    return args.share or args.host not in LOOPBACK_HOSTS


def parse_auth(parser: argparse.ArgumentParser, args: argparse.Namespace, demo: bool = False) -> tuple[str, str] | None:
    """The login gradio should require, or a parser error when exposing the app without one (the demo needs none)."""
    if args.auth is None:
        if is_exposed(args) and not demo:
            reason = "--share publishes a public link" if args.share else f"--host {args.host} listens beyond this machine"
            parser.error(f"refusing to start: {reason} and anyone who reaches it could read your data and start jobs; add --auth user:pass")
        return None
    user, sep, password = args.auth.partition(":")
    if not sep or not user or not password:
        parser.error("--auth must be user:pass with both parts non-empty")
    return user, password


def allowed_roots(extra: list[str]) -> tuple[Path, ...]:
    """Server folders a visitor of a shared app may import from: gradio's uploads, plus --allow-root."""
    from gradio.utils import get_upload_folder  # gradio is imported for the UI anyway

    return (Path(get_upload_folder()), *(Path(p).expanduser().resolve() for p in extra))


def edge_options(settings: Settings, demo: bool, exposed: bool, auth: tuple[str, str] | None) -> dict:
    """What gradio's launch takes beyond the defaults: middleware in front of the app, the demo's upload cap.

    With --auth, failed logins are throttled (``ui.login_throttle``). In the demo and in an exposed
    app, each browser gets a signed visitor cookie (``ui.visitors``) and may hand an event only files
    it uploaded itself (``ui.uploads``): a path it names, a host file or another visitor's upload, is
    refused before gradio reads it.
    """
    from starlette.middleware import Middleware  # gradio's web stack

    from ftapp.demo import IdentitySigner, proxy_hops
    from ui.login_throttle import LoginThrottleMiddleware
    from ui.uploads import UploadGuard
    from ui.visitors import VisitorCookie

    middleware = [Middleware(LoginThrottleMiddleware, hops=proxy_hops())] if auth else []
    if demo or exposed:
        signer = IdentitySigner.in_home(settings.secrets_dir)
        middleware += [Middleware(VisitorCookie, signer=signer), Middleware(UploadGuard, signer=signer, demo=demo)]
    options: dict = {"app_kwargs": {"middleware": middleware}} if middleware else {}
    if demo:
        options["max_file_size"] = f"{DemoCaps.from_env().max_upload_mb}mb"  # gradio refuses larger uploads
    return options


def build_demo_in_background(services: Services) -> threading.Thread:
    """Build and register the offline demo without holding up the UI (the build takes ~20 s); on Spaces, then the
    real model too."""

    def build() -> None:
        try:
            demo = services.demo.install()
        except Exception:  # a thread's failure is otherwise lost; the UI keeps running without the demo
            log.exception("building the offline demo failed; use the Home tab's button to retry")
            return
        log.info("offline demo registered: model %s, dataset %s, prompt %s", demo.model.name, demo.dataset.name, demo.prompt.name)
        if not on_spaces(os.environ):
            return  # elsewhere the Home tab offers the real model: converting it is the user's choice
        # The public demo on Spaces also shows a real model (SmolLM2-135M-Instruct, preloaded from the Hub), after the
        # tiny kit, which is usable at once.
        try:
            real = services.demo.install_real_model()
        except Exception:
            log.exception("registering the real demo model failed; use the Home tab's button to retry")
            return
        log.info("real demo model registered: %s", real.name)

    thread = threading.Thread(target=build, name="demo-build", daemon=True)
    thread.start()
    return thread


def main(argv: list[str] | None = None) -> int:
    # Our own progress at INFO; the libraries' (alembic, httpx) only when something is wrong.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    log.setLevel(logging.INFO)
    parser = build_parser()
    args = parser.parse_args(argv)
    demo = demo_requested(os.environ)
    if demo and args.allow_root:
        parser.error("--allow-root does not apply to the demo: its visitors upload files and name no server paths")
    auth = parse_auth(parser, args, demo)
    started = time.monotonic()
    # Trainer children start in their run folders; on Spaces the packages are not installed, only
    # checked out next to this file, so the children are told where they are.
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH")) if p)
    exposed = is_exposed(args)
    settings = Settings.from_env(
        args.home, host=args.host, port=args.port, demo=demo, allowed_roots=allowed_roots(args.allow_root) if exposed or demo else None
    )
    try:
        services = open_services(settings)
    except FtappError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    # Re-attach to runs that kept training while the app was down, then keep supervising.
    services.supervisor.start_background()
    if not args.no_demo and services.is_empty():
        log.info("empty registry: building the offline demo in the background")
        build_demo_in_background(services)

    import ui  # after the checks above, so a refused start does not pay gradio's import time

    app = ui.build_app(services)
    log.info("home %s; UI built in %.1f s%s", settings.home, time.monotonic() - started, "; demo mode" if demo else "")
    try:
        app.launch(
            server_name=settings.host,
            server_port=settings.port,
            share=args.share,
            auth=auth,
            root_path=args.root_path,
            ssr_mode=False,
            # gradio's run history stores every public call's inputs in the browser (an HF token, API keys,
            # uploads) and offers to copy them to a Hugging Face bucket: a studio that handles secrets keeps none
            run_history=False,
            allowed_paths=[str(settings.exports_dir)],  # archives of the Export tab's download button
            **edge_options(settings, demo, exposed, auth),
        )
    finally:
        services.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
