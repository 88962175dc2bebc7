#!/usr/bin/env bash
# Install Mimizuku onto a Wazuh 4.8+ manager (or remove it again).
#
#   sudo ./install.sh                      # onto /var/ossec: venv, script, rules, ossec.conf blocks
#   sudo ./install.sh --dry-run            # say what would be done, change nothing
#   sudo ./install.sh --uninstall [--purge]
#
# Everything is prepared first (virtualenv, rendered script, merged ossec.conf) and only then
# put in place; a failure at any point restores what was there before. Running it twice changes
# nothing the second time. See the README's Wazuh section.
set -euo pipefail
umask 022   # the venv must be readable by group wazuh through root:wazuh 0750 parents

SELF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PREFIX=/var/ossec
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

BEGIN_MARK="<!-- BEGIN mimizuku: added by mimizuku install.sh, removed by its uninstall option -->"
END_MARK="<!-- END mimizuku -->"

usage() {
    cat <<'EOF'
Usage: install.sh [options]

  --prefix DIR            Wazuh installation (default /var/ossec)
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
        --systemd-dir) SYSTEMD_DIR=${2:?--systemd-dir needs a directory}; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        --uninstall) UNINSTALL=1; shift ;;
        --purge) PURGE=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option $1" ;;
    esac
done

PREFIX=$(cd "$PREFIX" 2>/dev/null && pwd) || die "no Wazuh installation at the given --prefix"
HOME_DIR="$PREFIX/mimizuku"
VENV=${VENV:-$HOME_DIR/venv}
MANIFEST="$HOME_DIR/install-manifest"
CONF="$PREFIX/etc/ossec.conf"
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
[ -f "$CONF" ] || die "$CONF not found: is $PREFIX a Wazuh manager?"
getent group wazuh >/dev/null || die "group wazuh does not exist (is Wazuh installed?)"
getent passwd wazuh >/dev/null || die "user wazuh does not exist (is Wazuh installed?)"

# Wazuh version: like Wazuh's own upgrade.sh, from `wazuh-control info`, else etc/ossec-init.conf
# (3.x), else VERSION.json in the tree. Parsed, never eval'ed.
wazuh_version() {
    local v=""
    if [ -n "$FORCE_VERSION" ]; then echo "$FORCE_VERSION"; return; fi
    if [ -x "$PREFIX/bin/wazuh-control" ]; then
        v=$("$PREFIX/bin/wazuh-control" info 2>/dev/null | sed -n 's/^WAZUH_VERSION="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' | head -n1)
    fi
    if [ -z "$v" ] && [ -f /etc/ossec-init.conf ] && [ "$PREFIX" = /var/ossec ]; then
        v=$(sed -n 's/^VERSION="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/ossec-init.conf | head -n1)
    fi
    if [ -z "$v" ] && [ -f "$PREFIX/VERSION.json" ]; then
        v=$(sed -n 's/.*"version"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' "$PREFIX/VERSION.json" | head -n1)
    fi
    echo "$v"
}

version_ok() {  # $1 >= MIN_VERSION and < 5.0
    local v=${1#v} major minor
    major=${v%%.*}; minor=${v#*.}; minor=${minor%%.*}
    case "$major$minor" in *[!0-9]*|"") return 2 ;; esac
    [ "$major" -eq 4 ] && [ "$minor" -ge "${MIN_VERSION#*.}" ]
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
    for path in "${files[@]}"; do
        if [ "$(basename "$path")" = "$UNIT_NAME" ] && [ -e "$path" ]; then
            say "stopping and disabling $UNIT_NAME"
            systemctl_do disable --now "$UNIT_NAME"
        fi
        [ -e "$path" ] && { say "removing $path"; run rm -f -- "$path"; }
        if [ "$(basename "$path")" = "$UNIT_NAME" ]; then systemctl_do daemon-reload; fi
    done
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
    say "uninstalled. Restart the manager: systemctl restart wazuh-manager (or $PREFIX/bin/wazuh-control restart)"
}

if [ "$UNINSTALL" -eq 1 ]; then
    do_uninstall
    exit 0
fi

# --- install: checks -----------------------------------------------------------------------------

V=$(wazuh_version)
[ -n "$V" ] || die "cannot tell the Wazuh version (no $PREFIX/bin/wazuh-control info); use --wazuh-version if you are sure"
if ! version_ok "$V"; then
    die "Wazuh $V is not supported: Mimizuku needs a 4.x manager, $MIN_VERSION or newer (integratord timeout/retries; 5.x has no integratord)"
fi
say "Wazuh $V at $PREFIX"

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
            [ "$(dirname "$VENV")" != "$HOME_DIR" ] || make_dir "$HOME_DIR" root wazuh 0750 dir
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

# 2. the integration script with the venv's interpreter in its shebang
SHEBANG="#!$PY -IS"
[ ${#SHEBANG} -le 127 ] || die "interpreter path too long for a shebang: $PY"
{ echo "$SHEBANG"; tail -n +2 "$SELF_DIR/integrations/custom-mimizuku"; } > "$STAGE/custom-mimizuku"
cp "$SELF_DIR/wazuh_rules/mimizuku_rules.xml" "$STAGE/mimizuku_rules.xml"
sed -e "s#/var/ossec/mimizuku/venv/bin/python3#$(sed_escape "$PY")#g" \
    -e "s#/var/ossec\\([/ ]\\|\$\\)#$(sed_escape "$PREFIX")\\1#g" \
    "$SELF_DIR/ossec_conf/$UNIT_NAME" > "$STAGE/$UNIT_NAME"

# 3. the integratord user must be able to run it (a root-only interpreter would fail every call)
if [ "$DRY_RUN" -eq 0 ] || [ -x "$PY" ]; then
    if command -v runuser >/dev/null 2>&1; then
        runuser -u wazuh -- "$PY" -I -c 'import mimizuku.integratord.call' 2>/dev/null \
            || die "user wazuh cannot run $PY or import mimizuku with it: integratord runs the script as wazuh, so the interpreter (and the venv, and the python it was made from) must not be under a private directory such as /root. Pick one it can run: --python /usr/bin/python3 (and --venv outside /root, or the default $HOME_DIR/venv)"
    fi
fi

# 4. ossec.conf with our section (replaced in place if present, else appended)
BLOCKS=(integration.xml wodle_retrain.xml)
[ "$WITH_LOCALFILE" -eq 1 ] && BLOCKS+=(localfile_syslog.xml)
CONF_CHANGES=0
if [ "$NO_CONF" -eq 0 ]; then
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

make_dir "$HOME_DIR" root wazuh 0750 dir
make_dir "$HOME_DIR/models" root wazuh 0750 datadir
make_dir "$HOME_DIR/spool" wazuh wazuh 0750 datadir
make_dir "$HOME_DIR/run" wazuh wazuh 0750 datadir      # the resident scorer's socket and state
make_dir "$PREFIX/logs/mimizuku" root wazuh 0750 dir
[ -d "$PREFIX/integrations" ] || make_dir "$PREFIX/integrations" root wazuh 0750 dir
[ -d "$PREFIX/etc/rules" ] || make_dir "$PREFIX/etc/rules" wazuh wazuh 0770 dir
if [ "$DRY_RUN" -eq 0 ] && [ -d "$VENV" ] && [ "$NO_VENV" -eq 0 ] && [ "$VENV_CREATED" -eq 1 ]; then
    chown root:wazuh "$VENV"; chmod 0750 "$VENV"
fi

place "$STAGE/custom-mimizuku" "$SCRIPT" root wazuh 0750
place "$STAGE/mimizuku_rules.xml" "$RULES" root wazuh 0640
if use_systemd; then
    [ -d "$(dirname "$UNIT")" ] || die "systemd unit directory $(dirname "$UNIT") does not exist"
    place "$STAGE/$UNIT_NAME" "$UNIT" root root 0644
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
    rm -f "$SCRIPT.mimizuku-old" "$RULES.mimizuku-old" "$UNIT.mimizuku-old"
    ROLLBACK=()
    say "installed. Next:"
else
    say "dry run: nothing was changed. A real run would then tell you to:"
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
