"""Run nginx from deploy/nginx.conf in front of gunicorn, as an operator would, in a folder."""

import shutil
import subprocess
from pathlib import Path

SITE = Path(__file__).resolve().parents[1] / "deploy" / "nginx.conf"


def start(port: int, gunicorn_port: int, folder: Path) -> subprocess.Popen:
    """Start nginx on ``port`` before gunicorn on ``gunicorn_port``, its files in ``folder``."""
    site = SITE.read_text()
    for deployed, here in [
        ("listen 80;", f"listen 127.0.0.1:{port};"),
        ("proxy_pass http://127.0.0.1:8000;", f"proxy_pass http://127.0.0.1:{gunicorn_port};"),
    ]:
        if site.count(deployed) != 1:
            raise AssertionError(f"deploy/nginx.conf no longer says {deployed!r} once")
        site = site.replace(deployed, here)
    (folder / "site.conf").write_text(site)
    # The http block an nginx install puts around a site, with its files in folder.
    temp_paths = "".join(
        f"    {kind}_temp_path {folder / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = folder / "nginx.conf"
    main.write_text(
        f"events {{}}\nhttp {{\n    access_log {folder / 'access.log'};\n{temp_paths}"
        f"    include {folder / 'site.conf'};\n}}\n"
    )
    command = [shutil.which("nginx") or "/usr/sbin/nginx", "-p", str(folder), "-c", str(main)]
    command += ["-e", str(folder / "error.log"), "-g", f"daemon off; pid {folder / 'nginx.pid'};"]
    with (folder / "nginx.out").open("wb") as output:
        return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)


def stop(server: subprocess.Popen) -> None:
    """Stop nginx at once (SIGTERM) and wait for it."""
    server.terminate()
    server.wait(timeout=30)
