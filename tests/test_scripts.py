"""
The quick-start scripts work where CI and containers run them: with
C{PYTHONUNBUFFERED=1} and C{pipefail}, which turn an early-exiting reader
(C{grep -q}) into a failed pipeline.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEV_INSTALL = os.path.join(ROOT, "scripts", "dev-install.sh")

# A writer that is still writing when grep has seen its match: the second
# write comes after grep -q has exited, so it gets EPIPE (SIGPIPE).  This is
# what PYTHONUNBUFFERED=1 does to twistd --help (print() writes the text,
# then the newline), made deterministic with a pause.
SLOW_TWISTD = """#!/bin/sh
printf 'Usage: twistd [options]\\n    tenantgw         Multi-tenant gateway\\n'
sleep 0.3
printf '    web              A general-purpose web server\\n'
"""


def unbuffered_env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


class DevInstallCheckTests(SynchronousTestCase):
    def check(self, venv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", DEV_INSTALL, "--check", venv],
            capture_output=True,
            text=True,
            env=unbuffered_env(),
            timeout=60,
            check=False,
        )

    def test_twistd_of_this_environment_lists_tenantgw_unbuffered(self) -> None:
        """The real twistd next to this interpreter, several times: no flake."""
        venv = os.path.dirname(os.path.dirname(sys.executable))
        if not os.path.exists(os.path.join(venv, "bin", "twistd")):
            self.skipTest(f"no twistd in {venv}")
        for _ in range(5):
            result = self.check(venv)
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertIn("lists tenantgw", result.stdout)

    def test_a_writer_still_writing_after_the_match_passes(self) -> None:
        venv = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(venv, "bin"))
        twistd = os.path.join(venv, "bin", "twistd")
        with open(twistd, "w") as f:
            f.write(SLOW_TWISTD)
        os.chmod(twistd, stat.S_IRWXU)
        # The old check, to show that this writer is the failure of the issue.
        old = subprocess.run(
            [
                "bash",
                "-c",
                "set -euo pipefail; \"$1\" --help | grep -qE '^\\s+tenantgw\\s'",
                "-",
                twistd,
            ],
            capture_output=True,
            env=unbuffered_env(),
            timeout=30,
            check=False,
        )
        self.assertNotEqual(old.returncode, 0)
        result = self.check(venv)
        self.assertEqual(result.returncode, 0, result.stderr)

    def test_missing_plugin_and_failing_twistd_are_reported(self) -> None:
        venv = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(venv, "bin"))
        twistd = os.path.join(venv, "bin", "twistd")
        with open(twistd, "w") as f:
            f.write("#!/bin/sh\necho 'Usage: twistd'\necho '    web  a server'\n")
        os.chmod(twistd, stat.S_IRWXU)
        result = self.check(venv)
        self.assertEqual(result.returncode, 1)
        self.assertIn("does not list tenantgw", result.stderr)
        with open(twistd, "w") as f:
            f.write("#!/bin/sh\necho 'ImportError: no module' >&2\nexit 3\n")
        result = self.check(venv)
        self.assertEqual(result.returncode, 1)
        self.assertIn("ImportError: no module", result.stderr)


class NoEarlyExitingReaderTests(SynchronousTestCase):
    def test_no_script_pipes_into_grep_q(self) -> None:
        """
        C{cmd | grep -q} under pipefail (or any early-exiting reader) fails
        whenever C{cmd} writes after the match; capture, then search.
        """
        pattern = re.compile(r"\|\s*grep\s+(-[A-Za-z]*q|--quiet|--silent)")
        paths = [os.path.join(ROOT, "Dockerfile"), os.path.join(ROOT, ".ci", "run")]
        scripts = os.path.join(ROOT, "scripts")
        paths += [
            path
            for path in (os.path.join(scripts, name) for name in sorted(os.listdir(scripts)))
            if os.path.isfile(path)  # not __pycache__, left by tests that load a script
        ]
        for path in paths:
            with open(path) as f:
                for number, line in enumerate(f, 1):
                    if line.lstrip().startswith("#"):
                        continue
                    self.assertIsNone(
                        pattern.search(line), f"{os.path.relpath(path, ROOT)}:{number}: {line}"
                    )
