"""What the fleet's people and programs choose from: command lines, user agents, URL paths, word
lists, CI projects, packages with their files, the hosts each episode kind prefers. Data only;
the planners draw from it with their seeded RNGs.
"""
from __future__ import annotations

from typing import Tuple

from mimizuku.tools.synth.fleet import ROLES

ROOTCHECK_FP = {
    "ci": (("Trojaned version of file detected.", "/bin/diff",
            "Trojaned version of file '/bin/diff' detected. Signature used: "
            "'bash|^/bin/sh|file\\.h|proc\\.h|/dev/[^n]|^/bin/.*sh' (Generic)."),),
    "workstation": (("Trojaned version of file detected.", "/bin/grep",
                     "Trojaned version of file '/bin/grep' detected. Signature used: 'bash|givemer|/dev/' (Generic)."),),
}

BOT_PATHS = (
    "/wp-login.php", "/xmlrpc.php", "/.env", "/.git/config", "/.git/HEAD", "/phpmyadmin/", "/pma/",
    "/admin/config.php", "/boaform/admin/formLogin", "/actuator/health", "/actuator/env",
    "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php", "/cgi-bin/luci", "/HNAP1/", "/solr/admin/info/system",
    "/.aws/credentials", "/config.json", "/server-status", "/owa/auth/logon.aspx", "/remote/login", "/manager/html",
    "/console/", "/api/jsonws/invoke", "/_ignition/execute-solution", "/wp-content/plugins/wp-file-manager/readme.txt",
    "/.DS_Store", "/backup.zip", "/db.sql", "/shell.php", "/geoserver/web/", "/druid/index.html", "/jenkins/login",
    "/webui/", "/Autodiscover/Autodiscover.xml", "/.htaccess", "/wp-includes/wlwmanifest.xml", "/telescope/requests",
    "/debug/default/view", "/.vscode/sftp.json", "/info.php", "/sftp-config.json", "/laravel/.env", "/api/.env",
)
USER_404 = (
    "/blog/2019/03/summer-sale", "/shop/item/4411", "/images/banner-old.png", "/apple-touch-icon-precomposed.png",
    "/favicon.ico", "/old-catalog.pdf", "/en/contact", "/products/discontinued-widget", "/checkout/step2",
    "/cart/undefined", "/assets/app.3f9a1c2e.js.map", "/static/js/main.chunk.js", "/account/orders/undefined",
    "/null", "/.well-known/apple-app-site-association", "/ads.txt", "/sitemap_index.xml", "/feed/", "/de/impressum",
    "/shop/category/winter-2022", "/newsletter/unsubscribe?id=undefined", "/product/7781/reviews?page=99",
)
BROWSER_UAS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.43 Mobile Safari/537.36",
)
BOT_UAS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/81.0.4044.129 Safari/537.36",
    "python-requests/2.28.1", "Go-http-client/1.1", "curl/7.88.1", "Mozilla/5.0 zgrab/0.x",
    "Mozilla/5.0 (compatible; CensysInspect/1.1; +https://about.censys.io/)", "l9explore/1.2.2",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/78.0.3904.108 Safari/537.36",
)
ATTACK_UAS = (
    "Mozilla/5.0 (X11; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:120.0) Gecko/20100101 Firefox/120.0", "python-requests/2.31.0",
)
SCANNER_UAS = ("gobuster/3.6", "Mozilla/5.0 (compatible; dirb/2.22)", "feroxbuster/2.10.1",
                "DirBuster-1.0-RC1 (http://www.owasp.org/index.php/Category:OWASP_DirBuster_Project)",
                "Fuzz Faster U Fool v2.1.0-dev")
RECON_PATHS = ("/upload.php", "/admin/upload", "/api/v1/files", "/uploads/", "/phpinfo.php", "/.env", "/admin/",
                "/filemanager/", "/wp-admin/admin-ajax.php", "/media/upload")
DIRB_WORDS = (
    ".bash_history", ".git/HEAD", ".htaccess", ".htpasswd", ".svn/entries", "admin", "administrator", "api", "app",
    "archive", "assets", "auth", "backup", "backups", "bin", "blog", "cache", "cgi-bin/", "config", "console", "cpanel",
    "css", "dashboard", "data", "db", "debug", "default", "demo", "dev", "docs", "download", "downloads", "dump",
    "editor", "error", "errors", "export", "files", "forum", "ftp", "home", "images", "img", "include", "includes",
    "index", "info", "install", "js", "lib", "log", "login", "logs", "mail", "manager", "media", "old", "panel",
    "phpmyadmin", "portal", "private", "public", "register", "remote", "reports", "scripts", "secret", "server-status",
    "setup", "shop", "site", "sql", "static", "stats", "status", "system", "temp", "test", "tmp", "tools", "upload",
    "uploads", "user", "users", "vendor", "web", "webadmin", "wp", "wp-admin", "wp-content", "xml", "phpinfo", "shell",
    "cmd", "root", "sites", "storage", "swagger", "graphql", "jenkins", "jira", "kibana", "grafana", "metrics",
    "monitor", "nagios", "owa", "adminer", "pgadmin", "webmail", "roundcube", "zabbix", "solr", "elastic",
)
SSH_WORDLIST = (
    "admin", "test", "user", "ubuntu", "oracle", "postgres", "git", "ftpuser", "pi", "guest", "support", "jenkins",
    "hadoop", "minecraft", "steam", "ansible", "centos", "ec2-user", "dev", "www", "mysql", "nagios", "tomcat",
    "user1", "administrator", "deploy", "debian", "teamspeak", "ts3", "zabbix", "elastic", "es", "kafka", "redis",
    "mongo", "docker", "test1", "testuser", "odoo", "sonar", "gitlab", "backup", "server", "vagrant", "azureuser",
    "solana", "sol", "ubnt", "dolphinscheduler", "root",
)
MAIL_PROBE_USERS = ("admin", "info", "test", "support", "sales", "contact", "office", "webmaster", "postmaster",
                     "alice", "bob", "hr", "marketing")
CI_PROJECTS = (("web", "webapp", "node"), ("backend", "api", "go"), ("platform", "libfoo", "c"),
                ("ops", "tools", "python"))
C_SOURCES = ("parser", "lexer", "ast", "eval", "hash", "map", "vec", "str", "io", "alloc", "log", "cli", "config",
              "net", "crc32", "base64", "utf8", "json", "arena", "queue", "timer", "pool")
GO_PACKAGES = tuple(f"example.internal/api/internal/{p}" for p in (
    "auth", "store", "store/postgres", "http", "http/middleware", "orders", "payments", "catalog", "config", "metrics",
    "mail", "queue", "cache")) + (
    "github.com/go-chi/chi/v5", "github.com/go-chi/chi/v5/middleware", "github.com/jackc/pgx/v5",
    "github.com/jackc/pgx/v5/pgxpool", "github.com/jackc/puddle/v2", "golang.org/x/crypto/bcrypt",
    "golang.org/x/crypto/blowfish", "golang.org/x/text/unicode/norm", "github.com/prometheus/client_golang/prometheus",
    "github.com/rs/zerolog", "google.golang.org/protobuf/proto", "example.internal/api/cmd/api",
)
NPM_POSTINSTALL = (
    ("esbuild", "node install.js"), ("husky", "husky install"), ("protobufjs", "node scripts/postinstall"),
    ("core-js", "node -e \"try{require('./postinstall')}catch(e){}\""), ("sharp", "node install/check"),
    ("puppeteer", "node install.mjs"), ("nodemon", "node bin/postinstall || exit 0"),
    ("es5-ext", "node -e \"try{require('./_postinstall')}catch(e){}\""), ("cypress", "node index.js --exec install"),
)
PYTEST_SUBPROCS = (
    ("git", "rev-parse", "HEAD"), ("sh", "-c", "uname -a"), ("/usr/bin/openssl", "version"),
    ("ssh-keygen", "-t", "ed25519", "-N", "", "-f", "/tmp/pytest-of-gitlab-runner/pytest-0/test_keys0/id"),
    ("tar", "-czf", "/tmp/pytest-of-gitlab-runner/pytest-0/test_archive0/out.tgz", "."),
)
DEV_CMDS = (
    ("git", "status"), ("git", "status"), ("git", "diff"), ("git", "add", "-A"), ("git", "commit", "-m", "fix tests"),
    ("git", "pull", "--rebase"), ("git", "push", "origin", "HEAD"), ("git", "log", "--oneline", "-20"),
    ("git", "checkout", "-b", "feature/checkout-retry"), ("make",), ("make", "test"), ("go", "test", "./..."),
    ("go", "build", "./..."), ("python3", "-m", "pytest", "-q"), ("node", "/usr/bin/npm", "run", "dev"),
    ("docker", "compose", "up", "-d"), ("docker", "ps"), ("docker", "logs", "--tail", "100", "api"), ("ls", "-la"),
    ("ls",), ("cat", "README.md"), ("grep", "-rn", "TODO", "src"), ("less", "app.log"), ("vim", "main.go"),
    ("code", "."), ("curl", "-s", "http://localhost:8080/health"), ("kubectl", "get", "pods", "-n", "staging"),
    ("htop",), ("find", ".", "-name", "*.pyc", "-delete"), ("ssh", "git@gitlab.example.internal"),
    ("jq", ".items[].metadata.name"), ("tail", "-f", "logs/dev.log"),
)
ADMIN_PREF = {"alice": ("web", "manager", "mail"), "bob": ("db", "mail"), "carol": ("ci", "web"), "dave": ROLES,
               "erin": ("web", "db")}
TASKS = {"web-nginx": ("nginx_reload", "nginx_edit"), "web-apache": ("apache_reload", "apache_edit"),
          "db": ("psql", "pg_edit", "psql"), "mail": ("mailq",), "ci": ("docker",), "manager": ("wazuh",)}
CHECK_CMDS = (("df", "-h"), ("free", "-m"), ("uptime",), ("top", "-bn1"), ("ls", "-la"), ("systemctl", "--failed"),
               ("ss", "-s"), ("last", "-n", "10"), ("ip", "-br", "a"), ("du", "-sh", "/var/log"))
ROOT_CMDS = (("systemctl", "status", "--no-pager"), ("journalctl", "-xe", "--no-pager"), ("ls", "-la", "/etc"),
              ("cat", "/etc/fstab"), ("df", "-i"), ("apt", "list", "--upgradable"), ("lsof", "-i"), ("ps", "auxf"),
              ("du", "-sh", "/var/lib"), ("ufw", "status"))
BASTION_CMDS = (("ls",), ("git", "-C", "infra", "pull", "--ff-only"), ("tmux", "attach"), ("cat", "notes.md"),
                 ("ssh-add", "-l"))
DISCOVERY_CMDS = (["uname", "-a"], ["hostname"], ["ls", "-la"], ["cat", "/etc/os-release"],
                   ["which", "gcc", "python3", "perl", "curl", "wget"], ["ps", "-ef"], ["netstat", "-antp"],
                   ["cat", "/etc/passwd"], ["ip", "a"])
ODD_UNITS = ("dbus-org.freedesktop.network1-helper.service", "systemd-timesyncd-update.service",
              "kworker-update.service", "snapd-refresh.service", "apt-daily-check.service")
EPISODE_HOSTS = {
    "web_shell": ("web",), "reverse_shell": ("web",), "persistence": ("web", "db", "mail", "bastion"),
    "uid0_user": ("db", "web", "mail", "bastion"), "ssh_key_backdoor": ("bastion", "web", "db", "mail"),
    "miner": ("web", "ci", "db"), "log_wiping": ("db", "web", "mail", "bastion"), "suid_shell": ("web", "db", "mail"),
    "unusual_login_sudo": ("bastion", "mail"), "ssh_bruteforce_success": ("bastion", "mail"), "web_scan_flood": ("web",),
}

_LIB = "/usr/lib/x86_64-linux-gnu/"
# (package, version, files FIM watches, roles it is installed on (None = all), security pocket?)
PACKAGES: Tuple[tuple, ...] = (
    ("openssl", "1.1.1f-1ubuntu2.19", ("/usr/bin/openssl",), None, True),
    ("libssl1.1", "1.1.1f-1ubuntu2.19", (_LIB + "libssl.so.1.1", _LIB + "libcrypto.so.1.1"), None, True),
    ("curl", "7.68.0-1ubuntu2.18", ("/usr/bin/curl",), None, True),
    ("libcurl4", "7.68.0-1ubuntu2.18", (_LIB + "libcurl.so.4.6.0",), None, True),
    ("sudo", "1.8.31-1ubuntu1.5", ("/usr/bin/sudo", "/usr/bin/sudoreplay", "/usr/sbin/visudo",
                                   "/usr/lib/sudo/sudoers.so"), None, True),
    ("openssh-client", "1:8.2p1-4ubuntu0.9", ("/usr/bin/ssh", "/usr/bin/scp", "/usr/bin/sftp", "/usr/bin/ssh-add",
                                              "/usr/bin/ssh-agent", "/usr/bin/ssh-keygen", "/usr/bin/ssh-keyscan"),
     None, True),
    ("openssh-server", "1:8.2p1-4ubuntu0.9", ("/usr/sbin/sshd", "/usr/lib/openssh/sftp-server"),
     ("web", "db", "bastion", "ci", "mail", "manager"), True),
    ("libc6", "2.31-0ubuntu9.12", (_LIB + "libc-2.31.so", _LIB + "libm-2.31.so", _LIB + "libpthread-2.31.so",
                                   _LIB + "libdl-2.31.so", _LIB + "librt-2.31.so", _LIB + "ld-2.31.so",
                                   "/usr/bin/ldd", "/usr/bin/getent", "/usr/bin/iconv", "/usr/sbin/iconvconfig"),
     None, True),
    ("libc-bin", "2.31-0ubuntu9.12", ("/usr/bin/locale", "/usr/bin/localedef", "/usr/sbin/ldconfig.real",
                                      "/usr/bin/getconf"), None, True),
    ("bash", "5.0-6ubuntu1.2", ("/usr/bin/bash",), None, False),
    ("coreutils", "8.30-3ubuntu2", tuple(f"/usr/bin/{x}" for x in (
        "ls", "cat", "cp", "mv", "rm", "chmod", "chown", "mkdir", "ln", "date", "df", "du", "echo", "env", "head",
        "tail", "sort", "uniq", "wc", "tr", "cut", "tee", "touch", "stat", "id", "whoami", "uname", "sleep", "true",
        "false", "dirname", "basename", "readlink", "realpath", "nohup", "timeout")), None, False),
    ("systemd", "245.4-4ubuntu3.22", ("/usr/bin/systemctl", "/usr/bin/journalctl", "/usr/bin/loginctl",
                                      "/usr/bin/hostnamectl", "/usr/bin/timedatectl", "/usr/lib/systemd/systemd",
                                      "/usr/lib/systemd/systemd-journald", "/usr/lib/systemd/systemd-logind",
                                      "/usr/lib/systemd/libsystemd-shared-245.so"), None, False),
    ("libsystemd0", "245.4-4ubuntu3.22", (_LIB + "libsystemd.so.0.28.0",), None, False),
    ("vim", "2:8.1.2269-1ubuntu5.17", ("/usr/bin/vim.basic",), None, True),
    ("vim-common", "2:8.1.2269-1ubuntu5.17", ("/usr/bin/xxd",), None, True),
    ("git", "1:2.25.1-1ubuntu3.11", ("/usr/bin/git", "/usr/lib/git-core/git-remote-http",
                                     "/usr/lib/git-core/git-shell", "/usr/lib/git-core/git-daemon"), None, True),
    ("python3.8", "3.8.10-0ubuntu1~20.04.8", ("/usr/bin/python3.8",), None, True),
    ("libpython3.8-stdlib", "3.8.10-0ubuntu1~20.04.8", ("/usr/lib/python3.8/ssl.py", "/usr/lib/python3.8/http/client.py",
                                                        "/usr/lib/python3.8/urllib/parse.py",
                                                        "/usr/lib/python3.8/email/_header_value_parser.py"), None, True),
    ("tar", "1.30+dfsg-7ubuntu0.20.04.3", ("/usr/bin/tar",), None, True),
    ("rsync", "3.1.3-8ubuntu0.7", ("/usr/bin/rsync",), None, True),
    ("libxml2", "2.9.10+dfsg-5ubuntu0.20.04.6", (_LIB + "libxml2.so.2.9.10",), None, True),
    ("libexpat1", "2.2.9-1ubuntu0.6", (_LIB + "libexpat.so.1.6.11",), None, True),
    ("libsqlite3-0", "3.31.1-4ubuntu0.5", (_LIB + "libsqlite3.so.0.8.6",), None, True),
    ("libgnutls30", "3.6.13-2ubuntu1.9", (_LIB + "libgnutls.so.30.27.0",), None, True),
    ("libpam-modules", "1.3.1-5ubuntu4.6", (_LIB + "security/pam_unix.so", _LIB + "security/pam_env.so",
                                            _LIB + "security/pam_limits.so", "/usr/sbin/unix_chkpwd"), None, True),
    ("passwd", "1:4.8.1-1ubuntu5.20.04.4", ("/usr/sbin/useradd", "/usr/sbin/usermod", "/usr/sbin/userdel",
                                            "/usr/sbin/chpasswd", "/usr/bin/passwd", "/usr/bin/chsh", "/usr/bin/chage"),
     None, False),
    ("util-linux", "2.34-0.1ubuntu9.4", ("/usr/bin/su", "/usr/bin/mount", "/usr/bin/umount", "/usr/bin/lsblk",
                                         "/usr/sbin/fstrim", "/usr/bin/dmesg"), None, False),
    ("nginx-core", "1.18.0-0ubuntu1.4", ("/usr/sbin/nginx",), ("web-nginx",), True),
    ("php7.4-fpm", "7.4.3-4ubuntu2.19", ("/usr/sbin/php-fpm7.4",), ("web-nginx",), True),
    ("php7.4-cli", "7.4.3-4ubuntu2.19", ("/usr/bin/php7.4",), ("web",), True),
    ("libapache2-mod-php7.4", "7.4.3-4ubuntu2.19", ("/usr/lib/apache2/modules/libphp7.4.so",), ("web-apache",), True),
    ("apache2-bin", "2.4.41-4ubuntu3.14", ("/usr/sbin/apache2", "/usr/lib/apache2/modules/mod_ssl.so",
                                          "/usr/lib/apache2/modules/mod_rewrite.so"), ("web-apache",), True),
    ("postgresql-12", "12.16-0ubuntu0.20.04.1", tuple(f"/usr/lib/postgresql/12/bin/{x}" for x in (
        "postgres", "pg_dump", "pg_restore", "psql", "vacuumdb", "pg_ctl")), ("db",), True),
    ("postfix", "3.4.13-0ubuntu1.3", ("/usr/sbin/postfix", "/usr/sbin/postqueue", "/usr/sbin/sendmail",
                                      "/usr/lib/postfix/sbin/smtpd", "/usr/lib/postfix/sbin/qmgr"), ("mail",), True),
    ("dovecot-core", "1:2.3.7.2-1ubuntu3.6", ("/usr/sbin/dovecot", "/usr/lib/dovecot/imap", "/usr/lib/dovecot/imap-login",
                                              "/usr/lib/dovecot/auth"), ("mail",), True),
    ("docker-ce", "5:24.0.7-1~ubuntu.20.04~focal", ("/usr/bin/dockerd", "/usr/bin/docker-proxy"), ("ci",), False),
    ("docker-ce-cli", "5:24.0.7-1~ubuntu.20.04~focal", ("/usr/bin/docker",), ("ci",), False),
    ("containerd.io", "1.6.25-1", ("/usr/bin/containerd", "/usr/bin/containerd-shim-runc-v2", "/usr/bin/ctr",
                                   "/usr/bin/runc"), ("ci",), False),
    ("gitlab-runner", "16.5.0", ("/usr/bin/gitlab-runner",), ("ci",), False),
    ("nodejs", "18.19.0-1nodesource1", ("/usr/bin/node",), ("ci", "workstation"), False),
)
KERNEL = ("linux-image", "", (), None, False)
WAZUH_AGENT = ("wazuh-agent", "4.8.2-1", (), None, False)
TOOLS = (
    ("htop", "2.2.0-2build1", ("/usr/bin/htop",), None, False),
    ("jq", "1.6-1ubuntu0.20.04.1", ("/usr/bin/jq", _LIB + "libjq.so.1.0.4", _LIB + "libonig.so.5.1.0"), None, False),
    ("ncdu", "1.14.1-1", ("/usr/bin/ncdu",), None, False),
    ("tcpdump", "4.9.3-4ubuntu0.2", ("/usr/sbin/tcpdump",), None, False),
    ("strace", "5.5-3ubuntu1", ("/usr/bin/strace",), None, False),
    ("nmap", "7.80+dfsg1-2ubuntu0.1", ("/usr/bin/nmap", "/usr/bin/ncat", "/usr/bin/nping"), None, False),
    ("socat", "1.7.3.3-2", ("/usr/bin/socat",), None, False),
    ("netcat-traditional", "1.10-41.1", ("/usr/bin/nc.traditional",), None, False),
)
