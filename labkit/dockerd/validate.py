"""Checks of what a client sends: the create request's types, and signal names.

moby checks a request before acting on it (daemon/container.go verifyContainerSettings,
and the JSON decoding's types): a field of the wrong type, or a setting labkit cannot
honour, is a 400 that names the field — never a 500 from deep inside the daemon.
"""

from __future__ import annotations

import json

from labkit import signals
from labkit.dockerd.errors import InvalidParameter


def parse_signal(value: str | int) -> int:
    """"SIGTERM", "TERM", "15" -> 15 (read by labkit.signals); anything else is a 400."""
    try:
        return signals.parse_signal(value)
    except ValueError:
        raise InvalidParameter(f"Invalid signal: {value}") from None


# The types the Engine API declares (moby's api/types/container Config and HostConfig, the
# swagger's ContainerConfig and HostConfig), in a few kinds. null is always allowed: Go
# decodes it as the zero value. Fields not listed are not checked here (the network's are
# network.py's; Cmd, Entrypoint, Env, Labels, ConsoleSize and the rest have checks below).
S, B, I, O, SL, SM, OL = "a string", "a boolean", "an integer", "an object", \
    "a list of strings", "an object of strings", "a list of objects"
CONFIG_TYPES = {
    "Hostname": S, "Domainname": S, "User": S, "AttachStdin": B, "AttachStdout": B,
    "AttachStderr": B, "ExposedPorts": O, "Tty": B, "OpenStdin": B, "StdinOnce": B,
    "Healthcheck": O, "ArgsEscaped": B, "Image": S, "Volumes": O, "WorkingDir": S,
    "NetworkDisabled": B, "MacAddress": S, "OnBuild": SL, "StopSignal": S, "StopTimeout": I,
    "Shell": SL,
}
HOST_CONFIG_TYPES = {
    "CpuShares": I, "Memory": I, "CgroupParent": S, "BlkioWeight": I,
    "BlkioWeightDevice": OL, "BlkioDeviceReadBps": OL, "BlkioDeviceWriteBps": OL,
    "BlkioDeviceReadIOps": OL, "BlkioDeviceWriteIOps": OL, "CpuPeriod": I, "CpuQuota": I,
    "CpuRealtimePeriod": I, "CpuRealtimeRuntime": I, "CpusetCpus": S, "CpusetMems": S,
    "Devices": OL, "DeviceCgroupRules": SL, "DeviceRequests": OL, "KernelMemoryTCP": I,
    "MemoryReservation": I, "MemorySwap": I, "MemorySwappiness": I, "NanoCpus": I,
    "OomKillDisable": B, "Init": B, "PidsLimit": I, "Ulimits": OL, "CpuCount": I,
    "CpuPercent": I, "IOMaximumIOps": I, "IOMaximumBandwidth": I, "Binds": SL,
    "ContainerIDFile": S, "LogConfig": O, "NetworkMode": S, "PortBindings": O,
    "RestartPolicy": O, "AutoRemove": B, "VolumeDriver": S, "VolumesFrom": SL, "Mounts": OL,
    "Annotations": SM, "CapAdd": SL, "CapDrop": SL, "CgroupnsMode": S, "Dns": SL,
    "DnsOptions": SL, "DnsSearch": SL, "ExtraHosts": SL, "GroupAdd": SL, "IpcMode": S,
    "Cgroup": S, "Links": SL, "OomScoreAdj": I, "PidMode": S, "Privileged": B,
    "PublishAllPorts": B, "ReadonlyRootfs": B, "SecurityOpt": SL, "StorageOpt": SM,
    "Tmpfs": SM, "UTSMode": S, "UsernsMode": S, "ShmSize": I, "Sysctls": SM, "Runtime": S,
    "Isolation": S, "MaskedPaths": SL, "ReadonlyPaths": SL,
}
# POST /networks/create (moby's api/types/network CreateRequest) and its IPAM object.
NETWORK_TYPES = {
    "Name": S, "Driver": S, "Scope": S, "EnableIPv6": B, "IPAM": O, "Internal": B,
    "Attachable": B, "Ingress": B, "ConfigOnly": B, "CheckDuplicate": B, "Options": SM,
    "Labels": SM,
}
IPAM_TYPES = {"Driver": S, "Config": OL, "Options": SM}
IPAM_CONFIG_TYPES = {"Subnet": S, "IPRange": S, "Gateway": S, "AuxiliaryAddresses": SM}
# The create request's NetworkingConfig: {"EndpointsConfig": {network: endpoint settings}}.
ENDPOINT_TYPES = {"Aliases": SL, "Links": SL, "IPAMConfig": O, "MacAddress": S, "NetworkID": S,
                  "EndpointID": S, "Gateway": S, "IPAddress": S, "DriverOpts": SM}
ENDPOINT_IPAM_TYPES = {"IPv4Address": S, "IPv6Address": S, "LinkLocalIPs": SL}
INT64 = range(-2**63, 2**63)   # what Go's int64 holds: larger numbers do not decode


def _is(value: object, kind: str) -> bool:
    if kind == I:
        return isinstance(value, int) and not isinstance(value, bool) and value in INT64
    if kind in (S, B, O):
        return isinstance(value, {S: str, B: bool, O: dict}[kind])
    if kind == SM:
        return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    inner = str if kind == SL else dict
    return isinstance(value, list) and all(isinstance(v, inner) for v in value)


def check_types(fields: dict, types: dict[str, str], prefix: str = "") -> None:
    """A 400 naming the first field whose JSON type is not the API's."""
    for key, kind in types.items():
        value = fields.get(key)
        if value is not None and not _is(value, kind):
            extra = " (a 64-bit one)" if kind == I and isinstance(value, int) else ""
            raise InvalidParameter(f"invalid {prefix}{key}: expected {kind}{extra}, got "
                                   f"{json.dumps(value)[:40]}")


def check_network_config(body: dict) -> None:
    """Type-check a network create request (its IPAM too): a 400 naming the field."""
    check_types(body, NETWORK_TYPES)
    ipam = body.get("IPAM") or {}
    check_types(ipam, IPAM_TYPES, "IPAM.")
    for entry in ipam.get("Config") or []:
        check_types(entry, IPAM_CONFIG_TYPES, "IPAM.Config.")


def check_networking(networking: object) -> None:
    """Type-check a create request's NetworkingConfig, down to each endpoint's IPAMConfig."""
    if networking is None:
        return
    if not isinstance(networking, dict):
        raise InvalidParameter("invalid NetworkingConfig: expected a JSON object")
    check_types(networking, {"EndpointsConfig": O}, "NetworkingConfig.")
    for name, endpoint in (networking.get("EndpointsConfig") or {}).items():
        check_endpoint(endpoint, f"NetworkingConfig.EndpointsConfig.{name}")


def check_endpoint(endpoint: object, prefix: str) -> None:
    """Type-check one endpoint's settings (create's, or network connect's EndpointConfig)."""
    if endpoint is not None and not isinstance(endpoint, dict):
        raise InvalidParameter(f"invalid {prefix}: expected {O}")
    check_types(endpoint or {}, ENDPOINT_TYPES, prefix + ".")
    check_types((endpoint or {}).get("IPAMConfig") or {}, ENDPOINT_IPAM_TYPES,
                prefix + ".IPAMConfig.")


def check_config(config: dict, host_config: dict, networking: object = None) -> None:
    """Type-check what create uses, so bad input is a 400 naming the field, never a 500."""
    check_networking(networking)
    check_types(config, CONFIG_TYPES)
    check_types(host_config, HOST_CONFIG_TYPES, "HostConfig.")
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
