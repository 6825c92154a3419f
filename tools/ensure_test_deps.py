"""Install the system tools the test suite drives, when they are missing and we may install them.

Run by ``make test``. Debian packages need root (CI runs as root); elsewhere we print what to install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

#: executable -> Debian package that provides it
TOOLS = {"promtool": "prometheus", "chromium": "chromium"}


def main() -> int:
    missing = {exe: pkg for exe, pkg in TOOLS.items() if shutil.which(exe) is None}
    if not missing:
        return 0
    pkgs = sorted(set(missing.values()))
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(f"missing {', '.join(missing)}: install the Debian packages {' '.join(pkgs)}", file=sys.stderr)
        return 0  # the tests that need them fail with a clear message
    print(f"installing {' '.join(pkgs)} with apt-get ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
    res = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *pkgs], check=False, env=env)
    return res.returncode


if __name__ == "__main__":
    sys.exit(main())
