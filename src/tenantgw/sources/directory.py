"""
``--source dir:PATH``: Kubernetes manifests from a directory, re-read on change.

Polling, not inotify: it works the same on every filesystem a ConfigMap
volume or a bind mount might be, and a one-second stat of a few files is
nothing.  A file that stops parsing keeps contributing the objects it had
when it last parsed, so a half-saved edit never takes a tenant down.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, Iterable, List, Mapping, Tuple

import yaml
from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

KubeObject = Mapping[str, Any]
ObjectsCallback = Callable[[List[KubeObject]], None]

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
WATCHED_KINDS = frozenset({"Namespace", "ConfigMap", "Secret", "Service", "EndpointSlice"})
MAX_MANIFEST_BYTES = 16 * 1024 * 1024

_log = Logger()


class ManifestError(ValueError):
    pass


def load_manifests(text: str) -> List[KubeObject]:
    """
    Every watched object in a multi-document YAML text; C{kind: List} is
    unpacked as kubectl does.  Objects of other kinds are skipped silently,
    since a directory shared with other tools will hold them.
    """
    objects: List[KubeObject] = []
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as e:
        raise ManifestError(f"not valid YAML: {e}") from None
    pending: List[Any] = documents
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


def _manifest_files(root: str) -> Iterable[str]:
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
        self._seen: Dict[str, Tuple[int, int]] = {}
        self._objects: Dict[str, List[KubeObject]] = {}
        self.errors: Dict[str, str] = {}
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
        """Re-reads changed files; calls back only when something changed."""
        changed = not self.synced
        present = set()
        try:
            files = list(_manifest_files(self.path))
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
            signature = (stat.st_mtime_ns, stat.st_size)
            if self._seen.get(file_path) == signature:
                continue
            self._seen[file_path] = signature
            changed = True
            self._read(file_path, stat.st_size)
        for gone in set(self._seen) - present:
            del self._seen[gone]
            self._objects.pop(gone, None)
            self.errors.pop(gone, None)
            changed = True
        if changed:
            self.synced = True
            self.on_objects([obj for objs in self._objects.values() for obj in objs])

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
