"""The model store: a model registry on the local filesystem.

Layout under :func:`home` (``$VERTICALS_HOME``, else the per-user data folder of ``platformdirs``)::

    <home>/models/<pipeline>/v<N>/         one folder per version: the artifacts and manifest.json
    <home>/models/<pipeline>/aliases.json  {"production": 3, ...}
    <home>/models/<pipeline>/.lock         flock'ed while a writer allocates a version or moves an alias
    <home>/models/<pipeline>/.last_version the highest number ever given out, so numbers are never reused
    <home>/.staging/                       folders being written; same filesystem, so moving one is a rename

Why it is built this way:

* **A version never looks complete before it is.** Writers fill a staging folder, write
  ``manifest.json`` into it last and then ``rename`` the whole folder to ``v<N>``. Readers only list
  ``v<N>`` folders that contain ``manifest.json``, so a crash at any point leaves no visible version.
* **Concurrent writers get distinct numbers.** Version allocation and the rename happen while holding
  ``fcntl.flock`` on the pipeline's lock file; aliases are rewritten under the same lock, via a temporary
  file and ``os.replace``, so two promotions never lose each other's update.
* **Tampering is caught before scoring.** The manifest records the sha256 of every file in the version
  folder and ``manifest.json.sha256`` that of the manifest itself (which carries the preprocessing
  state, the input rules and the pipeline's extras); :meth:`ModelStore.load` (what scoring calls)
  checks them all, refuses files added after registration, and raises
  :class:`~verticals.errors.ModelIntegrityError` naming the file.

Locks are advisory and rely on ``flock``: a store on NFS needs a server that supports it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from verticals.errors import ModelIntegrityError, NotFoundError, UserError, VerticalsError
from verticals.fsutil import fsync_dir as _fsync_dir
from verticals.fsutil import sha256_file, write_json_atomic, write_text_atomic
from verticals.jsonutil import plain_json
from verticals.names import check_name, name_problem, safe_join

if TYPE_CHECKING:  # pragma: no cover
    from verticals.manifest import ModelManifest

__all__ = ["DEFAULT_ALIAS", "ModelStore", "ModelVersion", "home"]

DEFAULT_ALIAS = "production"
MANIFEST = "manifest.json"
MANIFEST_DIGEST = "manifest.json.sha256"  # sha256 of manifest.json's bytes: the manifest is checked too
ALIASES = "aliases.json"

_PIPELINE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ALIAS = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
_VERSION_DIR = re.compile(r"^v([0-9]+)$")
_VERSION_REF = re.compile(r"^[vV]?([0-9]+)$")
_RESERVED_ALIASES = {"latest"}
_HEAD = ("pipeline", "version", "created_at")  # written first in manifest.json, for people reading it


def home() -> Path:
    """The store's root: ``$VERTICALS_HOME`` when set, else ``platformdirs.user_data_dir("verticals")``.

    On Linux the default is ``~/.local/share/verticals``; on macOS
    ``~/Library/Application Support/verticals``; on Windows ``%LOCALAPPDATA%\\verticals``.
    """
    env = os.environ.get("VERTICALS_HOME", "").strip()
    if env:
        return Path(env).expanduser().absolute()
    import platformdirs

    return Path(platformdirs.user_data_dir("verticals", appauthor=False))


@dataclass
class ModelVersion:
    """One registered version of a pipeline's model.

    Attributes:
        pipeline: qualified pipeline name, e.g. ``finance.credit_risk``.
        version: 1, 2, 3, ... in registration order.
        path: the version folder (artifacts and ``manifest.json``).
        manifest: the parsed ``manifest.json``.
        aliases: alias names (``production``, ...) that point at this version, sorted.
    """

    pipeline: str
    version: int
    path: Path
    manifest: dict[str, Any]
    aliases: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """``pipeline v<N>``, how messages and logs name a version."""
        return f"{self.pipeline} v{self.version}"

    @property
    def created_at(self) -> str | None:
        return self.manifest.get("created_at")

    @property
    def info(self) -> ModelManifest:
        """The manifest, typed (:class:`verticals.manifest.ModelManifest`)."""
        from verticals.manifest import ModelManifest

        return ModelManifest.from_dict(self.manifest)

    @property
    def artifacts(self) -> dict[str, str]:
        """``{relative file path: sha256}`` recorded at registration."""
        return dict(self.manifest.get("artifacts") or {})

    def file(self, name: str) -> Path:
        """Path of artifact ``name`` (relative to the version folder); NotFoundError if it is not there."""
        path = _inside(self.path, name, what=f"artifact of {self.label}")
        if not path.is_file():
            known = ", ".join(sorted(self.artifacts)) or "none"
            raise NotFoundError(f"{self.label} has no file {name!r} in {self.path}; files: {known}",
                                hint="check the file name, or retrain to produce it")
        return path

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary (without the full manifest)."""
        return {"pipeline": self.pipeline, "version": self.version, "path": str(self.path),
                "aliases": list(self.aliases), "created_at": self.created_at}


class ModelStore:
    """Versions, manifests, sha256 checks and aliases of trained models under one root folder.

    Args:
        home: the store's root; default :func:`home` (``$VERTICALS_HOME`` or the per-user data folder).
            Nothing is created until something is written.
    """

    def __init__(self, home: Path | str | None = None) -> None:
        # Absolute, so versions keep pointing at the same place from workers with another cwd.
        self.home = Path(home).expanduser().absolute() if home is not None else _default_home()
        self.models_dir = self.home / "models"
        self.staging_dir = self.home / ".staging"

    def __repr__(self) -> str:
        return f"ModelStore({str(self.home)!r})"

    # -- writing -----------------------------------------------------------------------------------
    def staging(self, pipeline: str) -> Path:
        """A fresh, empty folder to write a new version's artifacts into.

        It lives under ``<home>/.staging`` so :meth:`register` can move it into place with one rename.
        If training fails, the caller may delete it; :meth:`clean_staging` removes stale ones.
        """
        _check_pipeline(pipeline)
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{pipeline}-", dir=self.staging_dir))

    def register(self, pipeline: str, staging: Path | str, manifest: Mapping[str, Any]) -> ModelVersion:
        """Record the files in ``staging`` as the next version of ``pipeline``.

        The store sets ``pipeline``, ``version``, ``created_at`` (when missing, UTC ISO-8601) and
        ``artifacts`` (sha256 of every file except ``manifest.json``) in a copy of ``manifest`` and writes
        it as ``manifest.json``. A folder from :meth:`staging` is moved into place (it is gone afterwards);
        any other folder is copied first and left as it was. Either the version appears complete, or,
        if anything fails, no version appears at all.
        """
        _check_pipeline(pipeline)
        source = Path(staging)
        if not source.is_dir():
            raise NotFoundError(f"cannot register {pipeline}: staging folder {source} does not exist",
                                hint="pass the folder returned by ModelStore.staging()")
        data = _plain(dict(manifest), pipeline)
        if data.setdefault("pipeline", pipeline) != pipeline:
            raise UserError(f"cannot register {pipeline}: its manifest names pipeline {data['pipeline']!r}",
                            hint="register under the pipeline the model was trained for")
        data.setdefault("created_at", _utc_now())

        owned = self._is_own_staging(source)
        work = source if owned else self._copy_to_staging(pipeline, source)
        try:
            data["artifacts"] = _hash_tree(work)
            with self._locked(pipeline) as pdir:
                number = self._next_number(pdir)
                data = {"pipeline": pipeline, "version": number, "created_at": data["created_at"],
                        **{k: v for k, v in data.items() if k not in _HEAD}}
                write_json_atomic(work / MANIFEST, data)
                write_text_atomic(work / MANIFEST_DIGEST, sha256_file(work / MANIFEST, fsync=True).hexdigest() + "\n")
                _fsync_dir(work)
                target = pdir / f"v{number}"
                os.rename(work, target)
                _fsync_dir(pdir)
                write_text_atomic(pdir / ".last_version", f"{number}\n")
                aliases = self._aliases(pipeline)
        except BaseException:
            if not owned:
                shutil.rmtree(work, ignore_errors=True)
            raise
        return ModelVersion(pipeline, number, target, data, _aliases_of(aliases, number))

    def promote(self, pipeline: str, version: int | str, alias: str = DEFAULT_ALIAS) -> ModelVersion:
        """Point ``alias`` (default ``production``) at ``version``; returns that version.

        ``version`` is a number or any reference :meth:`resolve` accepts. The aliases file is replaced
        atomically while the pipeline's lock is held.
        """
        _check_alias(alias)
        self.resolve(pipeline, version)  # fail before creating or locking anything
        with self._locked(pipeline) as pdir:
            target = self.resolve(pipeline, version)  # again: an alias may have moved meanwhile
            aliases = self._aliases(pipeline)
            aliases[alias] = target.version
            write_json_atomic(pdir / ALIASES, dict(sorted(aliases.items())))
        target.aliases = _aliases_of(aliases, target.version)
        return target

    def unalias(self, pipeline: str, alias: str) -> None:
        """Remove ``alias`` from ``pipeline``; NotFoundError if it is not set."""
        self.resolve(pipeline, "latest")  # NotFoundError for an unknown pipeline, before creating its folder
        with self._locked(pipeline) as pdir:
            aliases = self._aliases(pipeline)
            if alias not in aliases:
                raise NotFoundError(f"pipeline {pipeline} has no alias {alias!r}; aliases: "
                                    f"{_describe_aliases(aliases)}", hint="check the alias name")
            del aliases[alias]
            write_json_atomic(pdir / ALIASES, dict(sorted(aliases.items())))

    def delete(self, pipeline: str, version: int | str, *, force: bool = False) -> tuple[ModelVersion, list[str]]:
        """Delete one version; returns it and the aliases removed with it.

        A version an alias points at is refused unless ``force`` (then those aliases go too); so is a
        version whose manifest cannot be read. The folder is renamed aside, then removed, so readers
        see the whole version or none of it; its number is never given out again.

        Raises:
            NotFoundError: unknown pipeline or version.
            UserError: an alias points at the version and ``force`` is false.
            ModelIntegrityError: the version's manifest is unreadable and ``force`` is false.
        """
        _check_pipeline(pipeline)
        if not self._numbers(self.models_dir / pipeline):
            self.resolve(pipeline, version)  # NotFoundError naming the pipelines with models
        with self._locked(pipeline) as pdir:
            numbers = self._numbers(pdir)
            aliases = self._aliases(pipeline)
            number, _ = self._pick(pipeline, version, numbers, aliases)
            if number not in numbers:
                self.resolve(pipeline, version)  # NotFoundError listing the versions
            try:
                target = self._read(pipeline, number, aliases)
            except ModelIntegrityError:
                if not force:
                    raise
                target = None
            if target is None:
                target = ModelVersion(pipeline, number, pdir / f"v{number}", {}, _aliases_of(aliases, number))
            pointing = sorted(a for a, n in aliases.items() if n == number)
            if pointing and not force:
                names = ", ".join(repr(a) for a in pointing)
                raise UserError(f"{target.label} is what alias {names} points at; not deleted",
                                hint=f"promote another version first (`verticals models promote {pipeline} N "
                                     f"--alias {pointing[0]}`) or pass --force to delete it with its alias")
            if pointing:
                write_json_atomic(pdir / ALIASES, {a: n for a, n in sorted(aliases.items()) if a not in pointing})
            aside = pdir / f".deleted-v{number}-{uuid.uuid4().hex[:8]}"
            os.rename(target.path, aside)
            _fsync_dir(pdir)
            shutil.rmtree(aside, ignore_errors=True)
        target.aliases = []
        return target, pointing

    def survey(self, pipeline: str | None = None) -> tuple[list[ModelVersion], list[dict[str, Any]]]:
        """Every readable version (of ``pipeline``, or of all) and a problem entry for each unreadable one.

        Unlike :meth:`versions`, one damaged manifest or aliases file does not hide the other versions:
        it becomes ``{"pipeline", "version", "path", "error"}`` in the second list.
        """
        names = [pipeline] if pipeline else self.pipelines()
        found: list[ModelVersion] = []
        problems: list[dict[str, Any]] = []
        for name in names:
            _check_pipeline(name)
            pdir = self.models_dir / name
            try:
                aliases = self._aliases(name)
            except VerticalsError as exc:
                problems.append({"pipeline": name, "version": None, "path": str(pdir / ALIASES),
                                 "error": exc.message})
                aliases = {}
            for number in self._numbers(pdir):
                try:
                    mv = self._read(name, number, aliases)
                except VerticalsError as exc:
                    problems.append({"pipeline": name, "version": number, "path": str(pdir / f"v{number}"),
                                     "error": exc.message})
                    continue
                if mv is not None:
                    found.append(mv)
        return found, problems

    def clean_staging(self, older_than_s: float = 7 * 86400) -> list[Path]:
        """Delete staging folders left by crashed runs that are older than ``older_than_s``."""
        removed: list[Path] = []
        if not self.staging_dir.is_dir():
            return removed
        cutoff = time.time() - older_than_s
        for entry in self.staging_dir.iterdir():
            with contextlib.suppress(OSError):
                if entry.is_dir() and entry.stat().st_mtime < cutoff:
                    shutil.rmtree(entry)
                    removed.append(entry)
        return removed

    # -- reading -----------------------------------------------------------------------------------
    def pipelines(self) -> list[str]:
        """Pipelines with at least one complete version, sorted."""
        if not self.models_dir.is_dir():
            return []
        names = []
        for entry in self.models_dir.iterdir():
            if name_problem(entry.name, pattern=_PIPELINE, max_len=200) is None and self._numbers(entry):
                names.append(entry.name)
        return sorted(names)

    def versions(self, pipeline: str) -> list[ModelVersion]:
        """Complete versions of ``pipeline``, oldest first; empty when there are none."""
        _check_pipeline(pipeline)
        pdir = self.models_dir / pipeline
        aliases = self._aliases(pipeline)
        found = []
        for number in self._numbers(pdir):
            mv = self._read(pipeline, number, aliases)
            if mv is not None:
                found.append(mv)
        return found

    def resolve(self, pipeline: str, ref: str | int | None = None) -> ModelVersion:
        """Find one version of ``pipeline``.

        ``ref``: None → the ``production`` alias when set, else the latest version; a number, ``"3"`` or
        ``"v3"`` → that version; ``"latest"`` → the newest; any other string → that alias.
        Raises NotFoundError listing what exists.
        """
        _check_pipeline(pipeline)
        pdir = self.models_dir / pipeline
        numbers = self._numbers(pdir)
        if not numbers:
            known = ", ".join(self.pipelines()) or "none"
            raise NotFoundError(f"no model registered for pipeline {pipeline!r} in {self.models_dir}; "
                                f"pipelines with models: {known}",
                                hint="use one of the pipelines with models, or point --home / VERTICALS_HOME "
                                     f"at the store that holds {pipeline}" if self.pipelines() else
                                f"train one with `verticals train {pipeline}`, or point --home / VERTICALS_HOME "
                                "at the store that holds it")
        aliases = self._aliases(pipeline)
        number, how = self._pick(pipeline, ref, numbers, aliases)
        if number not in numbers:
            raise NotFoundError(f"{pipeline} has no version {number}{how}; versions: "
                                f"{_describe_versions(numbers)}; aliases: {_describe_aliases(aliases)}",
                                hint="pick one of the listed versions (`verticals models list`)")
        mv = self._read(pipeline, number, aliases)
        if mv is None:  # deleted between listing and reading
            raise NotFoundError(f"{pipeline} v{number} disappeared from {pdir} while being read",
                                hint="retry; check that nothing else deletes model folders")
        return mv

    def verify(self, version: ModelVersion) -> None:
        """Check the manifest and every file of the version folder before anything of it is used.

        ``manifest.json`` itself must match the sha256 in ``manifest.json.sha256`` (it carries the
        preprocessing state, the input rules and the pipeline's extras such as a calibration, so an
        edit there changes scores as surely as an edited model file) and must be what ``version`` was
        read from; every file the manifest lists must match its sha256; and no other file may be in the
        folder. Raises ModelIntegrityError naming the first file that fails, with expected and actual
        sha256 where there are two.
        """
        fix = f"re-register the model or retrain it with `verticals train {version.pipeline}`"
        self._verify_manifest(version, fix)
        recorded = version.manifest.get("artifacts")
        if not isinstance(recorded, dict) or not recorded:
            raise ModelIntegrityError(f"{version.label} at {version.path}: manifest.json lists no artifacts",
                                      hint=fix)
        for name, expected in sorted(recorded.items()):
            try:
                path = _inside(version.path, name, what=f"artifact of {version.label}")
            except UserError as exc:
                raise ModelIntegrityError(f"{version.label}: manifest.json lists an unsafe path {name!r}",
                                          hint=fix) from exc
            if not path.is_file():
                raise ModelIntegrityError(f"{version.label}: file {name!r} is missing from {version.path} "
                                          f"(expected sha256 {expected})", hint=fix)
            actual = sha256_file(path).hexdigest()
            if actual != expected:
                raise ModelIntegrityError(f"{version.label}: file {name!r} in {version.path} has changed: "
                                          f"expected sha256 {expected}, actual {actual}", hint=fix)
        known = {*recorded, MANIFEST, MANIFEST_DIGEST}
        for dirpath, dirnames, filenames in os.walk(version.path):
            dirnames.sort()
            for name in sorted(filenames):
                rel = (Path(dirpath) / name).relative_to(version.path).as_posix()
                if rel not in known:
                    raise ModelIntegrityError(f"{version.label}: file {rel!r} in {version.path} was not there "
                                              "at registration", hint=f"delete it, or {fix}")

    @staticmethod
    def _verify_manifest(version: ModelVersion, fix: str) -> None:
        path = version.path / MANIFEST
        try:
            raw = path.read_bytes()
            expected = (version.path / MANIFEST_DIGEST).read_text().strip()
        except FileNotFoundError as exc:
            raise ModelIntegrityError(f"{version.label}: {Path(exc.filename).name} is missing from {version.path}",
                                      hint=fix) from None
        except OSError as exc:
            raise ModelIntegrityError(f"{version.label}: cannot read {exc.filename}: {exc.strerror}", hint=fix) from None
        actual = hashlib.sha256(raw).hexdigest()
        if actual != expected:
            raise ModelIntegrityError(f"{version.label}: file {MANIFEST!r} in {version.path} has changed: "
                                      f"expected sha256 {expected}, actual {actual}", hint=fix)
        try:
            same = _canonical(json.loads(raw)) == _canonical(version.manifest)
        except (TypeError, ValueError):
            same = False
        if not same:
            raise ModelIntegrityError(f"{version.label}: {MANIFEST} in {version.path} changed after it was read",
                                      hint="load the version again")

    def load(self, pipeline: str, ref: str | int | None = None) -> ModelVersion:
        """:meth:`resolve` and :meth:`verify`: the version scoring may trust."""
        mv = self.resolve(pipeline, ref)
        self.verify(mv)
        return mv

    def aliases(self, pipeline: str) -> dict[str, int]:
        """``{alias: version}`` of ``pipeline`` (empty when none)."""
        _check_pipeline(pipeline)
        return self._aliases(pipeline)

    # -- internals ---------------------------------------------------------------------------------
    def _is_own_staging(self, path: Path) -> bool:
        try:
            same_parent = path.resolve().parent == self.staging_dir.resolve()
            return same_parent and path.stat().st_dev == self.staging_dir.stat().st_dev
        except OSError:
            return False

    def _copy_to_staging(self, pipeline: str, source: Path) -> Path:
        work = self.staging(pipeline)
        try:
            shutil.copytree(source, work, symlinks=False, dirs_exist_ok=True, copy_function=shutil.copy2)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return work

    @contextlib.contextmanager
    def _locked(self, pipeline: str) -> Iterator[Path]:
        """Hold the pipeline's exclusive lock; yields its folder (created if needed)."""
        _check_pipeline(pipeline)
        pdir = self.models_dir / pipeline
        pdir.mkdir(parents=True, exist_ok=True)
        fd = os.open(pdir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield pdir
        finally:
            os.close(fd)  # closing releases the lock

    def _next_number(self, pdir: Path) -> int:
        """Highest number in use (any ``v<N>`` folder, complete or not, or ever given out) plus one."""
        highest = 0
        for entry in _listdir(pdir):
            m = _VERSION_DIR.match(entry)
            if m:
                highest = max(highest, int(m.group(1)))
        with contextlib.suppress(OSError, ValueError):
            highest = max(highest, int((pdir / ".last_version").read_text().strip()))
        return highest + 1

    @staticmethod
    def _numbers(pdir: Path) -> list[int]:
        """Numbers of complete versions (folder renamed into place, manifest inside), ascending."""
        numbers = []
        for entry in _listdir(pdir):
            m = _VERSION_DIR.match(entry)
            if m and (pdir / entry / MANIFEST).is_file():
                numbers.append(int(m.group(1)))
        return sorted(numbers)

    def _aliases(self, pipeline: str) -> dict[str, int]:
        path = self.models_dir / pipeline / ALIASES
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise VerticalsError(f"cannot read aliases of {pipeline} from {path}: {exc}",
                                 hint="fix or delete the file, then promote again") from exc
        return {str(k): int(v) for k, v in raw.items()}

    def _read(self, pipeline: str, number: int, aliases: dict[str, int]) -> ModelVersion | None:
        path = self.models_dir / pipeline / f"v{number}"
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ModelIntegrityError(f"{pipeline} v{number}: cannot read {path / MANIFEST}: {exc}",
                                      hint=f"re-register the model or retrain it with `verticals train {pipeline}`"
                                      ) from exc
        return ModelVersion(pipeline, number, path, manifest, _aliases_of(aliases, number))

    @staticmethod
    def _pick(pipeline: str, ref: str | int | None, numbers: list[int],
              aliases: dict[str, int]) -> tuple[int, str]:
        """(version number, how it was chosen for messages)."""
        if ref is None:
            if DEFAULT_ALIAS in aliases:
                return aliases[DEFAULT_ALIAS], f" (alias {DEFAULT_ALIAS!r})"
            return numbers[-1], ""
        if isinstance(ref, bool) or not isinstance(ref, (int, str)):
            raise UserError(f"invalid model reference {ref!r} for {pipeline}",
                            hint="use a version number, 'v3', 'latest' or an alias name")
        if isinstance(ref, int):
            return ref, ""
        text = ref.strip()
        m = _VERSION_REF.match(text)
        if m:
            return int(m.group(1)), ""
        if text == "latest":
            return numbers[-1], ""
        if text in aliases:
            return aliases[text], f" (alias {text!r})"
        raise NotFoundError(f"{pipeline} has no alias {text!r}; aliases: {_describe_aliases(aliases)}; "
                            f"versions: {_describe_versions(numbers)}",
                            hint=f"promote a version first: `verticals models promote {pipeline} N --alias {text}`")


def _default_home() -> Path:
    return home()


def _check_pipeline(pipeline: str) -> None:
    """Pipeline names become folder names: allow letters, digits, ``_ . -``; refuse traversal."""
    check_name(pipeline, what="pipeline name for the model store", pattern=_PIPELINE, max_len=200,
               hint="use a qualified name such as 'finance.credit_risk' (letters, digits, '_', '.', '-'; "
                    "no '..' or '/'; at most 200 characters)")


def _check_alias(alias: str) -> None:
    hint = "start with a letter, use letters, digits, '_', '.', '-' (at most 64); not 'latest' or a version like 'v3'"
    check_name(alias, what="alias", pattern=_ALIAS, max_len=64, hint=hint)
    if alias in _RESERVED_ALIASES or _VERSION_REF.match(alias):
        raise UserError(f"invalid alias {alias!r}: it is reserved", hint=hint)


def _inside(root: Path, name: str, *, what: str) -> Path:
    """``root / name``, refusing absolute paths and ``..`` so a manifest cannot point outside."""
    return safe_join(root, name, what=what)


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _aliases_of(aliases: dict[str, int], number: int) -> list[str]:
    return sorted(a for a, v in aliases.items() if v == number)


def _describe_versions(numbers: list[int]) -> str:
    return ", ".join(f"v{n}" for n in numbers) or "none"


def _describe_aliases(aliases: dict[str, int]) -> str:
    return ", ".join(f"{a}→v{v}" for a, v in sorted(aliases.items())) or "none"


def _utc_now() -> str:
    from datetime import datetime

    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _plain(manifest: dict[str, Any], pipeline: str) -> dict[str, Any]:
    """A deep, JSON-only copy of ``manifest`` (fails before anything is written)."""
    try:
        return plain_json(manifest)
    except (TypeError, ValueError) as exc:
        raise VerticalsError(f"manifest for {pipeline} cannot be written as JSON: {exc}",
                             hint="put only numbers, strings, lists and dicts in the manifest") from exc


def _canonical(data: Any) -> str:
    """One text per JSON value (NaN included, which never equals itself as a float)."""
    return json.dumps(data, sort_keys=True, allow_nan=True)


def _hash_tree(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` except the top-level manifest, flushed to disk on the way."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if rel in (MANIFEST, MANIFEST_DIGEST):
                continue
            if path.is_symlink() or not path.is_file():
                raise UserError(f"cannot register {root}: {rel} is a link or special file",
                                hint="write plain files into the staging folder")
            out[rel] = sha256_file(path, fsync=True).hexdigest()
        for name in dirnames:
            if (Path(dirpath) / name).is_symlink():
                raise UserError(f"cannot register {root}: {Path(dirpath, name).relative_to(root)} is a link",
                                hint="write plain files into the staging folder")
    return out
