"""The Vagrantfile parses and is valid for Vagrant (provider-specific blocks not checked:
neither VirtualBox nor libvirt need be installed where the tests run)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

VAGRANT_DIR = Path(__file__).resolve().parents[2] / "vagrant"


@pytest.mark.skipif(shutil.which("vagrant") is None, reason="vagrant is not installed (apt-get install vagrant)")
def test_vagrantfile_validates():
    dot_vagrant = VAGRANT_DIR / ".vagrant"
    existed = dot_vagrant.exists()
    try:
        # Debian's vagrant 2.3.4 has `validate --ignore-provider` (-p).
        r = subprocess.run(["vagrant", "validate", "--ignore-provider"], cwd=VAGRANT_DIR,
                           capture_output=True, text=True, timeout=120)
    finally:
        if not existed:
            shutil.rmtree(dot_vagrant, ignore_errors=True)  # validate leaves its state dir
    assert r.returncode == 0, r.stdout + r.stderr
    assert "validated successfully" in r.stdout


def test_vagrantfile_has_what_the_course_needs():
    text = (VAGRANT_DIR / "Vagrantfile").read_text()
    assert 'config.vm.box = ENV.fetch("LABKIT_BOX", "debian/bookworm64")' in text
    for provider in ("virtualbox", "libvirt", "qemu"):
        assert f'config.vm.provider "{provider}"' in text
    assert 'host_ip: "127.0.0.1"' in text and "guest: 8888" in text
    assert "vagrant/setup.sh" in text and "privileged: true" in text
    assert "vb.memory = 4096" in text and "lv.memory = 4096" in text
    # JupyterLab comes with the plain set-up; what the student makes in the VM survives rsync
    assert 'inline: "/home/vagrant/labkit/vagrant/setup.sh --vm"' in text
    assert '"workspace/"' in text and '"labkit-grade/"' in text


def test_vagrant_jupyter_address_is_the_nat_one_only_under_virtualbox():
    """JupyterLab runs as root: the VM's copy listens on loopback (libvirt forwards over ssh)
    or, under VirtualBox, on the NAT address that only the host's NAT engine reaches — never
    on 0.0.0.0."""
    text = (VAGRANT_DIR / "Vagrantfile").read_text()
    vbox = text[text.index('config.vm.provider "virtualbox"'):text.index('config.vm.provider "libvirt"')]
    assert "/etc/labkit/jupyter.toml" in vbox and '10.0.2.15' in vbox
    assert "0.0.0.0" not in text


SETUP = VAGRANT_DIR / "setup.sh"


def _packages(*args, role_file):
    done = subprocess.run(["bash", str(SETUP), "--packages", *args], capture_output=True,
                          text=True, timeout=30, env={"PATH": "/usr/bin:/bin",
                                                      "LABKIT_ROLE_FILE": str(role_file)})
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_the_class_vm_gets_no_vagrant_but_a_host_does(tmp_path):
    """Inside the class VM (the Vagrantfile passes --vm, remembered in /etc/labkit/role) set-up
    leaves out the ~200 packages of the vagrant Ruby stack; a host of VMs (and CI) gets it."""
    role = tmp_path / "role"
    host = _packages(role_file=role)
    assert "vagrant" in host and "runc" in host and "docker.io" in host
    vm = _packages("--vm", role_file=role)
    assert "vagrant" not in vm and set(vm) == set(host) - {"vagrant"}
    role.write_text("vm\n")                        # a later run without --vm: still the VM
    assert "vagrant" not in _packages(role_file=role)


def test_set_up_installs_the_programs_the_notebooks_run(tmp_path):
    """A fresh Debian 12 has no curl (the class VM's debootstrap image had none: notebooks 06
    and 09 failed there with "curl: not found"); the notebooks call it, so set-up installs it,
    in both roles."""
    notebooks = (VAGRANT_DIR.parent / "notebooks").glob("*.ipynb")
    assert any('curl ' in nb.read_text() or '"curl"' in nb.read_text() for nb in notebooks)
    for args in ((), ("--vm",)):
        assert "curl" in _packages(*args, role_file=tmp_path / "role")
