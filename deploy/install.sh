#!/usr/bin/env bash
# Installs uploaderd on this host as a systemd service, from the checkout this script is in.
#
#   sudo bash deploy/install.sh               install or update (run it again at will)
#   sudo bash deploy/install.sh --uninstall   remove the program, the unit and the user;
#                                             the spool, the state and the config stay
#
# Options:
#   --root DIR     install into DIR as if it were / (tests, image staging): paths are
#                  prefixed with DIR, the user is written to DIR/etc/passwd, systemctl is
#                  never called.  The venv's scripts name DIR/opt/uploaderd/venv/bin/python,
#                  so a venv staged this way runs from that path only.
#   --no-venv      skip creating the venv and installing the package into it (slow part)
#   --python PY    the Python (>= 3.11) the venv is made from (default: python3)
#
# What it does, every step safe to repeat:
#   user and group "uploaderd"       systemd-sysusers with uploaderd.sysusers.conf
#                                    (useradd --system where systemd-sysusers is missing)
#   /var/spool/uploaderd  2770       group-writable and setgid: build jobs in group uploaderd
#                                    drop files, new repository directories stay in the group
#   /var/lib/uploaderd    0700       the journal, done/, failed/: the daemon's alone
#   /etc/uploaderd        0750       root:uploaderd; config.toml 0640, never overwritten
#   /opt/uploaderd/venv              pip install of this checkout
#   /etc/systemd/system/uploaderd.service, /etc/sysusers.d and /etc/tmpfiles.d entries
set -euo pipefail

readonly USER_NAME=uploaderd
readonly SPOOL=/var/spool/uploaderd
readonly STATE=/var/lib/uploaderd
readonly ETC=/etc/uploaderd
readonly PREFIX=/opt/uploaderd
readonly VENV=$PREFIX/venv
readonly UNIT=/etc/systemd/system/uploaderd.service
readonly WANTS=/etc/systemd/system/multi-user.target.wants/uploaderd.service
readonly SYSUSERS=/etc/sysusers.d/uploaderd.conf
readonly TMPFILES=/etc/tmpfiles.d/uploaderd.conf

deploy=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
checkout=$(dirname "$deploy")
root=""
action=install_all
make_venv=yes
python=python3
staging=""
trap '[ -z "$staging" ] || rm -rf "$staging"' EXIT

die() {
    echo "install.sh: $*" >&2
    exit 1
}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
        --root) [ $# -ge 2 ] || usage; root=$2; shift ;;
        --root=*) root=${1#--root=} ;;
        --no-venv) make_venv=no ;;
        --python) [ $# -ge 2 ] || usage; python=$2; shift ;;
        --python=*) python=${1#--python=} ;;
        --uninstall) action=uninstall_all ;;
        -h | --help) usage ;;
        *) echo "install.sh: unknown option $1" >&2; usage ;;
    esac
    shift
done

if [ -n "$root" ]; then
    [ -d "$root" ] || die "--root $root is not a directory; create it first"
    root=$(cd "$root" && pwd)
    [ "$root" != / ] || root=""
fi
# Owners are set with chown, and the user database is written: both need root, --root too.
[ "$(id -u)" -eq 0 ] || die "run as root (sudo bash $0 ...)"

# --- the user ------------------------------------------------------------------------------

user_exists() {
    if [ -n "$root" ]; then
        grep -q "^$USER_NAME:" "$root/etc/passwd" 2>/dev/null
    else
        getent passwd "$USER_NAME" >/dev/null
    fi
}

group_exists() {
    if [ -n "$root" ]; then
        grep -q "^$USER_NAME:" "$root/etc/group" 2>/dev/null
    else
        getent group "$USER_NAME" >/dev/null
    fi
}

# Numeric ids, read from the user database chown must honour: under --root that is
# DIR/etc/passwd, whose ids may differ from (or not exist on) this host.
user_id() {
    if [ -n "$root" ]; then
        awk -F: -v name="$USER_NAME" '$1 == name { print $3 }' "$root/etc/passwd"
    else
        id -u "$USER_NAME"
    fi
}

group_id() {
    if [ -n "$root" ]; then
        awk -F: -v name="$USER_NAME" '$1 == name { print $3 }' "$root/etc/group"
    else
        getent group "$USER_NAME" | cut -d: -f3
    fi
}

create_user() {
    mkdir -p "$root/etc"
    install -D -m 0644 "$deploy/uploaderd.sysusers.conf" "$root$SYSUSERS"
    if command -v systemd-sysusers >/dev/null; then
        # An absolute path: with --root, a relative one is looked up inside the root.
        systemd-sysusers ${root:+--root="$root"} "$root$SYSUSERS"
    elif ! user_exists; then
        useradd ${root:+--root "$root"} --system --user-group --no-create-home \
            --home-dir / --shell /usr/sbin/nologin \
            --comment "uploaderd, pushes image layers to ECR" "$USER_NAME"
    fi
    user_exists || die "user $USER_NAME was not created"
}

# --- files and directories -----------------------------------------------------------------

# mkdir + chown + chmod rather than `install -d`, so an existing directory whose mode or
# owner drifted is put right on every run.
directory() {
    local path=$root$1 mode=$2 owner=$3 group=$4
    mkdir -p "$path"
    chown "$owner:$group" "$path"
    chmod "$mode" "$path"
}

install_files() {
    local uid gid
    uid=$(user_id)
    gid=$(group_id)
    if [ -z "$uid" ] || [ -z "$gid" ]; then
        die "cannot find the ids of $USER_NAME"
    fi
    directory "$SPOOL" 2770 "$uid" "$gid"
    directory "$STATE" 0700 "$uid" "$gid"
    directory "$ETC" 0750 0 "$gid"
    if [ -e "$root$ETC/config.toml" ]; then
        echo "kept $ETC/config.toml (compare with $deploy/config.example.toml)"
    else
        install -m 0640 -o 0 -g "$gid" "$deploy/config.example.toml" "$root$ETC/config.toml"
        echo "wrote $ETC/config.toml"
    fi
    install -D -m 0644 "$deploy/uploaderd.service" "$root$UNIT"
    install -D -m 0644 "$deploy/uploaderd.tmpfiles.conf" "$root$TMPFILES"
}

# --- the program ---------------------------------------------------------------------------

install_venv() {
    local venv=$root$VENV
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        die "$python is older than Python 3.11; pass --python"
    mkdir -p "$root$PREFIX"
    chmod 0755 "$root$PREFIX"
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    # pip builds a local directory in place (build/, *.egg-info as root in the checkout):
    # build from a copy of the package's files instead.
    staging=$(mktemp -d)
    find "$checkout" -maxdepth 1 -type f -exec cp {} "$staging/" \;
    cp -r "$checkout/uploaderd" "$staging/uploaderd"
    find "$staging" -name __pycache__ -prune -exec rm -rf {} +
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$staging"
    "$venv/bin/uploaderd" --help >/dev/null || die "$VENV/bin/uploaderd does not run"
    echo "installed $("$venv/bin/python" -m pip show uploaderd | sed -n 's/^Version: /uploaderd /p') in $VENV"
}

install_all() {
    create_user
    install_files
    if [ "$make_venv" = yes ]; then
        install_venv
    else
        echo "skipped the venv (--no-venv): $VENV/bin/uploaderd must exist before the start"
    fi
    cat <<EOF

uploaderd is installed${root:+ under $root}.  Next:
  edit $ETC/config.toml (credentials: $ETC/environment or the instance role)
  usermod -aG $USER_NAME <build user>      # lets a build job drop files into $SPOOL
  systemctl daemon-reload && systemctl enable --now uploaderd
  journalctl -u uploaderd -f                # follow it;  uploaderd status: the queue
EOF
}

# --- uninstall -----------------------------------------------------------------------------

systemd_running() {
    [ -z "$root" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null
}

uninstall_all() {
    if systemd_running; then
        systemctl disable --now uploaderd.service 2>/dev/null || true
    fi
    rm -f "$root$WANTS" "$root$UNIT" "$root$SYSUSERS" "$root$TMPFILES"
    rm -rf "$root$VENV"
    rmdir "$root$PREFIX" 2>/dev/null || true
    if user_exists; then
        userdel ${root:+--root "$root"} "$USER_NAME"
    fi
    # userdel leaves the group when login.defs (absent under --root) says so.
    if group_exists; then
        groupdel ${root:+--root "$root"} "$USER_NAME"
    fi
    if systemd_running; then
        systemctl daemon-reload
    fi
    cat <<EOF
uploaderd is uninstalled${root:+ from $root}.  Kept, owned by the former user's ids:
  $SPOOL (files not yet pushed), $STATE (journal, done/, failed/), $ETC
Remove them by hand when they are no longer needed.
EOF
}

"$action"
