"""Instances reduced to their shape: random name parts, home owners, package files, account classes."""
from mimizuku.engine.features import account_class, command_tokens, looks_random, path_tokens, strip_shapes


def test_ansible_become_markers_are_one_token():
    a = command_tokens("/bin/sh -c echo BECOME-SUCCESS-rnzneawoangeioaqbzbutzmzcxujrrup ; /usr/bin/python3 x.py")
    b = command_tokens("/bin/sh -c echo BECOME-SUCCESS-hqhrxtvzrhjvygujtncyxwogqycsmdae ; /usr/bin/python3 x.py")
    assert a == b
    assert "w:become-success-*" in a


def test_temp_names_with_random_suffix_are_one_token():
    a = command_tokens("/tmp/venv-ylmvdvbc/bin/python -c bdist_wheel -d /tmp/pip-wheel-lmdnfmeb")
    b = command_tokens("/tmp/venv-xmmxysw9/bin/python -c bdist_wheel -d /tmp/pip-wheel-bjkxp724")
    assert a == b and "w:venv-*" in a and "w:pip-wheel-*" in a


def test_random_letters_versus_words():
    for rand in ("lmdnfmeb", "ylmvdvbc", "bjkxp724", "xmmxysw9", "rnzneawoangeioaqbzbutzmzcxujrrup"):
        assert looks_random(rand), rand
    for word in ("systemctl", "postgresql", "StrictHostKeyChecking", "deconfigure", "triggers", "initramfs",
                 "https", "chkpwd", "nginx", "configure", "authorized", "recurseSubmodules"):
        assert not looks_random(word), word


def test_random_test_only_touches_parts_of_compound_names():
    # a whole word or a flag cluster is left alone; the part after a separator is judged
    assert strip_shapes("xfsprogs") == "xfsprogs"
    assert strip_shapes("rsync -logDtprze") == "rsync -logDtprze"
    assert strip_shapes("/tmp/venv-lmdnfmeb/x") == "/tmp/venv-*/x"
    assert command_tokens("systemctl restart nginx") == ("prog:systemctl", "w:systemctl", "w:restart", "w:nginx")


def test_home_owner_is_not_part_of_the_path_shape():
    assert path_tokens("/home/erin/.bash_history") == path_tokens("/home/alice/.bash_history")
    assert "dir:/home/~" in path_tokens("/home/erin/.ssh/authorized_keys")
    assert path_tokens("/root/.bash_history") != path_tokens("/home/alice/.bash_history")
    assert command_tokens("tee -a /home/dave/.ssh/authorized_keys") == command_tokens(
        "tee -a /home/bob/.ssh/authorized_keys")
    assert "w:dave" not in command_tokens("tee -a /home/dave/.ssh/authorized_keys")


def test_package_files_and_maintainer_scripts_keep_only_their_shape():
    a = command_tokens("/usr/bin/dpkg --unpack /var/cache/apt/archives/nginx-core_1.18.0-0ubuntu1.6_amd64.deb")
    b = command_tokens("/usr/bin/dpkg --unpack /var/cache/apt/archives/python3.8_3.8.10-0ubuntu1~20.04.9_amd64.deb")
    assert a == b and "w:*.deb" in a
    c = command_tokens("/var/lib/dpkg/info/nginx-core.postinst configure 1.18.0-0ubuntu1.5")
    d = command_tokens("/var/lib/dpkg/info/coreutils.postinst configure 8.30-3ubuntu2")
    assert c == d and c[0] == "prog:*.postinst"
    assert command_tokens("/var/lib/dpkg/info/x.prerm remove") != c
    assert "w:*.rpm" in command_tokens("rpm -Uvh openssl-libs-1.1.1k-7.el8_6.x86_64.rpm")


def test_account_class_by_uid_range():
    assert account_class("0") == "root"
    assert account_class("33") == account_class(999) == account_class("65534") == "system"
    assert account_class("1000") == account_class("1005") == "person"
    assert account_class("4294967295") == account_class(None) == account_class("x") == ""
