#!/bin/sh
# Sets a host (its current network namespace) up for a lastack config:
# the VIP and source addresses, the rx queue count, MTU, offloads, IRQ
# affinity of the shards' queues, the sysctls the backend leg needs, the
# cluster key file's mode. Idempotent: it runs only the commands that
# `lastack check --host --fixes` prints for what is missing, then checks
# the host again (exit 0 when ready, 2 when something still is not).
#
#   deploy/setup-host.sh [-c /etc/lastack/lastack.toml] [--persist]
#
# --persist also writes the sysctls it set to /etc/sysctl.d/60-lastack.conf
# (addresses, channels and IRQ affinity do not survive a reboot: run this
# script at boot, e.g. as ExecStartPre= of lastack.service or as the init
# container of deploy/k8s/daemonset.yaml). $LASTACK names the binary.
set -eu

config=/etc/lastack/lastack.toml
persist=0
lastack=${LASTACK:-lastack}
while [ $# -gt 0 ]; do
	case "$1" in
	-c | --config) config=$2; shift 2 ;;
	--persist) persist=1; shift ;;
	-h | --help) sed -n '2,15p' "$0"; exit 0 ;;
	*) echo "setup-host.sh: unknown argument $1 (see --help)" >&2; exit 64 ;;
	esac
done

# A config that does not validate stops here, with its errors.
"$lastack" check -c "$config" >/dev/null
fixes=$("$lastack" check --host --fixes -c "$config")
if printf '%s\n' "$fixes" | grep -qv '^#\|^set -e$\|^$'; then
	printf '%s\n' "$fixes" | sh -ex
else
	echo "setup-host.sh: nothing to change"
fi
if [ "$persist" = 1 ]; then
	conf=/etc/sysctl.d/60-lastack.conf
	printf '%s\n' "$fixes" | sed -n 's/^sysctl -w \(.*\)=\(.*\)$/\1 \2/p' |
		while read -r key value; do
			touch "$conf"
			grep -v "^$key *=" "$conf" >"$conf.new" || true
			echo "$key = $value" >>"$conf.new"
			mv "$conf.new" "$conf"
		done
fi
exec "$lastack" check --host -c "$config"
