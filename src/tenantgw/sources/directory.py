"""
``--source dir:PATH``: Kubernetes manifests from a directory, re-read on change.

Polling, not inotify: it works the same on every filesystem a ConfigMap
volume or a bind mount might be, and a one-second stat of a few files is
nothing.  A file that stops parsing keeps contributing the objects it had
when it last parsed, so a half-saved edit never takes a tenant down.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import yaml
from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from tenantgw.sources.kinds import KIND_NAMES

KubeObject = Mapping[str, Any]
ObjectsCallback = Callable[[list[KubeObject]], None]

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
WATCHED_KINDS = KIND_NAMES
MAX_MANIFEST_BYTES = 16 * 1024 * 1024

_log = Logger()


class ManifestError(ValueError):
    pass


def load_manifests(text: str) -> list[KubeObject]:
    """
    Every watched object in a multi-document YAML text; C{kind: List} is
    unpacked as kubectl does.  Objects of other kinds are skipped silently,
    since a directory shared with other tools will hold them.
    """
    objects: list[KubeObject] = []
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as e:
        raise ManifestError(f"not valid YAML: {e}") from None
    except (ValueError, OverflowError, RecursionError) as e:
        # YAML's constructors raise plain ValueError for values they cannot
        # build (an unquoted "2024-13-01T00:00:00Z", an integer of more than
        # 4300 digits); escaping poll() would stop the LoopingCall for good,
        # so one bad file would freeze the whole configuration.
        raise ManifestError(f"not valid YAML: a value could not be read ({e})") from None
    pending: list[Any] = documents
    while pending:
        doc = pending.pop(0)
        if doc is None:
            continue
        if not isinstance(doc, Mapping):
            raise ManifestError("a document is not a mapping")
        if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            pending[0:0] = doc["items"]
            continue
        if doc.get("kind") in WATCHED_KINDS:
            objects.append(doc)
    return objects


def manifest_files(root: str) -> Iterable[str]:
    for directory, subdirectories, files in os.walk(root):
        # Kubernetes ConfigMap volumes keep old generations in ..data dirs.
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith(".."))
        for name in sorted(files):
            if name.endswith(MANIFEST_SUFFIXES) and not name.startswith("."):
                yield os.path.join(directory, name)


class DirectorySource(Service):
    def __init__(
        self,
        path: str,
        clock: IReactorTime,
        on_objects: ObjectsCallback,
        interval: float = 1.0,
    ) -> None:
        self.path = path
        self.clock = clock
        self.on_objects = on_objects
        self.interval = interval
        self._seen: dict[str, tuple[int, ...]] = {}
        self._objects: dict[str, list[KubeObject]] = {}
        self.errors: dict[str, str] = {}
        self._delivered: list[KubeObject] = []
        self._poller = LoopingCall(self.poll)
        self._poller.clock = clock
        self.synced = False

    def startService(self) -> None:
        super().startService()
        self._poller.start(self.interval, now=True)

    def stopService(self) -> None:
        if self._poller.running:
            self._poller.stop()
        return super().stopService()

    def poll(self) -> None:
        """
        Re-reads changed files; calls back only when the objects changed.

        "Changed" means the objects differ from those last delivered, not
        that some file's stat changed: saving a broken file (whose objects
        are kept) or touching a file must not recompile every tenant.  The
        callback is guarded because an exception escaping it would stop the
        LoopingCall, and the gateway would silently stop following the
        directory.
        """
        changed = not self.synced
        present = set()
        try:
            files = list(manifest_files(self.path))
        except OSError as e:
            _log.error("cannot list {path}: {error}", path=self.path, error=e)
            return
        if not os.path.isdir(self.path):
            _log.error("source directory {path} does not exist", path=self.path)
            return
        for file_path in files:
            present.add(file_path)
            try:
                stat = os.stat(file_path)
            except OSError:
                continue
            # Inode and ctime are part of the signature: a same-size edit that
            # keeps the mtime (rsync -a, cp -p, tar x) changes only those, and
            # so does the chmod that makes an unreadable file readable.
            signature = (stat.st_mtime_ns, stat.st_size, stat.st_ino, stat.st_ctime_ns)
            if self._seen.get(file_path) == signature:
                continue
            self._seen[file_path] = signature
            self._read(file_path, stat.st_size)
        for gone in set(self._seen) - present:
            del self._seen[gone]
            self._objects.pop(gone, None)
            self.errors.pop(gone, None)
        # Files in path order, so that the list does not depend on the order
        # in which files were first seen.
        objects = [obj for path in sorted(self._objects) for obj in self._objects[path]]
        if changed or objects != self._delivered:
            self.synced = True
            self._delivered = objects
            try:
                self.on_objects(objects)
            except Exception:
                _log.failure("applying the objects read from {path} failed", path=self.path)

    def problems(self) -> dict[str, list[str]]:
        """
        Refused files, by the namespaces of the objects each still serves
        from its last good version ("" for a file that never was good), so
        that a tenant's status shows that what serves is not what is on disk.
        """
        found: dict[str, list[str]] = {}
        for file_path, error in sorted(self.errors.items()):
            kept = self._objects.get(file_path, [])
            message = (
                f"manifest {file_path} refused ({error});"
                f" serving the {len(kept)} objects it last held"
            )
            namespaces = {
                str(
                    (o.get("metadata") or {}).get("namespace")
                    or (o.get("metadata") or {}).get("name")
                )
                for o in kept
            } or {""}
            for namespace in sorted(namespaces):
                found.setdefault(namespace, []).append(message)
        return found

    def _read(self, file_path: str, size: int) -> None:
        try:
            if size > MAX_MANIFEST_BYTES:
                raise ManifestError(f"larger than {MAX_MANIFEST_BYTES} bytes")
            with open(file_path, encoding="utf-8") as f:
                objects = load_manifests(f.read())
        except (OSError, UnicodeDecodeError, ManifestError) as e:
            self.errors[file_path] = str(e)
            kept = len(self._objects.get(file_path, ()))
            _log.error(
                "manifest {file} refused ({error}); keeping the {kept} objects it last held",
                file=file_path,
                error=e,
                kept=kept,
            )
            return
        self.errors.pop(file_path, None)
        self._objects[file_path] = objects
