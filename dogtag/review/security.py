"""What keeps the review page to the people and files it is meant for.

- It listens on 127.0.0.1 unless told otherwise. On any other address (`--host 0.0.0.0` for the
  shelter's Wi-Fi) every request needs the access token that `dogtag review` prints in its URL,
  as Jupyter does: from that URL the browser keeps it in a cookie. The token is kept (readable by
  this user only) in ~/.config/dogtag/review-token, so the phones that scanned its QR code still get
  in after a restart; `--new-token` makes a new one, which locks out every phone until it rescans.
- The Host header must name this machine (localhost, an IP address, its host name, or one given
  with --allow-host): a web page elsewhere cannot reach the server through DNS rebinding.
- A request that changes something and comes from a page of another origin is refused.
- Only files inside the reviewed folders are served or written (links resolved first).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
import socket
from pathlib import Path

TOKEN_COOKIE = "dogtag_token"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    """Whether a listening address is only reachable from this machine."""
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    """A fresh access token: 32 random bytes, URL-safe."""
    return secrets.token_urlsafe(32)


def token_file() -> Path:
    """Where the access token is kept between starts: $XDG_CONFIG_HOME/dogtag/review-token (~/.config/...)."""
    root = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(root) / "dogtag" / "review-token"


def kept_token(path: Path, renew: bool = False) -> str:
    """The token kept in `path`; a new one (written there, mode 0600) when there is none, it is unusable,
    or `renew`. A token that cannot be written is still used, for this start only."""
    if not renew:
        try:
            token = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            token = ""
        if len(token) >= 32 and all(char.isalnum() or char in "-_" for char in token):
            return token
    token = new_token()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(token + "\n")
        os.replace(temporary, path)
    except OSError:
        pass  # a read-only home: this start's token works, the next start makes another
    return token


def token_matches(given: str | None, token: str) -> bool:
    """Constant-time comparison of a presented token with the server's."""
    return bool(given) and hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))


def allowed_host_names(bind_host: str, extra: tuple[str, ...] = ()) -> set[str]:
    """The host names the Host header may carry (IP addresses are always allowed when not loopback-only)."""
    names = {"localhost", "127.0.0.1", "::1", *(name.lower() for name in extra)}
    if not is_loopback(bind_host):
        hostname = socket.gethostname().lower()
        names |= {bind_host.lower(), hostname, f"{hostname}.local", socket.getfqdn().lower()}
    return names


def host_allowed(host_header: str | None, bind_host: str, names: set[str]) -> bool:
    """Whether a request's Host header (with or without its port) names this server."""
    if not host_header:
        return False
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:8765
        host = host[1 : host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if host in names or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or not is_loopback(bind_host)


def same_origin(origin: str | None, host_header: str | None) -> bool:
    """Whether a request's Origin header (if any) is this server's own page."""
    if origin is None:
        return True  # not sent by a browser page (curl, a shelter's database); the token guards those
    if origin == "null" or "://" not in origin:
        return False
    return origin.split("://", 1)[1].rstrip("/").lower() == (host_header or "").strip().lower()


def inside(folder: str | os.PathLike, path: str | os.PathLike) -> bool:
    """Whether `path`, with every symbolic link resolved, lies inside `folder` (resolved too)."""
    root = os.path.realpath(folder)
    target = os.path.realpath(path)
    return target == root or target.startswith(root.rstrip(os.sep) + os.sep)
