"""The three /etc files dockerd writes for every container: hostname, hosts, resolv.conf.

A container's image has its own /etc, but these three files describe the container's
place on the network, which only the daemon knows: its name (the short id, or the host's
for --network host), the names it resolves locally (--add-host), and where it sends DNS
queries (the host's nameservers, minus the loopback ones, or --dns). dockerd writes them
under <root>/containers/<id>/ and the spec bind-mounts each over the rootfs's file
(oci.container_spec's `etc_files`), so `docker inspect` can name them (HostnamePath, …)
and they survive a restart of the container.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def write(cdir: Path, hostname: str, network: str, host_config: dict,
          host_gateway: str | None = None) -> dict[str, Path]:
    """Write the three files into the container's directory `cdir`; {path in the container:
    file on the host}. Bad --add-host/--dns values raise ValueError (a 400 for the caller).
    `host_gateway`: what --add-host NAME:host-gateway stands for (the default bridge's
    address). The container's own address and its peers' are added at start (network.py)."""
    files = {"/etc/hostname": cdir / "hostname", "/etc/hosts": cdir / "hosts",
             "/etc/resolv.conf": cdir / "resolv.conf"}
    files["/etc/hostname"].write_text(hostname + "\n")
    if network == "host":
        shutil.copyfile("/etc/hosts", files["/etc/hosts"])
    else:
        files["/etc/hosts"].write_text(hosts_file(hostname, host_config.get("ExtraHosts"),
                                                  host_gateway=host_gateway))
    try:
        host_resolv = Path("/etc/resolv.conf").read_text()
    except OSError:
        host_resolv = ""
    files["/etc/resolv.conf"].write_text(resolv_conf(
        host_resolv, host_config.get("Dns"), host_config.get("DnsSearch"),
        host_config.get("DnsOptions")))
    return files


def hosts_file(hostname: str, extra_hosts: list[str] | None = None, own_ip: str | None = None,
               peers: list[tuple[str, list[str]]] | None = None,
               host_gateway: str | None = None) -> str:
    """/etc/hosts as Docker writes it: loopback names, --add-host entries ("name:ip"), the
    other containers of the container's user networks (`peers`: (ip, names)), and its own
    name on its own address (`own_ip`; 127.0.1.1 without one, as Docker for --network
    none)."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
             "fe00::0\tip6-localnet", "ff00::0\tip6-mcastprefix", "ff02::1\tip6-allnodes",
             "ff02::2\tip6-allrouters"]
    for entry in extra_hosts or []:
        name, sep, ip = entry.partition(":") if isinstance(entry, str) else ("", "", "")
        if not sep or not name or not ip:
            raise ValueError(f"invalid extra host {entry!r}: expected \"name:ip\"")
        if ip == "host-gateway":
            if not host_gateway:
                raise ValueError("--add-host ...:host-gateway needs the default bridge "
                                 "network, which is not up")
            ip = host_gateway
        lines.append(f"{ip}\t{name}")
    for peer_ip, names in peers or []:
        lines.append(f"{peer_ip}\t{' '.join(names)}")
    lines.append(f"{own_ip or '127.0.1.1'}\t{hostname}")
    return "\n".join(lines) + "\n"


def resolv_conf(host_resolv_conf: str, dns: list[str] | None = None,
                search: list[str] | None = None, options: list[str] | None = None) -> str:
    """The host's resolv.conf without loopback nameservers (they mean nothing inside the
    container's own network namespace); Google's public DNS if none is left, as Docker does.
    --dns, --dns-search and --dns-option replace the host's lines of that kind."""
    if dns or search or options:
        kept = [line for line in host_resolv_conf.splitlines()
                if not (dns and line.startswith("nameserver"))
                and not (search and line.startswith(("search", "domain")))
                and not (options and line.startswith("options"))]
        kept += [f"nameserver {n}" for n in dns or []]
        if search:
            kept.append("search " + " ".join(search))
        if options:
            kept.append("options " + " ".join(options))
        host_resolv_conf = "\n".join(kept)
    lines = []
    nameservers = 0
    for line in host_resolv_conf.splitlines():
        fields = line.split()
        if fields[:1] == ["nameserver"] and len(fields) > 1:
            if fields[1].startswith("127.") or fields[1] == "::1":
                continue
            nameservers += 1
        lines.append(line)
    if nameservers == 0:
        lines += ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]
    return "\n".join(lines) + "\n"
