"""Start-up stays light: ``import dln``, ``dln --help`` and ``dln --version`` import no
scikit-learn, pandas, matplotlib or SymPy (checked in fresh processes), and the subcommands whose
modules are heavy are listed without being imported."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cli_helpers import call, env

HEAVY = ("sklearn", "pandas", "matplotlib", "sympy")
#: modules only the subcommand that needs them may import
LAZY = ("dln.check", "figures.run", "dln.plot")

PROBES = {
    "import dln": "import dln",
    "dln --help": "import runpy, sys\nsys.argv = ['dln', '--help']\n"
                  "try:\n    runpy.run_module('dln', run_name='__main__')\nexcept SystemExit:\n    pass",
    "dln --version": "import runpy, sys\nsys.argv = ['dln', '--version']\n"
                     "try:\n    runpy.run_module('dln', run_name='__main__')\nexcept SystemExit:\n    pass",
    "dln simulate --help": "import runpy, sys\nsys.argv = ['dln', 'simulate', '--help']\n"
                           "try:\n    runpy.run_module('dln', run_name='__main__')\nexcept SystemExit:\n    pass",
}


def loaded_modules(code: str) -> set:
    """Top-level names in sys.modules after running ``code`` in a fresh interpreter."""
    probe = code + "\nimport json, sys\nprint('@@' + json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=env())
    assert proc.returncode == 0, proc.stderr
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("@@")][-1]
    return set(json.loads(line[2:]))


@pytest.mark.parametrize("what", list(PROBES))
def test_no_heavy_import(what):
    mods = loaded_modules(PROBES[what])
    assert "dln" in mods
    assert not mods & set(HEAVY), sorted(mods & set(HEAVY))


@pytest.mark.slow
def test_the_probe_sees_a_heavy_import():
    """The probe itself can fail: importing the estimator's oracle is seen."""
    pytest.importorskip("sklearn")
    assert "sklearn" in loaded_modules("import dln\nimport sklearn.exceptions")


def test_help_lists_every_subcommand_without_importing_the_optional_ones(monkeypatch):
    for name in LAZY:
        monkeypatch.delitem(sys.modules, name, raising=False)
    code, out, _ = call(["--help"])
    assert code == 0
    for command in ("simulate", "predict", "derive", "sweep", "merge", "check", "figures", "plot"):
        assert f"\n    {command} " in out, command
    assert not [name for name in LAZY if name in sys.modules]


@pytest.mark.parametrize("command", ["sweep", "merge", "check", "figures"])
def test_optional_subcommands_build_their_own_parser(command):
    code, out, err = call([command, "--help"])
    assert code == 0 and out.startswith(f"usage: dln {command}"), err
    assert "--debug" in out and "--version" in out


#: modules a flow sweep with --workers 1 must not import: the batched predictions need no
#: scipy.linalg (whose array-API layer loads numpy.f2py and numpy.testing, ~0.1 s), and the
#: estimator, the trajectory files, discrete time and the worker pool are not on its path
NOT_ON_THE_SWEEP_PATH = ("scipy.linalg", "numpy.f2py", "dln.estimator", "dln.trajectory", "dln.discrete",
                         "concurrent.futures")


def test_a_flow_sweep_imports_only_what_it_runs(tmp_path):
    out = tmp_path / "out"
    code = ("import json, runpy, sys\n"
            f"sys.argv = ['dln', 'sweep', '--workers', '1', '--quiet', '--method', 'gf', 'gr', '--gamma', '0.1', "
            f"'--alpha', '0.1', '0.2', '--n', '6', '--d', '12', '--out', {str(out)!r}]\n"
            "try:\n    runpy.run_module('dln', run_name='__main__')\nexcept SystemExit as exc:\n    assert not exc.code\n"
            "print('@@' + json.dumps(sorted(sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env())
    assert proc.returncode == 0, proc.stderr
    mods = set(json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("@@")][-1][2:]))
    assert "dln.sweep" in mods and "analysis.predict" in mods  # it ran, and made its predictions
    rows = (out / "results.csv").read_text().splitlines()[1:]
    assert len(rows) == 4 and all(",converged," in row for row in rows)
    assert not [m for m in NOT_ON_THE_SWEEP_PATH if m in mods]
