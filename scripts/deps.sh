#!/bin/sh
# Install the Debian packages cloonix needs that are missing (as root):
# those of debian-packages.txt, or of the list named (relative to scripts/).
set -e
cd "$(dirname "$0")"
list=${1:-debian-packages.txt}
missing=""
for p in $(grep -v '^#' "$list"); do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing:$missing"
if [ "$(id -u)" != 0 ]; then
	echo "run as root (or install with sudo apt-get install$missing)" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# tshark asks whether non-root users may capture; answer no.
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
apt-get update -q
apt-get install -y -q --no-install-recommends $missing
