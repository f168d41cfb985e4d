"""
Packaging tests: the twistd dropin in twisted/plugins/ is discoverable and cheap.

Each check runs in a fresh interpreter (a subprocess) whose working directory is
an empty temporary directory, so the source checkout is not on sys.path and what
is tested is the installed tenantgw (the wheel tox installs).  When tenantgw
is imported from this checkout's src/ instead (PYTHONPATH=src, or a development
install), the checkout's root and src/ are put on the subprocess's PYTHONPATH,
so the dropin file itself is still exercised.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from twisted.trial import unittest

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120

TWISTD = "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"


def _fromSourceTree() -> bool:
    """
    Is tenantgw imported from this checkout's src/ (rather than installed)?
    """
    import tenantgw

    src = ROOT / "src"
    return any(Path(p).resolve().is_relative_to(src) for p in tenantgw.__path__)


def _installedDistribution() -> importlib.metadata.Distribution | None:
    if _fromSourceTree():
        return None
    try:
        return importlib.metadata.distribution("tenantgw")
    except importlib.metadata.PackageNotFoundError:
        return None


def _environ() -> dict[str, str]:
    env = dict(os.environ)
    if _fromSourceTree():
        extra = [str(ROOT), str(ROOT / "src")]
        if env.get("PYTHONPATH"):
            extra.append(env["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(extra)
    return env


class PluginDiscoveryTests(unittest.TestCase):
    def _python(self, *args: str) -> subprocess.CompletedProcess[str]:
        cwd = self.mktemp()
        os.makedirs(cwd)
        return subprocess.run(
            [sys.executable, *args],
            cwd=cwd,
            env=_environ(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )

    def _assertOK(self, result: subprocess.CompletedProcess[str]) -> None:
        self.assertEqual(
            result.returncode,
            0,
            f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}",
        )

    def test_twistdHelpListsTenantgw(self) -> None:
        """
        C{twistd --help} lists the C{tenantgw} subcommand with its description.
        """
        result = self._python("-c", TWISTD, "--help")
        self._assertOK(result)
        lines = [line.split() for line in result.stdout.splitlines()]
        self.assertIn(
            "tenantgw",
            [words[0] for words in lines if words],
            f"tenantgw missing from twistd --help:\n{result.stdout}",
        )

    def test_dropinImportIsLazy(self) -> None:
        """
        Importing the dropin and enumerating every plugin imports neither the
        reactor nor tenantgw's service module.
        """
        script = textwrap.dedent(
            """
            import sys
            import twisted.plugins.tenantgw_plugin as dropin
            from twisted.application.service import IServiceMaker
            from twisted.plugin import IPlugin, getPlugins

            list(getPlugins(IPlugin))
            makers = {p.tapname: p for p in getPlugins(IServiceMaker)}
            assert "tenantgw" in makers, sorted(makers)
            assert makers["tenantgw"].description, "empty description"
            assert dropin.tenantgw.module == "tenantgw.app.service", dropin.tenantgw.module
            leaked = [
                name
                for name in ("twisted.internet.reactor", "tenantgw.app.service")
                if name in sys.modules
            ]
            assert not leaked, leaked
            print("OK")
            """
        )
        result = self._python("-c", script)
        self._assertOK(result)
        self.assertEqual(result.stdout.strip(), "OK")

    def test_subcommandHelp(self) -> None:
        """
        C{twistd tenantgw --help} loads C{tenantgw.app.service} and shows the
        contract's options.
        """
        if importlib.util.find_spec("tenantgw.app.service") is None:
            raise unittest.SkipTest("tenantgw.app.service is not written yet")
        result = self._python("-c", TWISTD, "tenantgw", "--help")
        self._assertOK(result)
        for option in ("--source", "--http", "--https", "--admin"):
            self.assertIn(option, result.stdout)

    def test_wheelDoesNotShadowTwisted(self) -> None:
        """
        The installed distribution ships the dropin module but neither
        C{twisted/__init__.py} nor C{twisted/plugins/__init__.py} (nor a stale
        C{dropin.cache}), any of which would break Twisted itself.
        """
        dist = _installedDistribution()
        if dist is None:
            raise unittest.SkipTest("tenantgw is not installed from a wheel")
        files = {str(f).replace(os.sep, "/") for f in dist.files or ()}
        if not any(f.startswith("tenantgw/") for f in files):
            raise unittest.SkipTest("editable install: no files recorded")
        self.assertIn("twisted/plugins/tenantgw_plugin.py", files)
        for forbidden in (
            "twisted/__init__.py",
            "twisted/plugins/__init__.py",
            "twisted/plugins/dropin.cache",
        ):
            self.assertNotIn(forbidden, files)
