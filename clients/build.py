"""Build the typed Python client of the API from its OpenAPI schema (`make client`).

    python clients/build.py [OUTPUT_DIR]     # default: clients/python

Writes the schema the code publishes (`manage.py spectacular`) and runs openapi-python-client
on it; the package `petpro_booking_client` lands in OUTPUT_DIR (pip-installable, setup.py).
tests/test_python_client.py builds it the same way and books through it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "clients" / "python-client.yaml"


def client_build(output: Path) -> Path:
    """Generate the client into `output` (replaced); returns the package directory."""
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": os.environ.get(
            "DJANGO_SETTINGS_MODULE", "petpro_booking.settings.local"
        ),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",  # ruff for the post hooks
    }
    with tempfile.TemporaryDirectory() as work:
        schema = Path(work) / "openapi.json"
        manage = [sys.executable, str(ROOT / "manage.py")]
        subprocess.run(  # noqa: S603 - our own interpreter and files
            [
                *manage,
                "spectacular",
                "--format",
                "openapi-json",
                "--file",
                str(schema),
                "--fail-on-warn",
            ],
            env=env,
            cwd=ROOT,
            check=True,
        )
        generator = [str(bin_dir / "openapi-python-client"), "generate", "--path", str(schema)]
        subprocess.run(  # noqa: S603 - the generator installed next to this interpreter
            [
                *generator,
                *("--output-path", str(output), "--overwrite", "--meta", "setup"),
                *("--config", str(CONFIG), "--fail-on-warning"),
            ],
            env=env,
            cwd=work,
            check=True,
        )
    return output / "petpro_booking_client"


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "clients" / "python"
    package = client_build(target.resolve())
    print(f"client package: {package}")
