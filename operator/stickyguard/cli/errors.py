"""Expected failures of the command line, each turned into one line that says what to do.

A user who mistypes a kubeconfig path, points at a cluster that is down or asks for a port
that is taken should read one line with the fix, not a traceback. `main` calls `preflight`
before a subcommand runs and `describe` on anything a subcommand raises; whatever `describe`
does not recognise is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
from typing import Any

EXIT_BAD_INPUT, EXIT_UNREACHABLE = 2, 3
KUBECONFIG_HINT = "pass --kubeconfig FILE or set KUBECONFIG"


class CliError(Exception):
    """A failure the user can fix; str() is the whole message."""

    def __init__(self, message: str, code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.code = code


def check_ports(args: argparse.Namespace) -> None:
    """Every non-zero `--*-port` must be free: the servers bind in background threads, where a
    taken port would only show as a traceback in the log of an operator that looks alive."""
    for name, value in sorted(vars(args).items()):
        if not name.endswith("_port") or not isinstance(value, int) or value <= 0:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("0.0.0.0", value))
            except OSError as e:
                flag = "--" + name.replace("_", "-")
                why = "already in use" if e.errno == errno.EADDRINUSE else e.strerror
                raise CliError(
                    f"{flag} {value}: {why}; pick another port or stop the process using it"
                ) from None


def cluster_client(kubeconfig: str | None, context: str | None = None) -> Any:
    """adapters.kube_client's client, with CliError saying why when none can be built."""
    import yaml
    from kubernetes import config

    from stickyguard.adapters.kube_client import build_api_client

    if kubeconfig and not os.path.isfile(kubeconfig):
        raise CliError(f"kubeconfig {kubeconfig}: no such file; {KUBECONFIG_HINT}")
    try:
        return build_api_client(kubeconfig, context)
    except yaml.YAMLError as e:
        where = kubeconfig or "the default kubeconfig"
        raise CliError(f"{where} is not valid YAML ({_first_line(e)}); {KUBECONFIG_HINT}") from None
    except config.ConfigException as e:
        if kubeconfig:
            message = f"kubeconfig {kubeconfig}: {_first_line(e)}; {KUBECONFIG_HINT}"
        else:
            message = f"no kubeconfig found and not running in a cluster: {KUBECONFIG_HINT}"
        raise CliError(message) from None


def check_reachable(api: Any, timeout: float = 10.0) -> None:
    """One GET /version (readable by any identity), so that a wrong server address or a cluster
    that is down is one line instead of retries logged forever."""
    from kubernetes import client

    try:
        client.VersionApi(api).get_code(_request_timeout=timeout)
    except Exception as e:
        message = describe(e)
        if message is None:
            raise
        raise CliError(message, EXIT_UNREACHABLE) from None


def exit_code(exc: BaseException) -> int:
    """2 for input the user must fix, 3 for a server that cannot be reached or refuses."""
    import yaml
    from kubernetes.config import ConfigException

    if isinstance(exc, CliError):
        return exc.code
    if isinstance(exc, yaml.YAMLError | ConfigException | OSError):
        return EXIT_BAD_INPUT
    return EXIT_UNREACHABLE


def describe(exc: BaseException) -> str | None:
    """The one-line message for an expected failure, or None for a bug."""
    import urllib3
    import yaml
    from kubernetes.client.rest import ApiException
    from kubernetes.config import ConfigException

    if isinstance(exc, CliError):
        return str(exc)
    if isinstance(exc, urllib3.exceptions.MaxRetryError):
        pool = exc.pool
        where = f"{pool.scheme}://{pool.host}:{pool.port}" if pool is not None else "the server"
        reason = exc.reason
        if isinstance(reason, urllib3.exceptions.NewConnectionError):
            why = str(reason).rsplit(": ", 1)[-1].rstrip(")\"'")
        elif isinstance(reason, urllib3.exceptions.SSLError):
            why = f"TLS: {_first_line(reason)}"
        else:
            why = _first_line(reason) if reason is not None else "no answer"
        return (
            f"cannot reach the Kubernetes API server at {where} ({why}): is the cluster up, "
            f"and is it the one your kubeconfig names? ({KUBECONFIG_HINT})"
        )
    if isinstance(exc, urllib3.exceptions.HTTPError):
        return f"talking to the Kubernetes API server: {_first_line(exc)}"
    if isinstance(exc, ApiException) and exc.status in (401, 403):
        return (
            f"the Kubernetes API server refused the request ({exc.status} {exc.reason}): "
            "check the credentials in your kubeconfig and their RBAC"
        )
    if isinstance(exc, ConfigException):
        return f"kubeconfig: {_first_line(exc)}; {KUBECONFIG_HINT}"
    if isinstance(exc, yaml.YAMLError):
        return f"not valid YAML: {_first_line(exc)}"
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return f"a port is already in use ({exc.strerror}): pick another port or stop its user"
    return None


def _first_line(value: object) -> str:
    """The message on one line (YAML and TLS errors span several), cut to a readable length."""
    text = " ".join(str(value).split())
    return text if len(text) <= 300 else text[:297] + "..."
