#!/bin/sh
# Installs the Debian packages given as arguments when any is missing.
# As root: apt-get installs them. Otherwise: prints the exact command and fails.
missing=""
for p in "$@"; do
  # npm ships inside some nodejs builds (e.g. NodeSource's, which conflicts with Debian's npm)
  if [ "$p" = npm ] && command -v npm >/dev/null 2>&1; then continue; fi
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
  echo "installing Debian packages:$missing"
  export DEBIAN_FRONTEND=noninteractive
  # No service starts at install time (redis-server, lighttpd and nginx would each start
  # a daemon on its default port, and the second web server would fail on port 80 and
  # fail the install): a policy-rc.d that says "no" for the duration, unless one exists.
  policy=/usr/sbin/policy-rc.d
  own_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && own_policy=1
  fi
  apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends $missing >/dev/null
  rc=$?
  [ -n "$own_policy" ] && rm -f "$policy"
  [ "$rc" = 0 ] || { echo "apt-get install failed for:$missing" >&2; exit 1; }
else
  echo "missing Debian packages; run as root:" >&2
  echo "  apt-get install -y$missing" >&2
  exit 1
fi
