"""The repository is complete on its own (docs/design.md §6).

A user's clone has nothing beside it, so:

- no tracked text file points outside the repository (a sibling folder, an absolute path of a
  developer's machine, a Markdown link escaping the root) or cites an issue-tracker number;
- every citation ``docs/theory.md §X.Y`` / ``docs/design.md §X`` resolves to a heading of that
  document (a bare ``§X`` in code and in README.md means docs/theory.md), and so does every section
  named in the ``dln check`` table;
- every relative link of README.md and docs/*.md points to a tracked file;
- LICENSE, CITATION.cff and CHANGELOG.md exist and agree with the package version;
- the example data of the README is what ``examples/make_examples.py`` writes, and
  ``dln simulate --data examples/sparse_regression.npz`` runs on it.

The checkers are tested on synthetic text too (``test_*_detects_*``), so that they cannot pass by
finding nothing.  Files come from ``git ls-files``; without git, from walking the tree minus the
folders that .gitignore lists.
"""
from __future__ import annotations

import ast
import configparser
import fnmatch
import functools
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dln

ROOT = Path(__file__).resolve().parents[1]

# -------------------------------------------------------------------------------------------------
# the tracked files
# -------------------------------------------------------------------------------------------------


def _git_files() -> list[str] | None:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    files = [f for f in out.stdout.decode("utf-8").split("\0") if f]
    return files or None


def _ignore_patterns() -> list[str]:
    path = ROOT / ".gitignore"
    if not path.exists():
        return []
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith(("#", "!"))]


def _ignored(rel: str, is_dir: bool, patterns) -> bool:
    """A small subset of .gitignore semantics: globs, trailing '/' (folders only), anchoring."""
    name = rel.rsplit("/", 1)[-1]
    for pat in patterns:
        if pat.endswith("/"):
            if not is_dir:
                continue
            pat = pat[:-1]
        anchored = pat.startswith("/") or "/" in pat
        pat = pat.lstrip("/")
        if fnmatch.fnmatchcase(rel if anchored else name, pat):
            return True
    return False


def _walked_files() -> list[str]:
    patterns = _ignore_patterns()
    out = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        base = Path(dirpath).relative_to(ROOT).as_posix()
        base = "" if base == "." else base + "/"
        dirnames[:] = sorted(d for d in dirnames if d != ".git" and not _ignored(base + d, True, patterns))
        out.extend(base + f for f in sorted(filenames) if not _ignored(base + f, False, patterns))
    return out


@functools.lru_cache(maxsize=None)
def tracked_files() -> tuple[str, ...]:
    files = _git_files()
    if files is None:
        files = _walked_files()
    return tuple(f for f in files if (ROOT / f).is_file())


@functools.lru_cache(maxsize=None)
def read_text(rel: str) -> str | None:
    """The file as UTF-8 text, or None for a binary file (a NUL byte, or not UTF-8)."""
    data = (ROOT / rel).read_bytes()
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def text_files() -> list[str]:
    return [f for f in tracked_files() if read_text(f) is not None]


def test_file_listing_sees_the_repository():
    files = set(tracked_files())
    for rel in ("README.md", "setup.cfg", "dln/__init__.py", "tests/test_repository.py", "docs/theory.md"):
        assert rel in files, rel
    assert not any(f.startswith(".git/") or "__pycache__" in f for f in files)


def test_walk_fallback_matches_the_gitignore_rules():
    pats = ["__pycache__/", "*.egg-info/", "figures/out/", "/out/"]
    assert _ignored("dln/__pycache__", True, pats) and not _ignored("dln/__pycache__", False, pats)
    assert _ignored("dln.egg-info", True, pats)
    assert _ignored("figures/out", True, pats) and not _ignored("figures/outline.py", False, pats)
    assert _ignored("out", True, pats) and not _ignored("docs/out", True, pats)
    walked = set(_walked_files())
    assert {"README.md", "dln/cli.py", "tests/test_repository.py"} <= walked
    assert not any("__pycache__/" in f or f.startswith(".git/") for f in walked)


# -------------------------------------------------------------------------------------------------
# nothing points outside the repository; no issue numbers
# -------------------------------------------------------------------------------------------------

# (patterns written so that this file does not match itself)
OUTSIDE = [
    (re.compile(r"\.\./shar[e]d"), "the sibling folder of the development checkout"),
    (re.compile(r"/wor[k]/"), "an absolute path of a development machine"),
    (re.compile(r"\b(?:THEOR[Y]|DESIG[N])\.md\b"), "the out-of-repository specification (cite docs/theory.md, docs/design.md)"),
]
ISSUE = re.compile(r"(?i)\bissues?\s*(?:no\.?\s*|number\s*)?#?\s*\d+\b|\b(?:PR|pull request)\s*#\s*\d+|\bgh-\d+\b")
MD_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"\n]*\")?\s*\)")
MD_REF = re.compile(r"^\s{0,3}\[[^\]\n]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def outside_references(text: str) -> list[str]:
    found = []
    for pattern, why in OUTSIDE:
        found += [f"{m.group(0)!r} ({why})" for m in pattern.finditer(text)]
    found += [f"{m.group(0)!r} (an issue-tracker number: say what the code does instead)" for m in ISSUE.finditer(text)]
    return found


def md_links(text: str) -> list[str]:
    """Targets of inline and reference-style Markdown links (URLs included)."""
    return [m.group(1) for m in MD_LINK.finditer(text)] + [m.group(1) for m in MD_REF.finditer(text)]


def local_target(target: str) -> str | None:
    """The path part of a link to a file (None for URLs, e-mail and in-page anchors)."""
    if URL.match(target) or target.startswith("#"):
        return None
    return target.split("#", 1)[0].split("?", 1)[0] or None


def escaping_links(rel: str, text: str) -> list[str]:
    bad = []
    for target in md_links(text):
        path = local_target(target)
        if path is None:
            continue
        if path.startswith("/"):
            bad.append(f"{target} (an absolute path)")
            continue
        resolved = ((ROOT / rel).parent / path).resolve()
        try:
            resolved.relative_to(ROOT)
        except ValueError:
            bad.append(f"{target} (outside the repository)")
    return bad


def test_no_tracked_file_points_outside_the_repository():
    problems = []
    for rel in text_files():
        text = read_text(rel)
        problems += [f"{rel}: {p}" for p in outside_references(text)]
        if rel.endswith(".md"):
            problems += [f"{rel}: link {p}" for p in escaping_links(rel, text)]
    assert not problems, "\n".join(problems)


def test_outside_reference_checks_detect_bad_text():
    shared, work = ".." + "/shared/THEO" + "RY.md", "/" + "work/main/dln"
    assert len(outside_references(f"see {shared} and {work}")) == 3
    for text in ("fixed in Iss" + "ue #3", "see iss" + "ue 7", "iss" + "ues 12 and 13", "P" + "R #45", "g" + "h-9"):
        assert outside_references(text), text
    for text in ("no issue here", "the sweeps issue", "an issue of 3 runs is not cited", "DESIGN"):
        assert not outside_references(text), text
    assert escaping_links("docs/x.md", "[a](../../etc/passwd) [b](/abs/x.md) [c](../README.md) [d](https://x.org/a)") == [
        "../../etc/passwd (outside the repository)", "/abs/x.md (an absolute path)"]


# -------------------------------------------------------------------------------------------------
# citations resolve to headings
# -------------------------------------------------------------------------------------------------
DOCS = {"theory": "docs/theory.md", "design": "docs/design.md"}
HEADING = re.compile(r"^#{1,6}[ \t]+(\d+(?:\.\d+)*)\.?[ \t]", re.MULTILINE)
SEC = r"\d+(?:\.\d+)*"
TOKEN = re.compile(rf"§\s?({SEC})(?:\s*[–-]\s*§?\s?({SEC}))?")
_TOKEN = rf"§\s?{SEC}(?:\s*[–-]\s*§?\s?{SEC})?"
_NOTE = r"(?:\s+(?:lemma|table|item\s+\d+|\"[^\"\n]*\"))?"
_SEP = r"(?:\s*(?:,|/|;|\band\b|\bor\b)\s*|\s+)"
CHAIN = re.compile(rf"(?<![\w/.-])(?:docs/)?(?P<doc>theory|design)\.md\)?\s*{_TOKEN}{_NOTE}(?:{_SEP}{_TOKEN}{_NOTE})*")
# a bare § after "et al." or "their" is a section of a paper, not of docs/theory.md
PAPER_SECTION = re.compile(r"(?:et al\.?|their)[\s,]*(?:\d{4}[\s,]*)?$")


@functools.lru_cache(maxsize=None)
def headings(doc: str) -> frozenset:
    path = ROOT / DOCS[doc]
    return frozenset(HEADING.findall(path.read_text(encoding="utf-8"))) if path.exists() else frozenset()


def citations(text: str, bare: str | None = None) -> list[tuple[str, str, int]]:
    """(document, section, line) of every § citation.

    ``docs/theory.md §7.3, §7.5`` and ranges ``§7.2–§8`` belong to the named document; a bare ``§N``
    elsewhere belongs to ``bare`` (None: not checked)."""
    out, taken = [], []
    for m in CHAIN.finditer(text):
        taken.append(m.span())
        line = text.count("\n", 0, m.start()) + 1
        for t in TOKEN.finditer(m.group(0)):
            out += [(m.group("doc"), s, line) for s in t.groups() if s]
    if bare is not None:
        for t in TOKEN.finditer(text):
            if any(a <= t.start() < b for a, b in taken):
                continue
            if PAPER_SECTION.search(text[max(0, t.start() - 30):t.start()]):
                continue
            line = text.count("\n", 0, t.start()) + 1
            out += [(bare, s, line) for s in t.groups() if s]
    return out


def bare_document(rel: str) -> str | None:
    """Which document a bare § means in this file (the convention stated in README.md)."""
    if rel.endswith(".py") or rel == "README.md" or rel == DOCS["theory"]:
        return "theory"
    if rel == DOCS["design"]:
        return "design"
    return None


def test_docs_have_the_cited_numbering():
    theory, design = headings("theory"), headings("design")
    for sec in ("0", "1", "1.1", "2.3", "3.2", "4.1", "5.4", "6.2", "7.1", "7.9", "8", "9", "10", "11", "12",
                "13", "14", "15"):
        assert sec in theory, sec
    assert {"1", "2", "3", "4", "5", "6"} <= design


def test_every_citation_resolves_to_a_heading():
    missing = []
    for rel in text_files():
        for doc, sec, line in citations(read_text(rel), bare_document(rel)):
            if sec not in headings(doc):
                missing.append(f"{rel}:{line}: {DOCS[doc]} §{sec} is not a heading of {DOCS[doc]}")
    assert not missing, "\n".join(missing)


def test_dln_check_sections_resolve():
    """The theorem table prints a § for every row: each must be a heading of docs/theory.md."""
    tree = ast.parse((ROOT / "dln" / "check.py").read_text(encoding="utf-8"))
    sections = {node.value for node in ast.walk(tree)
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(SEC, node.value)}
    assert {"2.1", "7.2", "5.1", "10"} <= sections  # the parse found the table
    assert sections <= headings("theory"), sorted(sections - headings("theory"))


def test_citation_parser_detects_bad_citations():
    T, Dz, S = "docs/" + "theory.md", "docs/" + "design.md", chr(0xA7)  # no citation in this file's text
    text = (f"(see {T} {S}7.3, {S}7.5 and {S}99)\n# {T} {S}4 lemma, {S}5.1; {Dz} {S}5\n"
            f"range ({T} {S}7.2–{S}8), ({T} {S}7.1–7.7) and {T}\n{S}5.3) then bare {S}4.1 and {S}42, "
            f"Smith et al. 2021 {S}5.1")
    got = citations(text, "theory")
    assert [(d, s) for d, s, _ in got] == [
        ("theory", "7.3"), ("theory", "7.5"), ("theory", "99"), ("theory", "4"), ("theory", "5.1"), ("design", "5"),
        ("theory", "7.2"), ("theory", "8"), ("theory", "7.1"), ("theory", "7.7"), ("theory", "5.3"),
        ("theory", "4.1"), ("theory", "42")]
    assert [line for _, s, line in got if s == "5.3"] == [3]
    unresolved = {(d, s) for d, s, _ in got if s not in headings(d)}
    assert unresolved == {("theory", "99"), ("theory", "42")}
    assert citations(f"{Dz} {S}5 and {S}7", None) == [("design", "5", 1), ("design", "7", 1)]
    assert "7" not in headings("design")


# -------------------------------------------------------------------------------------------------
# relative links
# -------------------------------------------------------------------------------------------------


def test_relative_links_of_readme_and_docs_resolve():
    files = set(tracked_files())
    folders = {"/".join(f.split("/")[:i]) for f in files for i in range(1, f.count("/") + 1)}
    pages = [f for f in files if f == "README.md" or (f.startswith("docs/") and f.endswith(".md"))]
    assert "README.md" in pages and DOCS["theory"] in pages and DOCS["design"] in pages
    broken, checked = [], 0
    for rel in pages:
        for target in md_links(read_text(rel)):
            path = local_target(target)
            if path is None:
                continue
            checked += 1
            resolved = os.path.normpath(os.path.join(os.path.dirname(rel), path)).replace(os.sep, "/").rstrip("/")
            if resolved not in files and resolved not in folders:
                broken.append(f"{rel}: [{target}] → {resolved} is not a tracked file")
    assert checked >= 5
    assert not broken, "\n".join(broken)


# -------------------------------------------------------------------------------------------------
# license, citation, changelog
# -------------------------------------------------------------------------------------------------


def package_version() -> str:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg", encoding="utf-8")
    return cfg["metadata"]["version"]


def test_license_is_mit_and_matches_setup_cfg():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 The dln developers" in text
    assert "THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND" in text
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg", encoding="utf-8")
    assert cfg["metadata"]["license"] == "MIT"


def _cff_top_level(text: str) -> dict:
    """Top-level ``key: value`` pairs of a CFF (YAML) file; value '' when it opens a block."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z][a-z-]*):\s*(.*?)\s*$", line)
        if m:
            out[m.group(1)] = m.group(2).strip("\"'")
    return out


def test_citation_cff_names_the_software_and_the_paper():
    text = (ROOT / "CITATION.cff").read_text(encoding="utf-8")
    top = _cff_top_level(text)
    assert top["cff-version"] == "1.2.0"
    assert top["title"] and "message" in top and top["type"] == "software"
    assert "authors" in top and re.search(r"^authors:\n\s+- (name|family-names):", text, re.MULTILINE)
    assert top["version"] == package_version() == dln.__version__
    assert top["license"] == "MIT"
    assert "references" in top or "preferred-citation" in top
    assert "2210.02720" in text
    for name in ("Karakida", "Takase", "Hayase", "Osawa"):
        assert f"family-names: {name}" in text, name
    assert "\t" not in text  # YAML forbids tabs in indentation


def test_changelog_has_unreleased_and_the_current_version():
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    versions = re.findall(r"^## \[([^\]]+)\]", text, re.MULTILINE)
    assert versions[0] == "Unreleased"
    assert versions[1] == package_version() == dln.__version__


# -------------------------------------------------------------------------------------------------
# example data
# -------------------------------------------------------------------------------------------------
EXAMPLES = ROOT / "examples"
NPZ, CSV = EXAMPLES / "sparse_regression.npz", EXAMPLES / "sparse_regression.csv"


def _make_examples():
    spec = importlib.util.spec_from_file_location("_dln_make_examples", EXAMPLES / "make_examples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_files_are_tracked_and_small():
    files = set(tracked_files())
    for path in (NPZ, CSV, EXAMPLES / "make_examples.py"):
        rel = path.relative_to(ROOT).as_posix()
        assert rel in files, f"{rel} is not tracked (or is ignored by .gitignore)"
        assert path.stat().st_size < 200_000, rel
    assert not any(_ignored(p.relative_to(ROOT).as_posix(), False, _ignore_patterns()) for p in (NPZ, CSV))


def test_example_files_equal_what_the_script_writes(tmp_path):
    npz, csv = _make_examples().write(str(tmp_path))
    with np.load(NPZ) as committed, np.load(npz) as fresh:
        assert sorted(committed.files) == sorted(fresh.files) == ["X", "X_test", "beta_star", "y", "y_test"]
        for key in committed.files:
            assert committed[key].shape == fresh[key].shape, key
            np.testing.assert_allclose(committed[key], fresh[key], rtol=1e-13, atol=1e-14, err_msg=key)
        assert committed["X"].shape == (40, 100) and committed["X_test"].shape == (100, 100)
        assert np.count_nonzero(committed["beta_star"]) == 5
        np.testing.assert_allclose(committed["X"] @ committed["beta_star"], committed["y"], rtol=1e-12, atol=1e-13)
    a, b = dln.load_problem(CSV), dln.load_problem(csv)
    np.testing.assert_allclose(a.X, b.X, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(a.y, b.y, rtol=1e-13, atol=1e-14)
    full = dln.load_problem(NPZ)
    np.testing.assert_array_equal(a.X, full.X)  # 17 significant digits: the .csv is the .npz's data
    np.testing.assert_array_equal(a.y, full.y)
    assert CSV.read_text(encoding="utf-8").splitlines()[0] == ",".join([f"x{j}" for j in range(100)] + ["y"])


def test_simulate_runs_on_the_example_data():
    """The README line: ``dln simulate --data examples/sparse_regression.npz --method gr --gamma 0.05 --json``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    cmd = [sys.executable, "-m", "dln", "simulate", "--data", "examples/sparse_regression.npz", "--method", "gr",
           "--gamma", "0.05", "--json"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    for key in ("beta", "alpha_eff", "status", "train_loss", "test_error", "prediction"):
        assert key in out, key
    assert {"beta", "rel_error", "kkt_residual"} <= set(out["prediction"])
    assert out["status"] == "converged"
    P = dln.load_problem(NPZ)
    beta, alpha_eff = np.asarray(out["beta"]), np.asarray(out["alpha_eff"])
    assert beta.shape == alpha_eff.shape == (100,)
    # an interpolator of the example data, and exact GR only shrinks u⊙v (docs/theory.md §7.2)
    assert np.linalg.norm(P.X @ beta - P.y) <= 1e-8 * np.linalg.norm(P.y)
    assert np.all(alpha_eff <= 0.1 * (1 + 1e-12)) and np.min(alpha_eff) < 0.1 * (1 - 1e-3)
    assert out["test_error"] == pytest.approx(float(np.sum((beta - P.beta_star) ** 2)), rel=1e-12)
