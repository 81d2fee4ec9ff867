"""The daemon's pure parts: OCI spec shape, pull messages, names, views, signals, logs."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from labkit.dockerd import etcfiles, imageconfig, jsonlog, jsonmessage, mounts, oci
from labkit.dockerd.container import Container, State, parse_time
from labkit.dockerd.errors import InvalidParameter
from labkit.dockerd.names import generate_name
from labkit.dockerd.validate import parse_signal
from labkit.stdcopy import STDERR
from labkit.units import human_duration

# The config.json a real dockerd 20.10 handed runc (captured for the course; see tests/fixtures/README.md)
REFERENCE = Path(__file__).parent.parent / "fixtures" / "dockerd-generated-config.json"


def spec(**kw) -> dict:
    args = dict(args=["sleep", "1000"], env=[oci.DEFAULT_PATH, "HOSTNAME=36b97c4f5405"], cwd="/",
                user="", hostname="36b97c4f5405", tty=False,
                etc_files={"/etc/resolv.conf": "/x/resolv.conf", "/etc/hostname": "/x/hostname",
                           "/etc/hosts": "/x/hosts"})
    args.update(kw)
    return oci.container_spec(**args)


def test_spec_has_the_shape_of_a_real_dockerd_one():
    ref = json.loads(REFERENCE.read_text())
    ours = spec()
    assert [m["destination"] for m in ours["mounts"]] == [m["destination"] for m in ref["mounts"]]
    for a, b in zip(ours["mounts"], ref["mounts"]):
        assert (a["type"], a["options"]) == (b["type"], b["options"]), a["destination"]
    assert ours["process"]["capabilities"] == ref["process"]["capabilities"]
    assert ours["process"]["env"] == ref["process"]["env"]
    assert ours["hostname"] == ref["hostname"]
    assert {n["type"] for n in ours["linux"]["namespaces"]} == \
        {n["type"] for n in ref["linux"]["namespaces"]}
    assert set(ref["linux"]["maskedPaths"]) <= set(ours["linux"]["maskedPaths"])
    assert ours["linux"]["readonlyPaths"] == ref["linux"]["readonlyPaths"]
    assert ours["linux"]["sysctl"] == ref["linux"]["sysctl"]


def test_spec_user_and_tty():
    s = spec(user="1000:50", tty=True, console_size=(24, 80))
    assert s["process"]["user"] == {"uid": 1000, "gid": 50}
    assert s["process"]["terminal"] is True
    assert s["process"]["consoleSize"] == {"height": 24, "width": 80}
    with pytest.raises(ValueError, match="unable to find user nobody"):
        spec(user="nobody")


def test_merge_env_overrides_by_name():
    assert imageconfig.merge_env(["PATH=/bin", "A=1"], ["A=2", "B=3"]) == ["PATH=/bin", "A=2", "B=3"]


def test_resolv_conf_drops_loopback_nameservers():
    out = etcfiles.resolv_conf("nameserver 127.0.0.53\nsearch lab\n")
    assert "127.0.0.53" not in out and "nameserver 8.8.8.8" in out and "search lab" in out
    assert etcfiles.resolv_conf("nameserver 10.0.0.1\n") == "nameserver 10.0.0.1\n"


def test_pull_reporter_follows_dockers_order():
    r = jsonmessage.PullReporter("library/busybox", "latest", "busybox:latest")
    layer = "application/vnd.oci.image.layer.v1.tar+gzip"
    d = "sha256:" + "ab" * 32
    msgs = []
    for kind, cur, tot in (("resolved", 0, 0), ("downloading", 10, 100), ("downloading", 100, 100),
                           ("verifying", 0, 0), ("downloaded", 0, 0), ("extracting", 100, 100),
                           ("unpacked", 0, 0)):
        msgs += r.event(kind, layer if kind != "resolved" else "", d if kind != "resolved" else "",
                        cur, tot)
    msgs += r.event("done", image_digest="sha256:" + "cd" * 32)
    statuses = [m["status"] for m in msgs]
    assert statuses == ["Pulling from library/busybox", "Pulling fs layer", "Downloading",
                        "Downloading", "Verifying Checksum", "Download complete", "Extracting",
                        "Pull complete", "Digest: sha256:" + "cd" * 32,
                        "Status: Downloaded newer image for busybox:latest"]
    assert msgs[1]["id"] == "ab" * 6
    assert msgs[2]["progress"] == "[=====>" + " " * 45 + "]      10B/100B"
    again = jsonmessage.PullReporter("library/busybox", "latest", "busybox:latest",
                                     had_digest="sha256:" + "cd" * 32)
    assert again.event("done", image_digest="sha256:" + "cd" * 32)[-1]["status"] == \
        "Status: Image is up to date for busybox:latest"


def test_progress_bar_matches_the_trace():
    assert jsonmessage.progress_bar(3645, 314132) == "[>" + " " * 50 + "]  3.645kB/314.1kB"
    assert jsonmessage.progress_bar(314132, 314132) == "[" + "=" * 50 + ">]  314.1kB/314.1kB"
    assert jsonmessage.encode({"status": "x"}) == b'{"status":"x"}\r\n'


def test_generated_names_avoid_names_in_use():
    taken = set()
    rng = random.Random(1)
    for _ in range(50):
        name = generate_name(taken.__contains__, rng)
        assert name not in taken and "_" in name
        taken.add(name)


def test_signals():
    assert parse_signal("SIGTERM") == 15 and parse_signal("hup") == 1 and parse_signal("9") == 9
    for bad in ("SIGNOPE", "0", "99", ""):
        with pytest.raises(InvalidParameter):
            parse_signal(bad)


def test_log_lines_split_and_roundtrip(tmp_path):
    lines, rest = jsonlog.split_lines(b"par", b"tial\nnext\nhalf")
    assert lines == [b"partial\n", b"next\n"] and rest == b"half"
    entry = jsonlog.LogEntry(STDERR, b"oops\n", "2026-11-23T00:38:04.5Z")
    line = jsonlog.encode_log_line(entry)
    assert json.loads(line) == {"log": "oops\n", "stream": "stderr", "time": "2026-11-23T00:38:04.5Z"}
    log = tmp_path / "x-json.log"
    log.write_bytes(line + line[:10])  # a second line still being written
    entries, offset = jsonlog.read_log(str(log))
    assert entries == [entry] and offset == len(line)
    assert jsonlog.rfc3339nano(1_500_000_000 * 10**9 + 120_000_000) == "2017-07-14T02:40:00.12Z"


def test_container_views_and_persistence(tmp_path):
    c = Container(ID="a" * 64, Name="web", Created="2026-11-23T00:00:00Z", Path="echo",
                  Args=["hi"], Config={"Image": "busybox", "Tty": False}, HostConfig={},
                  Image="sha256:" + "b" * 64, ImageRef="docker.io/library/busybox:latest",
                  Runtime="labkit-runc")
    c.State = State(Status="exited", ExitCode=3, FinishedAt="2026-11-23T00:00:10Z")
    c.save(tmp_path)
    loaded = Container.load(Container.dir_for(tmp_path, c.ID))
    assert loaded == c
    view = loaded.inspect()
    for key in ("State", "Config", "HostConfig", "NetworkSettings"):
        assert isinstance(view[key], dict), key
    assert view["Name"] == "/web"
    item = loaded.summary("busybox", now=parse_time("2026-11-23T00:00:13Z"))
    assert item["Status"] == "Exited (3) 3 seconds ago" and item["Command"] == "echo hi"
    assert human_duration(90) == "About a minute" and human_duration(0.2) == "Less than a second"


def test_resources_from_host_config():
    r = oci.resources({"Memory": 32 * 2**20, "PidsLimit": 50, "NanoCpus": 500_000_000,
                       "CpuShares": 512})
    assert r["memory"] == {"limit": 32 * 2**20} and r["pids"] == {"limit": 50}
    assert r["cpu"] == {"shares": 512, "period": 100000, "quota": 50000}
    assert r["devices"][0] == {"allow": False, "access": "rwm"}
    assert set(oci.resources({})) == {"devices"}
    for bad in ({"Memory": 1024}, {"Memory": "x"}, {"NanoCpus": 10**9, "CpuQuota": 5000}):
        with pytest.raises(ValueError):
            oci.resources(bad)


def test_command_line():
    from labkit.dockerd.main import parse_args
    args = parse_args(["-H", "unix:///tmp/x.sock", "-H", "tcp://127.0.0.1:15999",
                       "--add-runtime", "mine=/opt/rt", "--registry-mirror", "http://h:1"])
    assert args.hosts == ["unix:///tmp/x.sock", "tcp://127.0.0.1:15999"]
    assert args.add_runtime == [("mine", "/opt/rt")] and args.mirrors == ["http://h:1"]
    tls = ["--tlsverify", "--tlscacert", "ca.pem", "--tlscert", "c.pem", "--tlskey", "k.pem"]
    assert parse_args(["-H", "tcp://0.0.0.0:2376", *tls]).hosts == ["tcp://0.0.0.0:2376"]
    for bad in (["-H", "tcp://0.0.0.0:2375"], ["-H", "tcp://10.1.2.3:2375", "--tlsverify"],
                ["-H", "http://x"], ["--add-runtime", "noequals"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


def test_volume_mounts(tmp_path):
    made = mounts.volume_mounts([f"{tmp_path}/a:/data:ro"], [{"Type": "tmpfs", "Target": "/t"}])
    assert made[0] == {"destination": "/data", "type": "bind", "source": f"{tmp_path}/a",
                         "options": ["rbind", "rprivate", "ro"]}
    assert (tmp_path / "a").is_dir() and made[1]["type"] == "tmpfs"
    assert mounts.mount_points(made)[0]["RW"] is False
    for binds in (["rel:/x"], ["/a"], ["/a:/x:bogus"], ["/a:/"], [f"{tmp_path}:/x", f"{tmp_path}:/x"]):
        with pytest.raises(ValueError):
            mounts.volume_mounts(binds, None)
    with pytest.raises(ValueError, match="does not exist"):
        mounts.volume_mounts(None, [{"Type": "bind", "Source": "/nonexistent-x", "Target": "/x"}])


def test_network_in_spec():
    assert {"type": "network"} in spec()["linux"]["namespaces"]
    host = spec(network="host")
    assert all(n["type"] != "network" for n in host["linux"]["namespaces"])
    assert "sysctl" not in host["linux"]
    joined = spec(network="/proc/42/ns/net")
    assert {"type": "network", "path": "/proc/42/ns/net"} in joined["linux"]["namespaces"]


def test_capabilities_add_and_drop():
    caps = oci.capabilities(["NET_ADMIN"], ["chown"])
    assert "CAP_NET_ADMIN" in caps and "CAP_CHOWN" not in caps and len(caps) == 14
    assert oci.capabilities(None, ["ALL"]) == []
    assert oci.capabilities(["ALL"], None) == oci.ALL_CAPABILITIES[:0] + [
        c for c in oci.DEFAULT_CAPABILITIES] + [c for c in oci.ALL_CAPABILITIES
                                                if c not in oci.DEFAULT_CAPABILITIES]
    with pytest.raises(ValueError, match="unknown capability"):
        oci.capabilities(["BOGUS"], None)


def test_dns_and_extra_hosts():
    conf = etcfiles.resolv_conf("nameserver 10.0.0.1\nsearch old\n", dns=["1.1.1.1"], search=["lab"])
    assert conf == "nameserver 1.1.1.1\nsearch lab\n"
    hosts = etcfiles.hosts_file("abc", ["reg:10.0.0.5", "v6:fe80::1"])
    assert "10.0.0.5\treg\n" in hosts and "fe80::1\tv6\n" in hosts
    assert hosts.endswith("127.0.1.1\tabc\n")
    with pytest.raises(ValueError):
        etcfiles.hosts_file("abc", ["nocolon"])
