"""What keeps the review page to the people and files it is meant for.

- It listens on 127.0.0.1 unless told otherwise. On any other address (`--host 0.0.0.0` for the
  shelter's Wi-Fi) every request needs the access token that `dogtag review` prints in its URL,
  as Jupyter does: from that URL the browser keeps it in a cookie.
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
