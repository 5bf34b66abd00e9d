"""The ``peekwidgets`` command.

``peekwidgets demo`` trains (or loads from the cache) the demo CNN on the bundled digits, then
serves the quickstart notebook (shipped in the package, ``peekwidgets/notebooks``) with Voilà on
127.0.0.1 and prints its address.
``peekwidgets demo --headless --out DIR`` runs the same analysis without a server and writes a
report folder (PNG figures and ``summary.json``).
``peekwidgets analyze --model pkg.module:factory --data PATH --out DIR`` analyses any model on
a data set, on one process or under ``torchrun`` on many (:mod:`peekwidgets.analyze`), and
writes the report, the factors and the saved analysis (``Analysis.load(DIR / "analysis")``).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from peekwidgets import __version__

__all__ = ["build_parser", "demo_notebook", "main", "start_voila", "stop_server", "wait_ready"]

DEFAULT_PORT = 8866
DEFAULT_OUT = Path("peekwidgets-report")
NOTEBOOK = "quickstart.ipynb"
#: The sizes of the --headless report when not given.
REPORT_SIZES = {"rank": 6, "samples": 500, "max_rank": 10}


def _int_at_least(low: int, what: str, high: int | None = None):
    """An argparse type: an int in ``[low, high]`` with a message that names the bad value."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"{what} must be {bounds}, got {value}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="peekwidgets",
        description="Look inside a trained PyTorch network through one joint factorization "
        "of its inputs and layer outputs.",
    )
    parser.add_argument("--version", action="version", version=f"peekwidgets {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    demo = commands.add_parser(
        "demo",
        help="train the demo CNN on the bundled digits and show the dashboard (or a report)",
        description="Train (or load from the cache) a small CNN on scikit-learn's bundled "
        "digits, keeping checkpoints of the run, then serve the quickstart notebook with "
        "Voilà on 127.0.0.1, or with --headless write a report folder instead.",
    )
    demo.add_argument(
        "--headless", "--no-serve", dest="headless", action="store_true",
        help="run the analysis without a server and write the report folder",
    )
    demo.add_argument(
        "--out", type=Path, default=None,
        help=f"report folder, with --headless (default: {DEFAULT_OUT})",
    )
    demo.add_argument(
        "--port", type=_int_at_least(1, "--port", 65535), default=DEFAULT_PORT,
        help="port of the Voilà server on 127.0.0.1 (default: %(default)s)",
    )
    demo.add_argument(
        "--cache", type=Path, default=None,
        help="folder of the trained checkpoints (default: $PEEKWIDGETS_CACHE or "
        "~/.cache/peekwidgets)",
    )
    demo.add_argument("--retrain", action="store_true", help="train again, ignoring the cache")
    demo.add_argument(
        "--rank", type=_int_at_least(1, "--rank", 50), default=None,
        help="with --headless: components of the joint factorization in the report "
        f"(default: {REPORT_SIZES['rank']})",
    )
    demo.add_argument(
        "--samples", type=_int_at_least(10, "--samples", 500), default=None,
        help=f"with --headless: held-out digits analysed (default: {REPORT_SIZES['samples']})",
    )
    demo.add_argument(
        "--max-rank", type=_int_at_least(1, "--max-rank", 50), default=None,
        help="with --headless: largest rank of the rank profiles "
        f"(default: {REPORT_SIZES['max_rank']})",
    )
    demo.add_argument(
        "--notebook", type=Path, default=None,
        help=f"notebook to serve (default: the package's {NOTEBOOK})",
    )
    demo.set_defaults(handler=_demo, parser=demo)
    _add_analyze(commands)
    return parser


def _floats(what: str):
    """An argparse type: comma-separated floats, such as ``0.485,0.456,0.406``."""

    def parse(text: str) -> list[float]:
        try:
            return [float(v) for v in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{what} must be comma-separated numbers such as 0.485,0.456,0.406, got "
                f"{text!r}") from None

    return parse


def _add_analyze(commands):
    analyze = commands.add_parser(
        "analyze",
        help="analyse a model on a data set and write the report, the factors and the "
        "analysis (one process, or many under torchrun)",
        description="Capture a model's inputs and layer outputs on a data set, fit the joint "
        "factorization and its rank profile, and write into --out the report (PNG figures, "
        "summary.json), the factors (factors.npz) and the saved analysis (analysis/, opened "
        "with peekwidgets.Analysis.load). Under torchrun (torchrun --nproc-per-node G -m "
        "peekwidgets analyze ...) each process captures its own shard of the data; rank 0 "
        "writes the files.",
    )
    analyze.add_argument("--model", required=True, metavar="MODULE:FACTORY",
                         help="a callable that returns the nn.Module, e.g. "
                         "torchvision.models:resnet18 or mypackage.nets:build_model")
    analyze.add_argument("--weights", type=Path, default=None,
                         help="a state_dict file (torch.save(model.state_dict(), path))")
    analyze.add_argument("--data", type=Path, required=True,
                         help="a folder of class subfolders of images (ImageFolder), a flat "
                         "folder of images, a .npy array or a .pt tensor file (N, ...)")
    analyze.add_argument("--out", type=Path, default=Path("peekwidgets-analysis"),
                         help="output folder (default: %(default)s)")
    analyze.add_argument("--rank", type=_int_at_least(1, "--rank"), default=5,
                         help="components of the joint factorization (default: %(default)s)")
    analyze.add_argument("--max-rank", type=_int_at_least(1, "--max-rank"), default=10,
                         help="largest rank of the rank profile (default: %(default)s)")
    analyze.add_argument("--layers", default="auto",
                         help="'auto', or comma-separated module names or patterns "
                         "(default: %(default)s)")
    analyze.add_argument("--size", type=_int_at_least(1, "--size"), default=None,
                         help="resize and center-crop images to SIZE x SIZE (default: as "
                         "they are; they must then share one size)")
    analyze.add_argument("--mean", type=_floats("--mean"), default=None,
                         help="per-channel mean (with --std): normalizes the images of an "
                         "image folder; for any --data, the normalization the views undo to "
                         "draw the inputs")
    analyze.add_argument("--std", type=_floats("--std"), default=None,
                         help="per-channel standard deviation (with --mean)")
    analyze.add_argument("--batch-size", type=_int_at_least(1, "--batch-size"), default=64,
                         help="samples per forward pass (default: %(default)s)")
    analyze.add_argument("--workers", type=_int_at_least(0, "--workers"), default=None,
                         help="DataLoader workers per process that decode image files "
                         "(default: the node's CPU cores shared by its processes, at most 8)")
    analyze.add_argument("--nonnegative", action="store_true",
                         help="nonnegative factors (HALS) instead of least squares")
    analyze.add_argument("--max-iter", type=_int_at_least(1, "--max-iter"), default=None,
                         help="most sweeps of the fit (default: CoupledCP's, 1000)")
    analyze.add_argument("--tol", type=float, default=None,
                         help="the fit stops when the loss decreases by less than this "
                         "share in a sweep (default: CoupledCP's, 1e-6)")
    analyze.add_argument("--seed", type=int, default=0,
                         help="seed of torch before the model is built, and of the fit "
                         "(default: 0)")
    analyze.add_argument("--memory-budget", default=None,
                         help="bytes the captured blocks may take in memory per process, "
                         "e.g. 8GB (default: half of the free memory)")
    analyze.add_argument("--timeout", type=_int_at_least(1, "--timeout"), default=600,
                         help="seconds a process waits in a collective before giving up, "
                         "under torchrun (default: %(default)s)")
    analyze.set_defaults(handler=_analyze, parser=analyze)


def _analyze(args) -> int:
    if "RANK" not in os.environ:
        return _run_analyze(args)
    # under torchrun: an error's traceback goes to the agent, which reports the first one
    from torch.distributed.elastic.multiprocessing.errors import record

    return record(_run_analyze)(args)


def _refuse(args, message: str):
    """Exit with ``message`` and the usage (status 2) for a bad option, said once: under
    torchrun, by process 0 alone (every process reads the same options)."""
    if os.environ.get("RANK", "0") != "0":
        raise SystemExit(2)
    args.parser.error(message)


def _run_analyze(args) -> int:
    from peekwidgets import analyze

    if (args.mean is None) != (args.std is None):
        _refuse(args, "pass --mean and --std together (the normalization of the inputs)")
    if args.out.exists() and not args.out.is_dir():
        _refuse(args, f"--out {args.out} is a file; pass a folder for the output")
    with analyze.process_group(args.timeout):
        try:
            summary = analyze.run(args)
        except analyze.BadInput as error:  # one process's data may be bad: each says its own
            args.parser.error(str(error))
    if summary is not None:
        _written("analysis", args.out, [*summary["files"], "analysis/ (peekwidgets.Analysis.load)"],
                 summary["problems"])
    return 0


def _written(what: str, out: Path, files: list, problems: list) -> None:
    """Print the files written into ``out`` and the fit's problems (``summary.json``'s)."""
    print(f"{what} written to {out.resolve()}:")
    for name in files:
        print(f"  {name}")
    for problem in problems:
        print(f"the fit: {problem}")


def main(argv=None) -> int:
    """Entry point of the ``peekwidgets`` command; returns the exit status.

    The notebook served by default shows the dashboard with its own sizes; ``--rank``,
    ``--samples`` and ``--max-rank`` size the ``--headless`` report.
    """
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        code = _check_demo(args)
        if code:
            return code
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


def _check_demo(args) -> int | None:
    """Exit with a message on options of ``demo`` that do not go together; 1 when the
    dashboard cannot be served."""
    parser = args.parser
    sizes = {"--rank": args.rank, "--samples": args.samples, "--max-rank": args.max_rank}
    if not args.headless and any(v is not None for v in sizes.values()):
        given = ", ".join(k for k, v in sizes.items() if v is not None)
        parser.error(f"{given} size the --headless report; the served dashboard has its own "
                     "controls (rank slider, Rank profile): add --headless, or drop " + given)
    args.rank = REPORT_SIZES["rank"] if args.rank is None else args.rank
    args.samples = REPORT_SIZES["samples"] if args.samples is None else args.samples
    args.max_rank = REPORT_SIZES["max_rank"] if args.max_rank is None else args.max_rank
    if args.samples < args.rank or args.samples < args.max_rank:
        parser.error(
            f"--samples {args.samples} must be at least --rank ({args.rank}) and "
            f"--max-rank ({args.max_rank}); lower the ranks or analyse more samples"
        )
    if args.out is not None and not args.headless:
        parser.error("--out names the report folder of --headless; add --headless, or drop "
                     "--out to serve the dashboard")
    args.out = args.out or DEFAULT_OUT
    if args.headless and args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} is a file; pass a folder for the report")
    if args.cache is not None and args.cache.exists() and not args.cache.is_dir():
        parser.error(f"--cache {args.cache} is a file; pass a folder for the checkpoints")
    if not args.headless:
        notebook = args.notebook or demo_notebook()
        if not notebook.is_file():
            parser.error(f"notebook '{notebook}' not found; pass the path of a notebook to "
                         "serve, or use --headless for a report")
        args.notebook = notebook
        problem = _cannot_serve(args.port)
        if problem:
            print(f"peekwidgets demo: error: {problem}", file=sys.stderr)
            return 1
    return None


def _demo(args) -> int:
    from peekwidgets.demo import load_demo

    print("peekwidgets demo: the digits CNN and its checkpoints", flush=True)
    run = load_demo(args.cache, retrain=args.retrain, progress=True)
    source = f"loaded from {run.path}" if run.loaded else f"trained now, cached in {run.path}"
    print(
        f"  {len(run.checkpoints)} checkpoints ({source}); held-out accuracy "
        + ", ".join(f"{name}: {acc:.1%}" for name, acc in run.accuracies.items()),
        flush=True,
    )
    if args.headless:
        from peekwidgets.report import write_demo_report

        summary = write_demo_report(
            run, args.out, rank=args.rank, n_samples=args.samples, max_rank=args.max_rank,
        )
        _written("report", args.out, summary["files"], summary["problems"])
        return 0
    return _serve(args.notebook, args.port, run.path.parent if run.path else None)


def demo_notebook() -> Path:
    """The quickstart notebook shipped with the package (``peekwidgets/notebooks``)."""
    return Path(__file__).resolve().parent / "notebooks" / NOTEBOOK


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _cannot_serve(port: int) -> str | None:
    """Why Voilà cannot serve on ``port`` (checked before training), or None."""
    install = ('`pip install "peekwidgets[demo]"` (or `make demo` in a checkout), or run '
               "`peekwidgets demo --headless` for a report without a server")
    if importlib.util.find_spec("voila") is None:
        return f"Voilà is not installed; {install}"
    if importlib.util.find_spec("ipykernel") is None:
        return f"no Jupyter kernel for Python (ipykernel is not installed); {install}"
    if not _port_free(port):
        return f"port {port} on 127.0.0.1 is in use; pass another one with --port"
    return None


#: Seconds after which Voilà shuts down a kernel that no page is connected to.
KERNEL_IDLE_TIMEOUT = 120


def start_voila(notebook: Path, port: int, idle_timeout: float = KERNEL_IDLE_TIMEOUT,
                **popen_kwargs) -> subprocess.Popen:
    """Start Voilà on ``notebook`` at 127.0.0.1:``port``, run from the notebook's folder.

    Every page load starts a kernel; a kernel that no page is connected to (its tab closed,
    or a page that never opened its connection) for ``idle_timeout`` seconds is shut down, so
    reloads and closed tabs do not pile kernels up. ``popen_kwargs`` go to
    :class:`subprocess.Popen` (for example ``env`` or ``stdout``).
    """
    interval = max(1, min(60, round(idle_timeout / 2)))
    command = [
        sys.executable, "-m", "voila", "--no-browser", f"--port={port}",
        "--Voila.ip=127.0.0.1", "--Voila.port_retries=0", "--show_tracebacks=True",
        f"--MappingKernelManager.cull_idle_timeout={idle_timeout:g}",
        f"--MappingKernelManager.cull_interval={interval}",
        "--MappingKernelManager.cull_connected=False",
        notebook.name,
    ]
    return subprocess.Popen(command, cwd=notebook.parent, **popen_kwargs)


def wait_ready(server: subprocess.Popen, port: int, timeout: float = 60.0,
               path: str = "/voila/static/favicon.ico") -> bool:
    """Poll ``path`` on the server until it answers or the server exits.

    The default is a static file of Voilà (a GET of ``/`` would start a kernel). Returns False
    when ``timeout`` seconds pass or the server exits first.
    """
    url = f"http://127.0.0.1:{port}{path}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return True
        except OSError:
            time.sleep(0.3)
    return False


def stop_server(server: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM (Voilà shuts its kernels down), then kill after ``grace`` seconds."""
    if server.poll() is not None:
        return
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def _serve(notebook: Path, port: int, cache_dir: Path | None) -> int:
    """Run Voilà on ``notebook`` at 127.0.0.1:``port`` until it stops or Ctrl-C."""
    env = dict(os.environ)
    if cache_dir is not None:
        env["PEEKWIDGETS_CACHE"] = str(cache_dir)
    # the kernel runs in the notebook's folder, inside the package: the dashboard's Export
    # and Save buttons write into the folder the command was run from instead
    env["PEEKWIDGETS_OUTPUT"] = str(Path.cwd())
    print(f"starting Voilà on {notebook} ...", flush=True)
    server = start_voila(notebook, port, env=env)
    # SIGTERM (a service manager, a test) stops the server like Ctrl-C instead of orphaning it
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        if wait_ready(server, port):
            print(f"\n  peekwidgets dashboard: http://127.0.0.1:{port}/\n"
                  "  (Ctrl-C stops the server)\n", flush=True)
        return server.wait()
    except KeyboardInterrupt:
        print("\nstopping the server ...", file=sys.stderr)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop_server(server)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
