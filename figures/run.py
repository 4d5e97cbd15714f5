"""``dln figures``: regenerate every theory figure (docs/design.md §5, §6).

    dln figures --out figures/out            # all nine figures, full size (a few minutes)
    dln figures --out /tmp/figs --quick      # small sizes (well under a minute)
    dln figures --out DIR --only fig3 fig7   # some of them (name, prefix or number)
    dln figures --out figures/out --gallery docs/gallery   # also the PNGs of the README (110 dpi)

Each figure is written as NAME.png, NAME.pdf and NAME.csv (the plotted numbers) in ``--out``.
With ``--workers 2`` (the default on a machine with two or more cores; ``--jobs`` is the old
spelling) the figures are computed in two worker processes.  A line per figure is printed as it
finishes (name, seconds); while figures are computing, the progress shows on stderr (a bar on a
terminal, else a status line every 10 s); ``--quiet`` prints neither.
"""
from __future__ import annotations

import importlib
import os
import sys
import time

FIGURES = (
    "fig1_kernel_rich",
    "fig2_gr_regime",
    "fig3_ascent_step",
    "fig4_gain_shape",
    "fig5_theory_vs_sim",
    "fig6_flooding",
    "fig7_sam",
    "fig8_incremental",
    "fig9_large_steps",
)
#: rough relative cost in full mode (largest first when scheduling on several workers)
_COST = {"fig9_large_steps": 9, "fig4_gain_shape": 6, "fig5_theory_vs_sim": 6, "fig2_gr_regime": 5,
         "fig3_ascent_step": 4, "fig7_sam": 4, "fig6_flooding": 2, "fig1_kernel_rich": 2, "fig8_incremental": 1}


def module(name: str):
    return importlib.import_module(f"figures.{name}")


def resolve(names) -> list[str]:
    """Figure names from full names, prefixes (``fig3``) or numbers (``3``); ValueError otherwise."""
    if not names:
        return list(FIGURES)
    out = []
    for raw in names:
        key = str(raw).strip()
        if key.isdigit():
            key = f"fig{int(key)}_"
        hits = [f for f in FIGURES if f == key or f.startswith(key)]
        if len(hits) != 1:
            from dln.errors import DLNError  # a user error (the CLI reports it on one line, exit 2)

            raise DLNError(f"The 'only' parameter of figures must name one figure of {', '.join(FIGURES)} "
                             f"(a name, a prefix such as fig3, or a number). Got {raw!r} instead.")
        if hits[0] not in out:
            out.append(hits[0])
    return out


def _one(name: str, quick: bool, out: str, dpi: int, gallery: str | None = None) -> dict:
    from . import common

    return common.make_figure(module(name), quick=quick, out=out, dpi=dpi, gallery=gallery)


def run(names, *, out: str, quick: bool = False, dpi: int = 100, workers: int = 1, gallery: str | None = None,
        log=print, quiet: bool = False, jobs: int | None = None) -> list[dict]:
    """Make the figures ``names`` into ``out``; returns one info dict per figure (in FIGURES order).

    ``log(line)`` receives one line per figure as it finishes; unless ``quiet``, the progress
    (figures done, seconds elapsed and left) shows on stderr (:class:`dln.progress.Progress`).
    ``jobs`` is the old name of ``workers``."""
    from dln.progress import Progress

    names = resolve(names)
    os.makedirs(out, exist_ok=True)
    infos = {}
    workers = max(1, min(int(workers if jobs is None else jobs), len(names)))
    progress = Progress("dln figures", len(names), unit="figure", quiet=quiet)

    def finished(info):
        infos[info["name"]] = info
        progress.update(1)
        if log is print:
            progress.write(_line(info))  # beside a progress bar without breaking it
        elif log is not None:
            log(_line(info))

    try:
        _make(names, quick, out, dpi, gallery, workers, progress, finished)
    finally:
        progress.close()
    return [infos[n] for n in names]


def _make(names, quick, out, dpi, gallery, workers, progress, finished):
    """Compute the figures here (one worker) or in a pool of ``workers`` processes, longest first,
    calling ``finished(info)`` as each one finishes."""
    if workers == 1:
        progress.start()
        for name in names:
            finished(_one(name, quick, out, dpi, gallery))
    else:
        import concurrent.futures as cf
        import multiprocessing as mp

        from dln.workers import limit_threads

        order = sorted(names, key=lambda n: -_COST.get(n, 1))
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=limit_threads) as ex:
            futs = {ex.submit(_one, name, quick, out, dpi, gallery): name for name in order}
            progress.start()  # after the fork: a tqdm bar may start a monitor thread
            pending = set(futs)
            while pending:  # wake up every second so that the status line keeps its pace
                done, pending = cf.wait(pending, timeout=1.0, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    finished(fut.result())
                if not done:
                    progress.update(0)


def _line(info: dict) -> str:
    return (f"{info['name']:<20} compute {info['compute']:6.1f} s (CPU {info['compute_cpu']:6.1f} s)   "
            f"plot {info['plot']:5.1f} s (CPU {info['plot_cpu']:5.1f} s)")


def cmd_figures(args) -> int:
    t0 = time.perf_counter()
    names = resolve(args.only)
    mode = "quick" if args.quick else "full"
    workers = max(1, min(args.workers, len(names)))
    say = (lambda line: None) if args.quiet else (lambda line: print(line, flush=True))
    say(f"dln figures: {len(names)} figure(s), {mode} size, {workers} worker(s) -> {args.out}")
    infos = run(names, out=args.out, quick=args.quick, dpi=args.dpi, workers=workers, gallery=args.gallery,
                log=None if args.quiet else print, quiet=args.quiet)
    cpu = sum(i["compute_cpu"] + i["plot_cpu"] for i in infos)
    say(f"done in {time.perf_counter() - t0:.1f} s wall ({cpu:.1f} s CPU in the figure workers); "
        f"PNG, PDF and CSV in {args.out}")
    return 0


def add_figures_parser(subparsers):
    """Register ``dln figures`` (called by dln.cli)."""
    try:
        from dln.cli import OPTIONAL

        text = OPTIONAL["figures"][1]
    except ImportError:  # pragma: no cover - figures without dln is not a supported install
        text = "regenerate the theory figures (PNG, PDF, CSV)"
    p = subparsers.add_parser("figures", help=text,
                              description="Regenerate every theory figure: NAME.png, NAME.pdf and NAME.csv "
                                          "(the plotted numbers) per figure in --out; one line per figure as "
                                          "it finishes.")
    p.add_argument("--out", default=os.path.join("figures", "out"), metavar="DIR",
                   help="output folder (default figures/out)")
    p.add_argument("--quick", action="store_true", help="small sizes: all figures in well under a minute")
    p.add_argument("--only", nargs="+", metavar="NAME", default=None,
                   help="only these figures (name, prefix such as fig3, or number)")
    p.add_argument("--dpi", type=_dpi, default=100, help="PNG resolution (default 100)")
    p.add_argument("--gallery", metavar="DIR", default=None,
                   help="also write PNGs (110 dpi) for the README gallery into DIR (e.g. docs/gallery)")
    p.add_argument("--workers", "--jobs", dest="workers", metavar="N", type=_workers, default=min(2, os.cpu_count() or 1),
                   help="worker processes (default: 2 if the machine has 2 cores or more; --jobs is the old name)")
    p.add_argument("--quiet", action="store_true", help="no progress and no per-figure lines")
    p.set_defaults(func=cmd_figures)
    return p


def _positive(name, text, lo, hi):
    import argparse

    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer. Got {text!r} instead") from None
    if not lo <= v <= hi:
        raise argparse.ArgumentTypeError(f"must be in [{lo}, {hi}]. Got {v} instead")
    return v


def _dpi(text):
    return _positive("dpi", text, 10, 1200)


def _workers(text):
    return _positive("workers", text, 1, 64)


def main(argv=None) -> int:
    """``python -m figures.run [--out DIR] [--quick] [--only ...]`` (same as ``dln figures``)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m figures.run")
    sub = parser.add_subparsers(dest="command")
    add_figures_parser(sub)
    args = parser.parse_args(["figures"] + list(sys.argv[1:] if argv is None else argv))
    try:
        return args.func(args)
    except ValueError as exc:
        print(f"dln: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
