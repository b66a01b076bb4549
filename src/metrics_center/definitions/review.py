"""Change review before merge: the working tree's definitions against a git ref (``validate --against``).

For every metric that exists in both, a meaning change without a version bump (the version reused
for another meaning), a version going backwards, and a bumped version whose ``change_note`` still
describes the old one are errors with ``path:line``. What needs a new version is decided by the
meaning hash (:func:`metrics_center.definitions.meaning.load_definition`), exactly as the mart decides it.

The ref is read with four git processes whatever the number of files, and only the files git reports
as different are fetched and parsed; a metric whose YAML and SQL are unchanged reuses the catalog's
parsed spec and costs nothing more, so reviewing 1,000 metrics costs far less than validating them.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

from metrics_center.definitions.changes import CHECKS_SQL, DefinitionChange, compare_documents
from metrics_center.definitions.loader import line_of, metric_files
from metrics_center.definitions.meaning import load_definition
from metrics_center.errors import MetricsCenterError, SpecProblem

if TYPE_CHECKING:
    from metrics_center.definitions.loader import Catalog
    from metrics_center.definitions.spec import MetricSpec


class GitError(MetricsCenterError):
    """git could not answer (no repository, unknown ref)."""


@dataclass(frozen=True)
class Reviewed:
    """One working-tree metric compared with the ref (``old_version`` None: not at the ref)."""

    key: str
    path: Path
    old_version: int | None
    new_version: int
    change: DefinitionChange
    meaning_changed: bool
    #: Why it was not compared although a file exists at the ref (e.g. invalid there).
    note: str | None = None

    @property
    def status(self) -> Literal["new", "unchanged", "changed"]:
        if self.old_version is None:
            return "new"
        if self.change.changes or self.meaning_changed or self.old_version != self.new_version:
            return "changed"
        return "unchanged"


@dataclass(frozen=True)
class Removed:
    """A metric defined at the ref and no longer in the working tree."""

    key: str
    version: int


@dataclass(frozen=True)
class Review:
    ref: str
    problems: list[SpecProblem]
    reviewed: list[Reviewed]
    removed: list[Removed] = field(default_factory=list)


@dataclass(frozen=True)
class RefFolder:
    """One working-tree folder as it is at ``ref``: which files exist there, and those whose content differs.

    A file present at the ref and not in ``differing`` is byte-identical in the working tree (git said
    so), so nothing needs reading or parsing twice for it.
    """

    ref: str
    folder: Path
    present: frozenset[str]
    differing: dict[str, bytes]

    def unchanged(self, rel: str) -> bool:
        return rel in self.present and rel not in self.differing

    def read(self, rel: str) -> bytes | None:
        """The content at the ref of ``rel`` (a POSIX path inside the folder); None: absent there."""
        if rel not in self.present:
            return None
        data = self.differing.get(rel)
        return data if data is not None else (self.folder / rel).read_bytes()

    def metric_names(self) -> list[str]:
        """Metric file names directly in the folder at the ref (not ``_teams.yaml`` and other ``_`` files)."""
        return sorted(
            n
            for n in self.present
            if "/" not in n and not n.startswith("_") and n.endswith((".yaml", ".yml"))
        )


def _git(cwd: Path, *args: str, stdin: bytes | None = None) -> bytes:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, input=stdin, capture_output=True, check=False)
    except FileNotFoundError as exc:
        raise GitError("git is not installed; install git to compare with a ref") from exc
    if done.returncode != 0:
        raise GitError(f"git {args[0]}: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def git_toplevel(path: Path) -> Path:
    folder = path if path.is_dir() else path.parent
    if not folder.is_dir():
        raise GitError(f"{path} does not exist; give the metrics folder of a git checkout")
    try:
        return Path(_git(folder, "rev-parse", "--show-toplevel").decode().strip()).resolve()
    except GitError as exc:
        raise GitError(
            f"{path} is not in a git checkout ({exc}); --against needs the definitions under git"
        ) from None


def _verify_ref(top: Path, ref: str) -> None:
    hint = "fetch it first (in CI: git fetch origin main, or actions/checkout with fetch-depth: 0) or name another ref"
    if not ref or ref.startswith("-"):
        raise GitError(f"{ref!r} is not a git ref; {hint}")
    try:
        _git(top, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    except GitError:
        raise GitError(f"{ref!r} is not a commit in {top}; {hint}") from None


def _inside(top: Path, path: Path) -> str:
    try:
        return path.resolve().relative_to(top).as_posix()
    except ValueError:
        raise GitError(
            f"{path} is outside the git checkout {top}; keep metrics and SQL in one repository"
        ) from None


def read_ref(*, ref: str, folders: list[Path]) -> list[RefFolder]:
    """``folders`` (inside one checkout) as they are at ``ref``, in the same order.

    Four git processes whatever the number of files: verify the ref, ``ls-tree`` (what exists there),
    ``diff --name-only`` (what differs from the working tree) and one ``cat-file --batch`` for the
    content of just those. Blobs are read exactly as committed (``git archive`` would apply
    export-ignore/export-subst). A folder missing at ``ref`` is empty (added by the change under review).
    """
    top = git_toplevel(folders[0])
    _verify_ref(top, ref)
    prefixes = [_inside(top, folder) for folder in folders]
    pathspecs = [] if "." in prefixes else prefixes
    listing = _git(top, "ls-tree", "-r", "-z", "--full-tree", "--end-of-options", ref, "--", *pathspecs)
    blobs: dict[str, str] = {}
    for entry in listing.split(b"\0"):
        meta, _, name = entry.partition(b"\t")
        if meta:
            mode, kind, sha = meta.decode().split()
            if kind == "blob" and mode in ("100644", "100755"):  # no symlinks, no submodules
                blobs[name.decode("utf-8", errors="surrogateescape")] = sha
    differ = _git(
        top,
        *(
            "diff",
            "--no-ext-diff",
            "--no-textconv",
            "--no-renames",
            "--ignore-submodules",
            "--name-only",
            "-z",
        ),
        *("--end-of-options", ref, "--", *pathspecs),
    )
    wanted = [
        n for n in (d.decode("utf-8", errors="surrogateescape") for d in differ.split(b"\0")) if n in blobs
    ]
    contents = _cat_files(top, [(blobs[name], name) for name in wanted])
    result = []
    for folder, prefix in zip(folders, prefixes, strict=True):
        start = "" if prefix == "." else prefix + "/"
        result.append(
            RefFolder(
                ref=ref,
                folder=folder,
                present=frozenset(n[len(start) :] for n in blobs if n.startswith(start)),
                differing={n[len(start) :]: data for n, data in contents.items() if n.startswith(start)},
            )
        )
    return result


def _cat_files(top: Path, blobs: list[tuple[str, str]]) -> dict[str, bytes]:
    """The content of each (sha, path), from one ``git cat-file --batch``."""
    if not blobs:
        return {}
    out = _git(top, "cat-file", "--batch", stdin="".join(f"{sha}\n" for sha, _ in blobs).encode())
    contents: dict[str, bytes] = {}
    position = 0
    for sha, name in blobs:
        header_end = out.index(b"\n", position)
        got_sha, _, size = out[position:header_end].decode().split()
        if got_sha != sha:
            raise GitError(f"git cat-file answered {got_sha} for {sha} ({name}); is the repository corrupt?")
        start = header_end + 1
        contents[name] = out[start : start + int(size)]
        position = start + int(size) + 1  # each blob is followed by a newline
    return contents


def sql_paths(spec: MetricSpec) -> list[str]:
    """Every SQL file a definition names (transform, sources, reconciliations), relative to the SQL folder."""
    paths = [spec.transform.sql]
    paths += [sql for source in spec.sources.values() if (sql := getattr(source, "sql", None)) is not None]
    paths += [check.sql for check in spec.reconciliations]
    return list(dict.fromkeys(paths))


def file_document(spec: MetricSpec, *, sql_root: Path) -> tuple[dict[str, Any], str]:
    """The stored document plus the reconciliation SQL (``checks_sql``), and the meaning hash.

    Reconciliation SQL is not part of the meaning (it checks the number, it does not compute it), but
    a reviewer wants to see it; both sides of a git comparison carry it, a mart version does not.
    """
    definition = load_definition(spec, sql_root=sql_root)
    checks = {check.sql: _read_or_none(sql_root / check.sql) for check in spec.reconciliations}
    return {**definition.document, CHECKS_SQL: checks}, definition.meaning_hash


def ref_document(spec: MetricSpec, *, ref_sql: RefFolder, scratch: Path) -> tuple[dict[str, Any], str]:
    """:func:`file_document` of a spec as it is at the ref, its SQL as it is there too.

    The SQL it uses is written under ``scratch`` first, so :func:`load_definition` stays the one place
    that computes a meaning hash. Raises :class:`OSError` when its SQL is missing at the ref.
    """
    for rel in sql_paths(spec):
        if PurePosixPath(rel).is_absolute() or ".." in PurePosixPath(rel).parts:
            raise OSError(f"{rel!r} leaves the sql folder")  # the working tree's loader reports the same
        target = scratch.joinpath(*PurePosixPath(rel).parts)
        if not target.exists() and (data := ref_sql.read(rel)) is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    return file_document(spec, sql_root=scratch)


def _read_or_none(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


def spec_from_text(text: bytes) -> MetricSpec | None:
    """A metric file's spec if it passes the schema, else None (a ref's file needs no line numbers)."""
    import yaml
    from pydantic import ValidationError

    from metrics_center.definitions.spec import MetricSpec

    try:
        data = yaml.load(text.decode("utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        return MetricSpec.model_validate(data)
    except (UnicodeDecodeError, yaml.YAMLError, ValidationError):
        return None


def review_against(
    *, ref: str, metrics_dir: Path, sql_root: Path, catalog: Catalog, only: list[Path] | None = None
) -> Review:
    """Compare ``catalog`` (the working tree, already validated) with the same folders at ``ref``.

    ``only``: resolved paths of the files to report on (None: the whole folder, removed metrics too).
    A metric whose YAML and every SQL file it uses are identical at the ref is unchanged without
    computing anything; the others get both documents and meaning hashes.
    """
    ref_metrics, ref_sql = read_ref(ref=ref, folders=[metrics_dir, sql_root])
    wanted = None if only is None else {p.resolve() for p in only}
    old_specs, unreadable = _ref_specs(ref_metrics, catalog=catalog)
    problems: list[SpecProblem] = []
    reviewed: list[Reviewed] = []
    with tempfile.TemporaryDirectory(prefix="mc-ref-sql-") as scratch:
        for key, loaded in sorted(catalog.metrics.items()):
            if wanted is not None and loaded.path.resolve() not in wanted:
                continue
            new = loaded.spec
            old = old_specs.get(key)
            # `old is new` only when the YAML is unchanged at the ref (see _ref_specs).
            if old is new and all(ref_sql.unchanged(rel) for rel in sql_paths(new)):
                reviewed.append(
                    Reviewed(key, loaded.path, old.version, new.version, DefinitionChange(), False)
                )
                continue
            note = unreadable.get(key)
            if old is not None:
                try:
                    old_doc, old_hash = ref_document(old, ref_sql=ref_sql, scratch=Path(scratch))
                except OSError:
                    old, note = None, f"its SQL is missing at {ref}; not compared"
            if old is None:
                change = DefinitionChange(
                    forced_breaking=new.breaking
                )  # what compare_documents(None, …) says
                reviewed.append(Reviewed(key, loaded.path, None, new.version, change, True, note))
                continue
            new_doc, new_hash = file_document(new, sql_root=sql_root)
            change = compare_documents(old_doc, new_doc)
            meaning_changed = old_hash != new_hash
            reviewed.append(Reviewed(key, loaded.path, old.version, new.version, change, meaning_changed))
            problems += version_problems(
                loaded.path, old=old, new=new, change=change, meaning_changed=meaning_changed, ref=ref
            )
    removed: list[Removed] = []
    if wanted is None:
        present = set(catalog.metrics) | {p.stem for p in metric_files(metrics_dir)}
        removed = [
            Removed(key, spec.version) for key, spec in sorted(old_specs.items()) if key not in present
        ]
    return Review(ref=ref, problems=problems, reviewed=reviewed, removed=removed)


def _ref_specs(ref_metrics: RefFolder, *, catalog: Catalog) -> tuple[dict[str, MetricSpec], dict[str, str]]:
    """The metrics valid at the ref by key, and the file stems that do not parse there (with why).

    A file identical to its working-tree twin reuses the catalog's spec object instead of parsing.
    """
    specs: dict[str, MetricSpec] = {}
    unreadable: dict[str, str] = {}
    by_name = {loaded.path.name: loaded for loaded in catalog.metrics.values()}
    for name in ref_metrics.metric_names():
        twin = by_name.get(name)
        if twin is not None and ref_metrics.unchanged(name):
            spec: MetricSpec | None = twin.spec
        else:
            spec = spec_from_text(ref_metrics.read(name) or b"")
        if spec is None:
            unreadable[Path(name).stem] = "its file does not pass today's schema at the ref; not compared"
        else:
            specs.setdefault(spec.key, spec)
    return specs, unreadable


def version_problems(
    path: Path, *, old: MetricSpec, new: MetricSpec, change: DefinitionChange, meaning_changed: bool, ref: str
) -> list[SpecProblem]:
    """What is wrong with ``new``'s version and change_note given ``old`` (the same metric at ``ref``)."""

    def line(key: str) -> int | None:
        return line_of(path.read_text(encoding="utf-8"), (key,))

    if new.version < old.version:
        back = (
            f"set version: {old.version + 1} and say what changed in change_note"
            if meaning_changed
            else f"set version: {old.version} back (the meaning did not change)"
        )
        return [
            SpecProblem(
                path=path,
                key="version",
                line=line("version"),
                message=f"version {new.version} is lower than version {old.version} at {ref}; versions only go up",
                fix=back,
            )
        ]
    if new.version == old.version and meaning_changed:
        changed = ", ".join(c.path for c in change.changes if c.meaning) or "the meaning hash"
        return [
            SpecProblem(
                path=path,
                key="version",
                line=line("version"),
                message=f"the meaning changed since {ref} ({changed}) but version {new.version} is reused "
                "(the mart refuses one version with two meanings)",
                fix=f"set version: {old.version + 1} and say what changed in change_note",
            )
        ]
    if new.version > old.version and new.change_note.strip() == old.change_note.strip():
        return [
            SpecProblem(
                path=path,
                key="change_note",
                line=line("change_note"),
                message=f"version {new.version} keeps the change_note of version {old.version} ({old.change_note!r})",
                fix=f"describe what version {new.version} changes and why",
            )
        ]
    return []
