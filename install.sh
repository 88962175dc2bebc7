#!/usr/bin/env bash
# Install Mimizuku onto a Wazuh 4.8+ manager (or remove it again).
#
#   sudo ./install.sh                      # onto /var/ossec: venv, script, rules, ossec.conf blocks
#                                          # onto /var/wazuh-manager (Wazuh 5.x): venv, scorer following
#                                          # the indexer, nightly timer (README, "Wazuh 5.0")
#   sudo ./install.sh --dry-run            # say what would be done, change nothing
#   sudo ./install.sh --uninstall [--purge]
#
# Everything is prepared first (virtualenv, rendered script, merged ossec.conf) and only then
# put in place; a failure at any point restores what was there before. Running it twice changes
# nothing the second time. See the README's Wazuh section.
set -euo pipefail
umask 022   # the venv must be readable by group wazuh through root:wazuh 0750 parents

SELF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PREFIX=""
VENV=""
PYTHON=""
NO_VENV=0
NO_PIP=0
WHEEL=""
PIP_ARGS=""
SYSTEM_SITE=0
WITH_LOCALFILE=0
NO_CONF=0
DRY_RUN=0
UNINSTALL=0
PURGE=0
FORCE_VERSION=""
MIN_VERSION="4.8"
NO_SYSTEMD=0
SYSTEMD_DIR=""
UNIT_NAME="mimizuku-serve.service"
RETRAIN_UNIT="mimizuku-retrain.service"     # Wazuh 5.x: the nightly job, started by ...
TIMER_NAME="mimizuku-retrain.timer"         # ... this timer (the 5.x manager has no command wodle)
WITH_RULES=0
WITH_INTEGRATION=0
INDEXER_URL=""
EXIT_UNSUPPORTED=4   # asked for what this Wazuh cannot do (5.x: rules, the integration, syslog localfile)

BEGIN_MARK="<!-- BEGIN mimizuku: added by mimizuku install.sh, removed by its uninstall option -->"
END_MARK="<!-- END mimizuku -->"

usage() {
    cat <<'EOF'
Usage: install.sh [options]

  --prefix DIR            Wazuh installation (default /var/ossec, else /var/wazuh-manager: Wazuh 5.x)
  --venv DIR              engine virtualenv (default PREFIX/mimizuku/venv); reused if it exists
  --python PY             interpreter that creates the venv (default python3, >= 3.9)
  --system-site-packages  let the venv see the interpreter's packages (e.g. distro scikit-learn)
  --no-venv               use --python as is (it must already import mimizuku)
  --no-pip                do not pip-install into the venv (it must already import mimizuku)
  --wheel FILE            install this wheel instead of the checkout
  --pip-args "ARGS"       extra arguments for pip (e.g. "--no-index --find-links DIR")
  --with-syslog-localfile also merge ossec_conf/localfile_syslog.xml
  --no-ossec-conf         do not touch ossec.conf (print the blocks instead)
  --wazuh-version V       skip detection and assume this Wazuh version
  --no-systemd            do not install the resident scorer's systemd unit
  --systemd-dir DIR       where the unit goes (default /etc/systemd/system, when systemd runs)
  --with-rules            4.x: the rules (installed anyway); 5.x: refused (no XML rules)
  --with-integration      4.x: the integratord script (installed anyway); 5.x: refused (no integratord)
  --indexer-url URL       5.x: the indexer the scorer follows and writes to (default: the first
                          <indexer><hosts><host> of wazuh-manager.conf)
  --dry-run               show what would be done; change nothing
  --uninstall             remove what install.sh added (data in spool/ and models/ is kept)
  --purge                 with --uninstall: also remove spool/ and models/
  -h, --help              this text
EOF
}

die() { echo "install.sh: error: $*" >&2; exit 1; }
say() { echo "install.sh: $*"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX=${2:?--prefix needs a directory}; shift 2 ;;
        --venv) VENV=${2:?--venv needs a directory}; shift 2 ;;
        --python) PYTHON=${2:?--python needs an interpreter}; shift 2 ;;
        --system-site-packages) SYSTEM_SITE=1; shift ;;
        --no-venv) NO_VENV=1; shift ;;
        --no-pip) NO_PIP=1; shift ;;
        --wheel) WHEEL=${2:?--wheel needs a file}; shift 2 ;;
        --pip-args) PIP_ARGS=${2?--pip-args needs a value}; shift 2 ;;
        --with-syslog-localfile) WITH_LOCALFILE=1; shift ;;
        --no-ossec-conf) NO_CONF=1; shift ;;
        --wazuh-version) FORCE_VERSION=${2:?--wazuh-version needs a version}; shift 2 ;;
        --no-systemd) NO_SYSTEMD=1; shift ;;
        --with-rules) WITH_RULES=1; shift ;;
        --with-integration) WITH_INTEGRATION=1; shift ;;
        --indexer-url) INDEXER_URL=${2:?--indexer-url needs a URL}; shift 2 ;;
        --systemd-dir) SYSTEMD_DIR=${2:?--systemd-dir needs a directory}; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        --uninstall) UNINSTALL=1; shift ;;
        --purge) PURGE=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option $1" ;;
    esac
done

if [ -z "$PREFIX" ]; then
    PREFIX=/var/ossec
    [ ! -d /var/ossec ] && [ -d /var/wazuh-manager ] && PREFIX=/var/wazuh-manager
fi
PREFIX=$(cd "$PREFIX" 2>/dev/null && pwd) || die "no Wazuh installation at the given --prefix"
HOME_DIR="$PREFIX/mimizuku"
VENV=${VENV:-$HOME_DIR/venv}
MANIFEST="$HOME_DIR/install-manifest"
# The layout: Wazuh 5.x installs to /var/wazuh-manager with etc/wazuh-manager.conf, bin/wazuh-manager-control
# and user/group wazuh-manager (docs/guide/migration/manager-configuration-migration.md in wazuh/wazuh 5.0.0);
# 4.x has etc/ossec.conf, bin/wazuh-control and wazuh.
LAYOUT=4
WAZUH_USER=wazuh
WAZUH_GROUP=wazuh
CONF="$PREFIX/etc/ossec.conf"
CONTROL="$PREFIX/bin/wazuh-control"
if [ ! -f "$CONF" ] && [ -f "$PREFIX/etc/wazuh-manager.conf" ]; then
    LAYOUT=5
    WAZUH_USER=wazuh-manager
    WAZUH_GROUP=wazuh-manager
    CONF="$PREFIX/etc/wazuh-manager.conf"
    CONTROL="$PREFIX/bin/wazuh-manager-control"
fi
SCRIPT="$PREFIX/integrations/custom-mimizuku"
RULES="$PREFIX/etc/rules/mimizuku_rules.xml"
UNIT="${SYSTEMD_DIR:-/etc/systemd/system}/$UNIT_NAME"

# The resident scorer's unit is installed where systemd runs the system (or into --systemd-dir).
use_systemd() {
    [ "$NO_SYSTEMD" -eq 0 ] || return 1
    [ -n "$SYSTEMD_DIR" ] && return 0
    [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1
}
systemctl_do() {  # never fatal: the files are in place, the service is a convenience
    command -v systemctl >/dev/null 2>&1 || return 0
    run systemctl "$@" || echo "install.sh: warning: systemctl $* failed" >&2
}
# --- checks ----------------------------------------------------------------------------------

[ "$(id -u)" -eq 0 ] || die "run as root (files must be root:wazuh, the venv root-owned)"
[ -f "$CONF" ] || die "$CONF not found (nor $PREFIX/etc/wazuh-manager.conf): is $PREFIX a Wazuh manager?"
getent group "$WAZUH_GROUP" >/dev/null || die "group $WAZUH_GROUP does not exist (is Wazuh installed?)"
getent passwd "$WAZUH_USER" >/dev/null || die "user $WAZUH_USER does not exist (is Wazuh installed?)"

# Wazuh version: like Wazuh's own upgrade.sh, from `wazuh-control info`, else etc/ossec-init.conf
# (3.x), else VERSION.json in the tree. Parsed, never eval'ed.
wazuh_version() {
    local v=""
    if [ -n "$FORCE_VERSION" ]; then echo "$FORCE_VERSION"; return; fi
    if [ -x "$CONTROL" ]; then
        v=$("$CONTROL" info 2>/dev/null | sed -n 's/^WAZUH_VERSION="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' | head -n1)
    fi
    if [ -z "$v" ] && [ -f /etc/ossec-init.conf ] && [ "$PREFIX" = /var/ossec ]; then
        v=$(sed -n 's/^VERSION="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/ossec-init.conf | head -n1)
    fi
    if [ -z "$v" ] && [ -f "$PREFIX/VERSION.json" ]; then
        v=$(sed -n 's/.*"version"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' "$PREFIX/VERSION.json" | head -n1)
    fi
    echo "$v"
}

version_ok() {  # 4.x layout: $1 >= MIN_VERSION and < 5.0; 5.x layout: 5.x
    local v=${1#v} major minor
    major=${v%%.*}; minor=${v#*.}; minor=${minor%%.*}
    case "$major$minor" in *[!0-9]*|"") return 2 ;; esac
    if [ "$LAYOUT" -eq 5 ]; then [ "$major" -eq 5 ]; return; fi
    [ "$major" -eq 4 ] && [ "$minor" -ge "${MIN_VERSION#*.}" ]
}

refuse() { echo "install.sh: refused: $*" >&2; exit "$EXIT_UNSUPPORTED"; }

# 5.x: the indexer URL the units name (--indexer-url, else the first <host> of the <indexer> block the
# manager itself writes to: docs/guide/migration/filebeat-to-indexer-connector.md). It goes into a
# unit file's command line, so only URL characters, no credentials, no path.
indexer_url() {
    local u="$INDEXER_URL"
    if [ -z "$u" ]; then
        u=$(awk '/<indexer>/ { inside = 1 } inside && /<host>/ { sub(/.*<host>[[:space:]]*/, ""); sub(/[[:space:]]*<\/host>.*/, ""); print; exit }
                 /<\/indexer>/ { inside = 0 }' "$CONF")
    fi
    [ -n "$u" ] || die "no indexer URL: give --indexer-url https://indexer:9200 (there is no <indexer><hosts><host> in $CONF)"
    u=${u%/}
    case "$u" in
        *@*) die "the indexer URL must not carry credentials (they go into $PREFIX/etc/mimizuku/indexer.env)" ;;
        http://127.*|http://localhost|http://localhost:*|http://\[::1\]*|https://*) ;;
        *) die "indexer URL $u: use https:// (plain http only to the loopback)" ;;
    esac
    printf '%s' "$u" | grep -Eq '^https?://[A-Za-z0-9.:-]+(:[0-9]+)?$|^https?://\[[0-9A-Fa-f:.]+\](:[0-9]+)?$' \
        || die "indexer URL $u: give scheme://host[:port] only (no path, query or unusual characters)"
    printf '%s' "$u"
}

# --- doing things (or saying them, with --dry-run) -----------------------------------------------

run() {
    if [ "$DRY_RUN" -eq 1 ]; then echo "  would run: $*"; else "$@"; fi
}

ROLLBACK=()     # commands (strings) undoing what was committed, run in reverse order on failure
STAGE=""
on_exit() {
    local rc=$?
    if [ $rc -ne 0 ] && [ ${#ROLLBACK[@]} -gt 0 ]; then
        echo "install.sh: failed; restoring the previous state" >&2
        local i
        for (( i=${#ROLLBACK[@]}-1; i>=0; i-- )); do
            eval "${ROLLBACK[$i]}" || echo "install.sh: rollback step failed: ${ROLLBACK[$i]}" >&2
        done
    fi
    [ -n "$STAGE" ] && rm -rf "$STAGE"
    exit $rc
}
trap on_exit EXIT

q() { printf '%q' "$1"; }

# ossec.conf without our marked section (stdout). $2 = 1: the file lacked a final newline before
# install.sh appended the section (the manifest's "conf-no-final-newline" line), so when the section
# is still the file's end, the newline install.sh added is dropped again: byte for byte the original.
conf_without_section() {
    awk -v b="$BEGIN_MARK" -v e="$END_MARK" -v nonl="${2:-0}" '
        $0 == b { skip = 1; seen = 1; after = 0; next }
        skip && $0 == e { skip = 0; next }
        !skip { if (have) print prev; prev = $0; have = 1; if (seen) after = 1 }
        END { if (have) { if (nonl && seen && !after) printf "%s", prev; else print prev } }' "$1"
}

# The marked section, with /var/ossec paths rewritten to PREFIX and the venv's console script.
sed_escape() { printf '%s' "$1" | sed -e 's/[#&\\]/\\&/g'; }
render_section() {
    local f pfx bin
    pfx=$(sed_escape "$PREFIX")
    bin=$(sed_escape "$(dirname "${PY:-$VENV/bin/python3}")")
    echo "$BEGIN_MARK"
    for f in "$@"; do
        sed -e '/^<!--/,/-->$/d' \
            -e "s#/var/ossec/mimizuku/venv/bin/#$bin/#g" \
            -e "s#/var/ossec\\([/ <\"]\\)#$pfx\\1#g" "$SELF_DIR/ossec_conf/$f"
    done
    echo "$END_MARK"
}

same_file() { cmp -s "$1" "$2"; }

# --- uninstall ---------------------------------------------------------------------------------

do_uninstall() {
    local stamp kind path nonl=0 backup
    local -a files=() venvs=() datadirs=() dirs=()
    stamp=$(date +%Y%m%d%H%M%S)
    if [ -f "$MANIFEST" ]; then
        while read -r kind path; do
            case "$kind" in
                conf-no-final-newline) [ "$path" != "$CONF" ] || nonl=1 ;;
                file|backup) files+=("$path") ;;
                venv) venvs+=("$path") ;;
                datadir) datadirs+=("$path") ;;
                dir) dirs+=("$path") ;;
            esac
        done < "$MANIFEST"
    else
        say "no install manifest at $MANIFEST: removing only what is recognisably ours"
        files=("$SCRIPT" "$RULES")
    fi

    if grep -qxF "$BEGIN_MARK" "$CONF"; then
        STAGE=$(mktemp -d "$PREFIX/etc/.mimizuku-stage.XXXXXX")
        conf_without_section "$CONF" "$nonl" > "$STAGE/ossec.conf"
        say "removing the mimizuku section from $CONF"
        # a copy kept only while the file is rewritten (left, and named, if that fails): a finished
        # uninstall leaves nothing that was not there before install
        backup="$CONF.mimizuku-uninstall-$stamp.bak"
        if [ "$DRY_RUN" -eq 0 ]; then
            cp -p "$CONF" "$backup"
            cat "$STAGE/ossec.conf" > "$CONF" \
                || die "cannot rewrite $CONF; its content before this run is in $backup"  # same inode, owner, mode
            rm -f -- "$backup"
        fi
    else
        say "no mimizuku section in $CONF"
    fi
    local units=0 name
    for path in "${files[@]}"; do
        name=$(basename "$path")
        case "$name" in
            "$UNIT_NAME"|"$TIMER_NAME")
                units=1
                if [ -e "$path" ]; then say "stopping and disabling $name"; systemctl_do disable --now "$name"; fi ;;
            "$RETRAIN_UNIT") units=1 ;;   # started by the timer only: nothing to disable
        esac
        [ -e "$path" ] && { say "removing $path"; run rm -f -- "$path"; }
    done
    [ "$units" -eq 0 ] || systemctl_do daemon-reload
    for path in "${venvs[@]}"; do
        [ -d "$path" ] && { say "removing the virtualenv $path"; run rm -rf -- "$path"; }
    done
    local -a kept=()
    for path in "${datadirs[@]}"; do
        [ -d "$path" ] || continue
        if [ "$PURGE" -eq 1 ]; then
            say "removing $path (--purge)"; run rm -rf -- "$path"
        elif [ -z "$(ls -A "$path")" ]; then
            run rmdir -- "$path"
        else
            say "keeping $path: it holds data (install.sh --uninstall --purge removes it)"
            kept+=("$path")
        fi
    done
    if [ -f "$MANIFEST" ]; then
        if [ ${#kept[@]} -gt 0 ]; then
            # what is left, so that a later --uninstall --purge can still find it
            if [ "$DRY_RUN" -eq 0 ]; then
                { printf 'datadir %s\n' "${kept[@]}"; printf 'dir %s\n' "${dirs[@]}"; } > "$MANIFEST.tmp"
                mv -f "$MANIFEST.tmp" "$MANIFEST"
            fi
        else
            run rm -f -- "$MANIFEST"
        fi
    fi
    # directories install.sh created, deepest first, only when now empty
    while read -r path; do
        [ -n "$path" ] && [ -d "$path" ] && [ -z "$(ls -A "$path")" ] && run rmdir -- "$path"
    done < <(printf '%s\n' "${dirs[@]}" | awk '{ print length, $0 }' | sort -rn | cut -d' ' -f2-)
    say "uninstalled. Restart the manager: systemctl restart wazuh-manager (or $CONTROL restart)"
}

if [ "$UNINSTALL" -eq 1 ]; then
    do_uninstall
    exit 0
fi

# --- install: checks -----------------------------------------------------------------------------

V=$(wazuh_version)
[ -n "$V" ] || die "cannot tell the Wazuh version (no $PREFIX/bin/wazuh-control info); use --wazuh-version if you are sure"
if ! version_ok "$V"; then
    if [ "$LAYOUT" -eq 5 ]; then
        die "Wazuh $V is not supported here: $PREFIX has the 5.x layout (etc/wazuh-manager.conf) but $CONTROL reports $V"
    fi
    die "Wazuh $V is not supported: Mimizuku needs a 4.x manager, $MIN_VERSION or newer (integratord timeout/retries; 5.x has no integratord)"
fi
say "Wazuh $V at $PREFIX"
if [ "$LAYOUT" -eq 5 ]; then
    # What Wazuh 5.x cannot do, refused before anything is touched (wazuh/wazuh 5.0.0: src/ has no
    # os_integrator, os_csyslogd nor analysisd rules; docs/guide/migration/integratord-notifications.md,
    # rules-4x-to-5x.md, manager-configuration-migration.md).
    [ "$WITH_INTEGRATION" -eq 0 ] || refuse "Wazuh 5.x has no wazuh-integratord: the integration script (custom-mimizuku) cannot run, and 5.x has no equivalent for an integration that re-injects its answer as a new alert. The resident scorer follows the indexer instead (README, \"Wazuh 5.0\")."
    [ "$WITH_RULES" -eq 0 ] || refuse "Wazuh 5.x has no XML rules (no etc/rules, no analysisd ruleset; detection is Sigma rules in the indexer, rules-4x-to-5x.md). Anomalies go to the indexer's mimizuku-anomalies data stream instead; see mimizuku dashboards."
    [ "$WITH_LOCALFILE" -eq 0 ] || refuse "Wazuh 5.x managers collect no local files (<localfile> is agent-side) and have no csyslogd: --with-syslog-localfile cannot work. Anomalies go to the indexer."
    [ "$NO_SYSTEMD" -eq 0 ] || refuse "on Wazuh 5.x the scorer and the nightly job run only as systemd units (the manager has no command wodle); --no-systemd leaves nothing to install."
    use_systemd || refuse "on Wazuh 5.x the scorer and the nightly job run as systemd units, and systemd does not run this system (give --systemd-dir to write the units elsewhere)."
    [ "$NO_CONF" -eq 0 ] || say "--no-ossec-conf: nothing to merge on 5.x anyway ($CONF is never changed)"
    IDX_URL=$(indexer_url) || exit 1
    say "the scorer follows $IDX_URL/wazuh-events-v5-* and writes anomalies to $IDX_URL"
fi

PYTHON=${PYTHON:-python3}
command -v "$PYTHON" >/dev/null 2>&1 || die "interpreter $PYTHON not found (--python)"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' \
    || die "$PYTHON is older than Python 3.9"

# --- stage: everything prepared before anything is put in place --------------------------------

STAGE=$(mktemp -d "$PREFIX/etc/.mimizuku-stage.XXXXXX")
chmod 0700 "$STAGE"
MANIFEST_NEW="$STAGE/install-manifest"
if [ -f "$MANIFEST" ]; then cp "$MANIFEST" "$MANIFEST_NEW"; else : > "$MANIFEST_NEW"; fi
record() { grep -qxF "$1 $2" "$MANIFEST_NEW" || echo "$1 $2" >> "$MANIFEST_NEW"; }

make_dir() {  # path owner group mode kind
    if [ ! -d "$1" ]; then
        say "creating $1 ($2:$3 $4)"
        if [ "$DRY_RUN" -eq 0 ]; then
            mkdir "$1"
            ROLLBACK+=("rmdir $(q "$1")")
        fi
        record "$5" "$1"
    fi
    if [ "$DRY_RUN" -eq 0 ]; then chown "$2:$3" "$1"; chmod "$4" "$1"; fi
}

# 1. the interpreter the script will run with
VENV_CREATED=0
if [ "$NO_VENV" -eq 1 ]; then
    PY=$(command -v "$PYTHON")
    "$PY" -I -c 'import mimizuku.integratord.call' 2>/dev/null \
        || die "--no-venv: $PY cannot import mimizuku (pip install it there first)"
else
    PY="$VENV/bin/python3"
    if [ -x "$PY" ] && { [ "$NO_PIP" -eq 1 ] || [ "$DRY_RUN" -eq 1 ]; }; then
        "$PY" -I -c 'import mimizuku.integratord.call' 2>/dev/null \
            || die "virtualenv $VENV cannot import mimizuku (drop --no-pip to install it)"
        say "using the existing virtualenv $VENV"
    else
        [ "$NO_PIP" -eq 0 ] || die "--no-pip: no usable virtualenv at $VENV"
        if [ -d "$VENV" ] && [ ! -x "$PY" ]; then die "$VENV exists but is not a virtualenv"; fi
        SRC="$SELF_DIR"
        [ -z "$WHEEL" ] || { [ -f "$WHEEL" ] || die "wheel $WHEEL not found"; SRC=$(cd "$(dirname "$WHEEL")" && pwd)/$(basename "$WHEEL"); }
        if [ ! -d "$VENV" ]; then
            say "creating the virtualenv $VENV"
            site=""; [ "$SYSTEM_SITE" -eq 1 ] && site="--system-site-packages"
            [ "$(dirname "$VENV")" != "$HOME_DIR" ] || make_dir "$HOME_DIR" root "$WAZUH_GROUP" 0750 dir
            if [ "$DRY_RUN" -eq 0 ]; then
                [ -d "$(dirname "$VENV")" ] || die "the parent of --venv $VENV does not exist"
                ROLLBACK+=("rm -rf $(q "$VENV")")
                "$PYTHON" -m venv $site "$VENV" || die "cannot create the virtualenv (install python3-venv?)"
                VENV_CREATED=1
            fi
        fi
        say "installing the engine into $VENV from $SRC"
        # shellcheck disable=SC2086
        run "$PY" -m pip install --disable-pip-version-check --quiet $PIP_ARGS "$SRC" \
            || die "pip install failed (see above); nothing was changed outside $VENV"
    fi
fi

# 2. the integration script with the venv's interpreter in its shebang (4.x), the units
if [ "$LAYOUT" -eq 4 ]; then
    SHEBANG="#!$PY -IS"
    [ ${#SHEBANG} -le 127 ] || die "interpreter path too long for a shebang: $PY"
    { echo "$SHEBANG"; tail -n +2 "$SELF_DIR/integrations/custom-mimizuku"; } > "$STAGE/custom-mimizuku"
    cp "$SELF_DIR/wazuh_rules/mimizuku_rules.xml" "$STAGE/mimizuku_rules.xml"
    sed -e "s#/var/ossec/mimizuku/venv/bin/python3#$(sed_escape "$PY")#g" \
        -e "s#/var/ossec\\([/ ]\\|\$\\)#$(sed_escape "$PREFIX")\\1#g" \
        "$SELF_DIR/ossec_conf/$UNIT_NAME" > "$STAGE/$UNIT_NAME"
else
    # 5.x: ossec_conf/wazuh5/*, rendered for the prefix, the venv and the indexer URL
    for u in "$UNIT_NAME" "$RETRAIN_UNIT" "$TIMER_NAME"; do
        sed -e "s#/var/wazuh-manager/mimizuku/venv/bin/#$(sed_escape "$(dirname "$PY")")/#g" \
            -e "s#/var/wazuh-manager\\([/ ]\\|\$\\)#$(sed_escape "$PREFIX")\\1#g" \
            -e "s#@INDEXER_URL@#$(sed_escape "$IDX_URL")#g" \
            "$SELF_DIR/ossec_conf/wazuh5/$u" > "$STAGE/$u"
    done
fi

# 3. the integratord user must be able to run it (a root-only interpreter would fail every call)
if [ "$DRY_RUN" -eq 0 ] || [ -x "$PY" ]; then
    if command -v runuser >/dev/null 2>&1; then
        runuser -u "$WAZUH_USER" -- "$PY" -I -c 'import mimizuku.integratord.call' 2>/dev/null \
            || die "user $WAZUH_USER cannot run $PY or import mimizuku with it: integratord runs the script as $WAZUH_USER, so the interpreter (and the venv, and the python it was made from) must not be under a private directory such as /root. Pick one it can run: --python /usr/bin/python3 (and --venv outside /root, or the default $HOME_DIR/venv)"
    fi
fi

# 4. ossec.conf with our section (replaced in place if present, else appended)
BLOCKS=(integration.xml wodle_retrain.xml)
[ "$WITH_LOCALFILE" -eq 1 ] && BLOCKS+=(localfile_syslog.xml)
CONF_CHANGES=0
if [ "$NO_CONF" -eq 0 ] && [ "$LAYOUT" -eq 4 ]; then
    render_section "${BLOCKS[@]}" > "$STAGE/section"
    if grep -qxF "$BEGIN_MARK" "$CONF"; then
        awk -v b="$BEGIN_MARK" -v e="$END_MARK" -v sect="$STAGE/section" '
            $0 == b { while ((getline line < sect) > 0) print line; skip = 1; next }
            skip && $0 == e { skip = 0; next }
            !skip { print }' "$CONF" > "$STAGE/ossec.conf"
    else
        { cat "$CONF"; [ -z "$(tail -c1 "$CONF")" ] || echo; cat "$STAGE/section"; } > "$STAGE/ossec.conf"
        # the newline added above is taken away again by --uninstall (byte-exact)
        [ -z "$(tail -c1 "$CONF")" ] || record conf-no-final-newline "$CONF"
    fi
    same_file "$STAGE/ossec.conf" "$CONF" || CONF_CHANGES=1
    if [ "$(grep -c -- '<name>custom-mimizuku</name>' "$STAGE/ossec.conf")" -gt 1 ]; then
        die "$CONF already has another custom-mimizuku <integration> block outside the marked section; remove it first"
    fi
fi

# --- commit ------------------------------------------------------------------------------------

[ "$VENV_CREATED" -eq 1 ] && record venv "$VENV"

# put $1 at $2 (atomic rename on the same filesystem), remembering how to undo it
place() {  # src dst owner group mode
    local src=$1 dst=$2
    if [ -f "$dst" ] && same_file "$src" "$dst" && [ "$(stat -c '%U:%G %a' "$dst")" = "$3:$4 ${5#0}" ]; then
        record file "$dst"
        return 0
    fi
    say "installing $dst ($3:$4 $5)"
    record file "$dst"
    [ "$DRY_RUN" -eq 1 ] && return 0
    [ ! -d "$dst" ] || die "$dst is a directory; move it away first"
    local tmp="$dst.mimizuku-new"
    ROLLBACK+=("rm -f $(q "$tmp")")
    cp "$src" "$tmp"
    chown "$3:$4" "$tmp"
    chmod "$5" "$tmp"
    if [ -e "$dst" ]; then
        cp -p "$dst" "$dst.mimizuku-old"
        ROLLBACK+=("mv -f $(q "$dst.mimizuku-old") $(q "$dst")")
    else
        ROLLBACK+=("rm -f $(q "$dst")")
    fi
    mv -f "$tmp" "$dst" || { rm -f "$tmp"; return 1; }
}

G=$WAZUH_GROUP
make_dir "$HOME_DIR" root "$G" 0750 dir
make_dir "$HOME_DIR/models" root "$G" 0750 datadir
make_dir "$HOME_DIR/spool" "$WAZUH_USER" "$G" 0750 datadir
make_dir "$HOME_DIR/run" "$WAZUH_USER" "$G" 0750 datadir      # the resident scorer's socket and state
make_dir "$PREFIX/logs/mimizuku" root "$G" 0750 dir
if [ "$LAYOUT" -eq 4 ]; then
    [ -d "$PREFIX/integrations" ] || make_dir "$PREFIX/integrations" root wazuh 0750 dir
    [ -d "$PREFIX/etc/rules" ] || make_dir "$PREFIX/etc/rules" wazuh wazuh 0770 dir
else
    [ -d "$PREFIX/etc/mimizuku" ] || make_dir "$PREFIX/etc/mimizuku" root root 0700 dir   # indexer.env
fi
if [ "$DRY_RUN" -eq 0 ] && [ -d "$VENV" ] && [ "$NO_VENV" -eq 0 ] && [ "$VENV_CREATED" -eq 1 ]; then
    chown "root:$G" "$VENV"; chmod 0750 "$VENV"
fi

if [ "$LAYOUT" -eq 4 ]; then
    place "$STAGE/custom-mimizuku" "$SCRIPT" root wazuh 0750
    place "$STAGE/mimizuku_rules.xml" "$RULES" root wazuh 0640
fi
if use_systemd; then
    [ -d "$(dirname "$UNIT")" ] || die "systemd unit directory $(dirname "$UNIT") does not exist"
    place "$STAGE/$UNIT_NAME" "$UNIT" root root 0644
    if [ "$LAYOUT" -eq 5 ]; then
        place "$STAGE/$RETRAIN_UNIT" "$(dirname "$UNIT")/$RETRAIN_UNIT" root root 0644
        place "$STAGE/$TIMER_NAME" "$(dirname "$UNIT")/$TIMER_NAME" root root 0644
    fi
fi

if [ "$NO_CONF" -eq 1 ]; then
    say "--no-ossec-conf: add these blocks to $CONF yourself:"
    render_section "${BLOCKS[@]}"
elif [ "$CONF_CHANGES" -eq 1 ]; then
    BACKUP="$CONF.mimizuku-$(date +%Y%m%d%H%M%S).bak"
    say "merging the mimizuku section into $CONF (backup: $BACKUP)"
    record backup "$BACKUP"
    if [ "$DRY_RUN" -eq 0 ]; then
        cp -p "$CONF" "$BACKUP"
        ROLLBACK+=("cat $(q "$BACKUP") > $(q "$CONF"); rm -f $(q "$BACKUP")")
        cat "$STAGE/ossec.conf" > "$CONF"   # keeps the file's owner, group and mode
    fi
else
    say "$CONF already has the current mimizuku section"
fi

if [ "$DRY_RUN" -eq 0 ]; then
    sort -u -o "$MANIFEST_NEW" "$MANIFEST_NEW"
    if [ ! -f "$MANIFEST" ] || ! same_file "$MANIFEST_NEW" "$MANIFEST"; then
        cp "$MANIFEST_NEW" "$MANIFEST.tmp" && chmod 0640 "$MANIFEST.tmp" && mv -f "$MANIFEST.tmp" "$MANIFEST"
    fi
    # committed: drop the undo copies
    rm -f "$SCRIPT.mimizuku-old" "$RULES.mimizuku-old" "$UNIT.mimizuku-old" \
          "$(dirname "$UNIT")/$RETRAIN_UNIT.mimizuku-old" "$(dirname "$UNIT")/$TIMER_NAME.mimizuku-old"
    ROLLBACK=()
    say "installed. Next:"
else
    say "dry run: nothing was changed. A real run would then tell you to:"
fi
if [ "$LAYOUT" -eq 5 ]; then
    ENVF="$PREFIX/etc/mimizuku/indexer.env"
    [ -f "$ENVF" ] || say "create $ENVF (root:root 0600) with MIMIZUKU_INDEXER_USER=..., MIMIZUKU_INDEXER_PASSWORD=... and MIMIZUKU_INDEXER_CA=<root-ca.pem>: the units read the indexer's credentials from it"
    systemctl_do daemon-reload
    systemctl_do enable "$UNIT_NAME"
    systemctl_do restart "$UNIT_NAME"
    systemctl_do enable --now "$TIMER_NAME"
    say "resident scorer: $UNIT_NAME (follows $IDX_URL/wazuh-events-v5-*); nightly job: $TIMER_NAME"
    cat <<EOF
  1. the indexer user needs read and point-in-time on wazuh-events-v5-*, and write on the mimizuku-anomalies data stream
  2. train a first model:       systemctl start $RETRAIN_UNIT   (journalctl -u ${RETRAIN_UNIT%.service})
  3. the dashboards:            $(dirname "$PY")/mimizuku dashboards import https://<dashboard> --layout anomalies
EOF
    exit 0
fi
if use_systemd; then
    systemctl_do daemon-reload
    systemctl_do enable "$UNIT_NAME"
    systemctl_do restart "$UNIT_NAME"
    say "resident scorer: $UNIT_NAME (systemctl status ${UNIT_NAME%.service}; mimizuku status)"
else
    say "no systemd here: run the resident scorer as user wazuh yourself (docs/serve.md):"
    say "  $PY -m mimizuku.serve --wazuh-home $PREFIX"
fi
cat <<EOF
  1. check the configuration:   $PREFIX/bin/wazuh-analysisd -t
  2. restart the manager:       systemctl restart wazuh-manager   (or $PREFIX/bin/wazuh-control restart)
  3. train a first model:       $(dirname "$PY")/mimizuku retrain --wazuh-home $PREFIX   (the nightly job does it too)
  4. test the rules:            $PREFIX/bin/wazuh-logtest   (the README's Wazuh section has a sample event)
EOF
