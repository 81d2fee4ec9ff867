"""Checks of what a client sends: the create request's types, and signal names.

moby checks a request before acting on it (daemon/container.go verifyContainerSettings,
and the JSON decoding's types): a field of the wrong type, or a setting labkit cannot
honour, is a 400 that names the field — never a 500 from deep inside the daemon.
"""

from __future__ import annotations

from labkit import signals
from labkit.dockerd.errors import InvalidParameter


def parse_signal(value: str | int) -> int:
    """"SIGTERM", "TERM", "15" -> 15 (read by labkit.signals); anything else is a 400."""
    try:
        return signals.parse_signal(value)
    except ValueError:
        raise InvalidParameter(f"Invalid signal: {value}") from None


def check_config(config: dict, host_config: dict) -> None:
    """Type-check what create uses, so bad input is a 400 naming the field, never a 500."""
    image = config.get("Image")
    if not isinstance(image, str) or not image:
        raise InvalidParameter("no image given: the config's \"Image\" is empty")
    for key in ("Cmd", "Entrypoint", "Env"):
        value = config.get(key)
        if isinstance(value, str) and key != "Env":
            config[key] = [value]  # the API accepts a string for Cmd/Entrypoint (StrSlice)
        elif value is not None and not (isinstance(value, list)
                                        and all(isinstance(v, str) for v in value)):
            raise InvalidParameter(f"invalid {key}: expected a list of strings")
    for key in ("Hostname", "Domainname", "User", "WorkingDir", "StopSignal"):
        if config.get(key) is not None and not isinstance(config[key], str):
            raise InvalidParameter(f"invalid {key}: expected a string")
    workdir = config.get("WorkingDir") or ""
    if workdir and not workdir.startswith("/"):
        raise InvalidParameter(f"the working directory '{workdir}' is invalid, it needs to be "
                               "an absolute path")
    labels = config.get("Labels")
    if labels is not None and not (isinstance(labels, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items())):
        raise InvalidParameter("invalid Labels: expected an object of strings")
    timeout = config.get("StopTimeout")
    if timeout is not None and (not isinstance(timeout, int) or isinstance(timeout, bool)):
        raise InvalidParameter("invalid StopTimeout: expected an integer (seconds)")
    if config.get("StopSignal"):
        parse_signal(config["StopSignal"])
    console = host_config.get("ConsoleSize")
    if console is not None and not (isinstance(console, list) and len(console) == 2 and all(
            isinstance(n, int) and n >= 0 for n in console)):
        raise InvalidParameter("invalid HostConfig.ConsoleSize: expected [height, width]")
    for key, kind in (("LogConfig", dict), ("RestartPolicy", dict), ("Runtime", str),
                      ("NetworkMode", str), ("CgroupParent", str)):
        if host_config.get(key) is not None and not isinstance(host_config[key], kind):
            raise InvalidParameter(f"invalid HostConfig.{key}: expected a JSON "
                                   f"{'object' if kind is dict else 'string'}")
    for key in ("Binds", "Dns", "DnsSearch", "DnsOptions", "ExtraHosts", "CapAdd", "CapDrop",
                "SecurityOpt"):
        value = host_config.get(key)
        if value is not None and not (isinstance(value, list)
                                      and all(isinstance(v, str) for v in value)):
            raise InvalidParameter(f"invalid HostConfig.{key}: expected a list of strings")
    mounts = host_config.get("Mounts")
    if mounts is not None and not (isinstance(mounts, list)
                                   and all(isinstance(m, dict) for m in mounts)):
        raise InvalidParameter("invalid HostConfig.Mounts: expected a list of objects")
    if host_config.get("Privileged"):
        raise InvalidParameter("privileged containers are not supported by labkit-dockerd "
                               "(use --cap-add for the capabilities you need)")
    check_restart_policy(host_config)


def check_restart_policy(host_config: dict) -> None:
    """moby's ValidateRestartPolicy, and AutoRemove (--rm) only without one."""
    policy = host_config.get("RestartPolicy") or {}
    name, retries = policy.get("Name") or "", policy.get("MaximumRetryCount") or 0
    if not isinstance(name, str):
        raise InvalidParameter("invalid HostConfig.RestartPolicy.Name: expected a string")
    if not isinstance(retries, int) or isinstance(retries, bool):
        raise InvalidParameter("invalid HostConfig.RestartPolicy.MaximumRetryCount: expected "
                               "an integer")
    if name in ("always", "unless-stopped", "no") and retries:
        raise InvalidParameter("invalid restart policy: maximum retry count can only be used "
                               "with 'on-failure'" + (" and cannot be negative" if retries < 0
                                                      else ""))
    if name == "on-failure" and retries < 0:
        raise InvalidParameter("invalid restart policy: maximum retry count cannot be negative")
    if name not in ("", "no", "always", "on-failure", "unless-stopped"):
        raise InvalidParameter(f"invalid restart policy: unknown policy '{name}'; use one of "
                               "'no', 'always', 'on-failure', or 'unless-stopped'")
    if host_config.get("AutoRemove") and name not in ("", "no"):
        raise InvalidParameter("can't create 'AutoRemove' container with restart policy")
