"""A cluster "node" on this machine: a throw-away non-root user reached over an sshd of our own.

Ray's launcher runs `ray stop` on every node, which kills every Ray process its user may
kill. Other Ray instances may run on this machine as root, so the node's user is a fresh
unprivileged one: its `ray stop` can only reach its own processes. Everything started here
is stopped by process id.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.ablab.helpers import cmdline  # noqa: F401 - node.cmdline, as the launcher test reads it

# sshd for the node, rsync for Ray's file_mounts, nc to reach sshd on its own port
# (Ray's auth section has no port: an ssh ProxyCommand carries it).
DEBIAN_PACKAGES = {"/usr/sbin/sshd": "openssh-server", "/usr/bin/rsync": "rsync", "/usr/bin/nc": "netcat-openbsd"}


def ensure_debian_packages() -> None:
    missing = sorted({pkg for binary, pkg in DEBIAN_PACKAGES.items() if not Path(binary).exists()})
    if not missing:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env, stdout=subprocess.DEVNULL)


@dataclass(frozen=True)
class NodeUser:
    name: str
    """login name of the throw-away user"""
    home: Path
    """its home directory (the synced tree goes to home/ablab)"""
    uid: int
    """its user id: every process it owns is ours to stop"""


def pip_config_for_node() -> str:
    """This machine's pip settings as a pip.conf, for a user who would not see them.

    Some of them live in the invoking user's own config file or environment (local mirrors,
    wheel folders); a node configured like this machine finds the same local wheels.
    """
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True,
                         text=True, check=True).stdout
    settings = {}  # later lines (the environment) win, as they do for pip
    for line in out.splitlines():
        key, _, value = line.partition("=")
        section, _, name = key.partition(".")
        if section in ("global", ":env:", "install") and name and name != "constraint":
            settings[name] = value.strip("'\"")
    return "[global]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())


@contextmanager
def throwaway_user(prefix: str = "ablabnode") -> Iterator[NodeUser]:
    name = f"{prefix}{secrets.token_hex(3)}"
    # '*': no password, but not a locked account (sshd refuses locked ones)
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", "--password", "*", name], check=True)
    entry = pwd.getpwnam(name)
    user = NodeUser(name, Path(entry.pw_dir), entry.pw_uid)
    try:
        yield user
    finally:
        stop_processes_of(user.uid)
        subprocess.run(["userdel", "--remove", name], check=False, stderr=subprocess.DEVNULL)


def pids_of(uid: int) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and proc.stat().st_uid == uid:
                pids.append(int(proc.name))
        except FileNotFoundError:
            pass
    return pids


def stop_processes_of(uid: int, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL, each process of `uid`, by pid (the user is ours alone)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids_of(uid):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + grace
        while pids_of(uid) and time.time() < deadline:
            time.sleep(0.2)


def answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def listening(address: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((address, port)) == 0


def give(path: Path, user: NodeUser, mode: int) -> None:
    os.chown(path, user.uid, pwd.getpwnam(user.name).pw_gid)
    path.chmod(mode)


def authorize_key(user: NodeUser, workdir: Path) -> Path:
    """A fresh ed25519 key pair; the public half in the user's authorized_keys. Returns the private key."""
    key = workdir / "node_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    ssh_dir = user.home / ".ssh"
    ssh_dir.mkdir(exist_ok=True)
    authorized = ssh_dir / "authorized_keys"
    authorized.write_text(key.with_suffix(".pub").read_text())
    give(ssh_dir, user, 0o700)
    give(authorized, user, 0o600)
    return key


@contextmanager
def sshd(user: NodeUser, address: str, port: int, workdir: Path, namespace: str | None = None) -> Iterator[None]:
    """An sshd of our own on address:port that lets only `user` in, with keys only.

    The node gets its own temporary folder, as a machine of its own would: Ray keeps its
    sessions and the address of "the" local cluster under $TMPDIR/ray. In `namespace`, the
    sshd also gets a process table of its own, so the node's `ray stop` sees only its
    processes, and listens on port 22 as well: the head's autoscaler reaches workers there
    (Ray drops `ssh_proxy_command` from the config it hands to the head).
    """
    node = namespace or "head"
    tmp = user.home / f"tmp-{node}"
    tmp.mkdir(exist_ok=True)
    give(tmp, user, 0o700)
    host_key = workdir / f"host_key_{node}"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
    config = workdir / f"sshd_config_{node}"
    extra_port = "Port 22\n" if namespace else ""
    config.write_text(f"""\
Port {port}
{extra_port}ListenAddress {address}
HostKey {host_key}
PidFile none
AllowUsers {user.name}
AuthorizedKeysFile .ssh/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin no
MaxSessions 50
MaxStartups 50
SetEnv TMPDIR={tmp}
""")
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    prefix = ["ip", "netns", "exec", namespace, "unshare", "--pid", "--fork", "--mount-proc"] if namespace else []
    log_path = workdir / f"sshd_{node}.log"
    log = log_path.open("w")
    proc = subprocess.Popen([*prefix, "/usr/sbin/sshd", "-D", "-e", "-f", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.time() + 30
        while not listening(address, port):
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"sshd did not start: {log_path.read_text()}")
            time.sleep(0.2)
        yield
    finally:
        # exactly the sshd we started: in a PID namespace, unshare's child is its first
        # process, and the kernel ends the namespace's other processes with it
        targets = children(proc.pid) if namespace else [proc.pid]
        for pid in targets:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:
            pass
    return found


def shared_folder(user: NodeUser) -> Path:
    """A local folder standing in for the NFS export, writable by the node's user."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="ablab-shared-"))
    give(path, user, 0o755)
    return path


def seed_venv(user: NodeUser, venv: Path, repo: Path) -> bool:
    """The node's ~/ablab/.venv made from this test's own `venv` (which `make setup` built
    from `repo`), as on nodes whose image has the environment installed: the node's
    `make setup` then finds it done instead of unpacking some 7 GB of wheels again (2-3
    minutes); CI's own `make setup` builds one from nothing on every run.

    Files are hard links (no copy; nothing of `venv` changes). What names a folder is made
    anew for the node: the interpreter is the one `make setup` picks for the node's user
    (this test's may live where that user cannot read), and the scripts' shebangs, the
    editable install's finder and pyvenv.cfg name the node's folders. The node's user reads
    it and writes nothing into it. False, and nothing made, where hard links cannot be made
    (`venv` on another file system): the node then builds its own from nothing."""
    python = subprocess.run(["su", "-", user.name, "-c", "command -v python3.11 || command -v python3"],
                            capture_output=True, text=True).stdout.strip()
    if not python:
        return False
    target = user.home / "ablab" / ".venv"
    target.parent.mkdir(parents=True, exist_ok=True)
    give(target.parent, user, 0o755)
    if subprocess.run(["cp", "-al", str(venv), str(target)], capture_output=True).returncode:
        shutil.rmtree(target, ignore_errors=True)
        return False
    version = subprocess.run([python, "-c", "import platform; print(platform.python_version())"],
                             capture_output=True, text=True, check=True).stdout.strip()
    swaps = ((str(venv), str(target)), (str(repo), str(target.parent)))
    site = next((target / "lib").glob("python3*/site-packages"))
    for path in [*(target / "bin").iterdir(), *site.glob("__editable__*"), *site.glob("*.dist-info/direct_url.json")]:
        if path.is_symlink():
            if Path(os.readlink(path)).is_absolute():  # bin/python3.11 -> the base interpreter
                path.unlink()
                path.symlink_to(python)
            continue
        data = path.read_bytes()
        if str(repo).encode() not in data:
            continue
        text = data.decode()
        for old, new in swaps:
            text = text.replace(old, new)
        _rewrite(path, text)
    config = {"home": str(Path(python).parent), "include-system-site-packages": "false", "version": version,
              "executable": python, "command": f"{python} -m venv {target}"}
    _rewrite(target / "pyvenv.cfg", "".join(f"{k} = {v}\n" for k, v in config.items()))
    return True


def _rewrite(path: Path, text: str) -> None:
    """`path` as a new file holding `text` (a hard link's other names keep the old one)."""
    mode = path.stat().st_mode
    path.unlink()
    path.write_text(text)
    path.chmod(mode)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True)
class Link:
    namespace: str
    """the network namespace the worker lives in"""
    here: str
    """this end's address (the head's), in the root namespace"""
    there: str
    """the other end's address (the worker's), inside the namespace"""


@contextmanager
def namespace_link() -> Iterator[Link]:
    """A network namespace of our own, joined to this one by a veth pair with a /30 of its own."""
    tag = secrets.token_hex(3)
    ns, outer, inner = f"ablab{tag}", f"ab{tag}h", f"ab{tag}w"
    net = f"10.{secrets.randbelow(200) + 50}.{secrets.randbelow(250)}"
    link = Link(ns, f"{net}.1", f"{net}.2")
    run = lambda *args: subprocess.run(["ip", *args], check=True)  # noqa: E731
    run("netns", "add", ns)
    try:
        run("link", "add", outer, "type", "veth", "peer", "name", inner)
        run("link", "set", inner, "netns", ns)
        run("addr", "add", f"{link.here}/30", "dev", outer)
        run("link", "set", outer, "up")
        run("netns", "exec", ns, "ip", "addr", "add", f"{link.there}/30", "dev", inner)
        run("netns", "exec", ns, "ip", "link", "set", inner, "up")
        run("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        yield link
    finally:
        subprocess.run(["ip", "link", "del", outer], check=False, stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "netns", "del", ns], check=False)
